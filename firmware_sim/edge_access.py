"""Local (edge-mode) access decisions made by a door or gate from its desired ``allow_list``.

Pure: the clock is passed in, so a door offline for a week still honours ``valid_until``.  The
entry format is the access service's (``docs/access.md``): card, PIN and QR credentials appear as
``sha256:`` digests of ``"{kind}:{value}"``, faces as base64 float16 unit templates, plates as
normalised plates; a raw credential is accepted too.  Validity is ``valid_from <= now < valid_until``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CREDENTIAL_KINDS = ("face", "card", "pin", "qr", "plate")
FACE_MATCH_COSINE = 0.363  # the platform gallery's threshold


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome the device reports in its ``access_decided`` event."""

    allowed: bool
    subject: str | None
    credential_kind: str
    reason: str

    def as_event(self) -> dict[str, Any]:
        """The ``access_decided`` event data."""
        return {
            "allowed": self.allowed,
            "subject": self.subject,
            "credential_kind": self.credential_kind,
            "reason": self.reason,
        }


def credential_digest(kind: str, value: str) -> str:
    """``sha256:<hex>`` of ``"{kind}:{value}"``, as allow-lists carry card, PIN and QR credentials."""
    return "sha256:" + hashlib.sha256(f"{kind}:{value.strip()}".encode()).hexdigest()


def decode_template(text: str) -> list[float] | None:
    """A base64 float16 face template, or None if ``text`` is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 256:
        return None
    return list(struct.unpack("<128e", raw))


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def _fits(entry: dict[str, Any], kind: str, credential: str, embedding: Sequence[float] | None) -> bool:
    stored = entry.get("credential")
    if entry.get("kind") != kind or not isinstance(stored, str):
        return False
    if stored == credential or stored == credential_digest(kind, credential):
        return True
    if kind == "face" and embedding is not None and len(embedding) == 128:
        template = decode_template(stored)
        return template is not None and _cosine(template, embedding) >= FACE_MATCH_COSINE
    return False


def decide(
    entries: list[dict[str, Any]],
    credential_kind: str,
    credential: str,
    now: float,
    used_once: frozenset[str] = frozenset(),
    embedding: Sequence[float] | None = None,
) -> Decision:
    """Decide on one presented credential.

    An entry matches on kind and credential (or, for faces, template similarity); it must satisfy
    ``valid_from <= now < valid_until`` (either bound may be null).  QR codes already used at this
    device (``used_once``) are refused: an offline door cannot count uses centrally.
    """
    matching = [e for e in entries if _fits(e, credential_kind, credential, embedding)]
    if not matching:
        return Decision(False, None, credential_kind, f"unknown_{credential_kind}")
    reasons: list[str] = []
    for e in matching:
        subject = e.get("subject")
        vf, vu = e.get("valid_from"), e.get("valid_until")
        if vf is not None and now < float(vf):
            reasons.append("not_yet_valid")
            continue
        if vu is not None and now >= float(vu):
            reasons.append("expired")
            continue
        if credential_kind == "qr" and credential in used_once:
            reasons.append("uses_exhausted")
            continue
        return Decision(True, subject, credential_kind, "granted")
    return Decision(False, matching[0].get("subject"), credential_kind, reasons[0])
