"""Synthetic personal identifiers: GB 11643 ID numbers, phone numbers, plates, MACs, embeddings.

Everything here is pure and driven by a caller-supplied :class:`random.Random`, so a seed fixes
the output.  The data is synthetic: ID numbers carry a valid check digit but belong to nobody.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import re

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
XUNYANG_REGION = "360403"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O are not used on plates
_BLUE_RE = re.compile(r"^[\u4e00-\u9fff][A-Z][A-Z0-9]{5}$")
_GREEN_RE = re.compile(r"^[\u4e00-\u9fff][A-Z][DF][A-Z0-9]{5}$")
EMBEDDING_DIM = 128


def gb11643_check_digit(first17: str) -> str:
    """Return the GB 11643-1999 check character for the first 17 digits of an ID number."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def is_valid_id_number(value: str) -> bool:
    """True when ``value`` is an 18-character ID number with a correct check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    try:
        dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    return gb11643_check_digit(value[:17]) == value[17]


def make_id_number(rng: random.Random, birth: dt.date, male: bool, region: str = XUNYANG_REGION) -> str:
    """A synthetic ID number: region, birth date, sequence (odd for men), check character."""
    seq = rng.randrange(0, 500) * 2 + (1 if male else 0)
    body = f"{region}{birth:%Y%m%d}{seq:03d}"
    return body + gb11643_check_digit(body)


def make_phone(rng: random.Random) -> str:
    """A synthetic 11-digit mainland mobile number."""
    prefix = rng.choice(("138", "139", "150", "158", "177", "187", "199"))
    return prefix + f"{rng.randrange(0, 10**8):08d}"


def make_plate(rng: random.Random, green: bool, province: str = "赣", city: str = "G") -> str:
    """A normalised plate: blue ``赣G12345`` (7 chars) or green new-energy ``赣GD12345`` (8 chars)."""
    if green:
        return f"{province}{city}{rng.choice('DF')}{rng.randrange(0, 100000):05d}"
    tail = [rng.choice("0123456789") for _ in range(5)]
    if rng.random() < 0.4:
        tail[0] = rng.choice(_PLATE_LETTERS)
    return f"{province}{city}{''.join(tail)}"


def is_valid_plate(plate: str) -> bool:
    """True for a normalised blue (7-char) or green new-energy (8-char) plate."""
    return bool(_BLUE_RE.match(plate) or _GREEN_RE.match(plate))


def make_mac(rng: random.Random, randomized: bool = False) -> str:
    """A MAC address; randomised ones have the locally-administered bit set (as phones do)."""
    octets = [rng.randrange(256) for _ in range(6)]
    if randomized:
        octets[0] = (octets[0] | 0x02) & 0xFE
    else:
        octets[0] = octets[0] & 0xFC
    return ":".join(f"{o:02x}" for o in octets)


def face_embedding(subject: str, noise: float = 0.0, rng: random.Random | None = None) -> list[float]:
    """A unit-length 128-d embedding fixed by ``subject``; ``noise`` adds per-capture jitter.

    Two captures of the same subject have cosine similarity near 1; different subjects near 0.
    """
    seed = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big")
    base = random.Random(seed)
    vec = [base.gauss(0.0, 1.0) for _ in range(EMBEDDING_DIM)]
    if noise > 0.0 and rng is not None:
        vec = [v + rng.gauss(0.0, noise) for v in vec]
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [round(v / norm, 6) for v in vec]
