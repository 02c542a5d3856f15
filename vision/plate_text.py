"""Chinese licence-plate text: normalisation, validation and tolerant matching.

Pure functions, no IO. Two plate families are supported:

* blue (ordinary) plates: 7 characters — province, issuing-authority letter, 5 alphanumerics
  (e.g. ``赣G·12345``);
* green (new-energy) plates: 8 characters — province, letter, 6 alphanumerics (e.g. ``粤B·D12345``).

Plates never contain the letters I and O after the authority letter, so OCR output is repaired by
mapping ``O`` → ``0`` and ``I`` → ``1`` there.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CONFIDENT_CHAR",
    "PROVINCES",
    "PlateFormatError",
    "PlateMatch",
    "candidate_tails",
    "fold_plate_reading",
    "fold_plate_text",
    "is_valid_plate",
    "match_plate",
    "match_read_plate",
    "normalize_plate",
    "plate_color",
    "plate_tail",
]

#: Province / municipality abbreviations that start a civilian plate.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"

_SEPARATORS = re.compile(r"[\s·•・.\-_‧∙]+")
_PLATE_RE = re.compile(rf"^[{PROVINCES}][A-Z][A-Z0-9]{{5,6}}$")
_TAIL_RE = re.compile(r"^[A-Z][A-Z0-9]{5,6}$")
_FULLWIDTH_OFFSET = 0xFEE0
#: A character the recogniser read with at least this confidence is taken as read: a plate that differs
#: there is another plate. PP-OCR's per-character probabilities sit above 0.95 for clear characters.
CONFIDENT_CHAR = 0.9


class PlateFormatError(ValueError):
    """A string is not a valid 7-character blue or 8-character green plate.

    Attributes:
        text: the text as given.
        reason: why it was rejected (human readable).
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"invalid plate {text!r}: {reason}")
        self.text = text
        self.reason = reason


def fold_plate_text(text: str) -> str:
    """Fold full-width ASCII to half-width, strip separators, uppercase."""
    folded = "".join(chr(ord(c) - _FULLWIDTH_OFFSET) if "\uff01" <= c <= "\uff5e" else c for c in text)
    return _SEPARATORS.sub("", folded).upper()


def fold_plate_reading(text: str, char_scores: Sequence[float] | None) -> tuple[str, tuple[float, ...] | None]:
    """:func:`fold_plate_text` with the recogniser's per-character scores kept aligned (the scores of
    removed separators dropped); ``None`` scores when they do not fit ``text`` one to one."""
    folded = fold_plate_text(text)
    if char_scores is None or len(char_scores) != len(text):
        return folded, None
    kept = [
        float(score)
        for c, score in zip(text, char_scores, strict=True)
        if not _SEPARATORS.fullmatch(chr(ord(c) - _FULLWIDTH_OFFSET) if "\uff01" <= c <= "\uff5e" else c)
    ]
    return folded, (tuple(kept) if len(kept) == len(folded) else None)


def _clean(text: str) -> str:
    """:func:`fold_plate_text`, then repair O/I after position 2."""
    s = fold_plate_text(text)
    head, rest = s[:2], s[2:]
    return head + rest.replace("O", "0").replace("I", "1")


def normalize_plate(text: str) -> str:
    """Return the canonical form of a plate (``"赣G·12345"`` → ``"赣G12345"``).

    Raises:
        PlateFormatError: the text is not a valid blue (7 characters) or green (8 characters) plate.
    """
    s = _clean(text)
    if len(s) not in (7, 8):
        raise PlateFormatError(text, f"expected 7 or 8 characters after normalisation, got {len(s)}")
    if s[0] not in PROVINCES:
        raise PlateFormatError(text, f"first character {s[0]!r} is not a province abbreviation")
    if not ("A" <= s[1] <= "Z"):
        raise PlateFormatError(text, f"second character {s[1]!r} is not an issuing-authority letter")
    if not _PLATE_RE.match(s):
        raise PlateFormatError(text, "characters 3.. must be digits or letters A-Z")
    return s


def is_valid_plate(text: str) -> bool:
    """True when :func:`normalize_plate` accepts ``text``."""
    try:
        normalize_plate(text)
    except PlateFormatError:
        return False
    return True


def plate_color(plate: str) -> Literal["blue", "green"]:
    """Colour of the plate family: 7 characters → ``"blue"``, 8 (new energy) → ``"green"``.

    Raises:
        PlateFormatError: ``plate`` is not a valid plate.
    """
    return "green" if len(normalize_plate(plate)) == 8 else "blue"


def plate_tail(plate: str) -> str:
    """The characters after the province character of a valid plate (``"赣G12345"`` → ``"G12345"``)."""
    return normalize_plate(plate)[1:]


def candidate_tails(read: str) -> set[str]:
    """Plausible post-province tails of an OCR reading whose province character may be wrong or lost."""
    s = fold_plate_text(read)
    tails: set[str] = set()
    if len(s) in (7, 8):
        # Province slot misread (any character): repair O/I after the authority letter.
        t = s[1:]
        tail = t[:1] + t[1:].replace("O", "0").replace("I", "1")
        if _TAIL_RE.match(tail):
            tails.add(tail)
    if len(s) in (6, 7) and s.isascii():
        # Province character dropped by the reader entirely.
        tail = s[:1] + s[1:].replace("O", "0").replace("I", "1")
        if _TAIL_RE.match(tail):
            tails.add(tail)
    return tails


def match_plate(read: str, registered: Collection[str]) -> str | None:
    """Match an OCR reading against registered plates, tolerating a wrong province character.

    An exact match of the normalised reading wins. Otherwise the characters after the province
    character are compared: if they equal those of exactly one registered plate, that plate is
    returned; if several registered plates share them, or none does, the result is ``None`` (a wrong
    car must never be let in). Registered entries that are not valid plates are ignored.

    Returns:
        the registered plate, in its original spelling, or ``None``.
    """
    by_norm: dict[str, str] = {}
    for plate in registered:
        try:
            by_norm[normalize_plate(plate)] = plate
        except PlateFormatError:
            continue
    try:
        exact = normalize_plate(read)
    except PlateFormatError:
        exact = None
    if exact is not None and exact in by_norm:
        return by_norm[exact]
    tails = candidate_tails(read)
    if not tails:
        return None
    hits = [orig for norm, orig in by_norm.items() if norm[1:] in tails]
    return hits[0] if len(hits) == 1 else None


@dataclass(frozen=True, slots=True)
class PlateMatch:
    """A registered plate matched by a reading.

    Attributes:
        plate: the registered plate, in its original spelling.
        read: the reading, folded and repaired (what the recogniser saw).
        tolerant: the reading differs from the plate (in one low-confidence character, or a lost
            province character).
    """

    plate: str
    read: str
    tolerant: bool


def _char_confidences(folded: str, char_confidences: Sequence[float] | None, confidence: float | None) -> list[float]:
    if char_confidences is not None and len(char_confidences) == len(folded):
        return [float(c) for c in char_confidences]
    # Without per-character confidences every character counts as read with the line's confidence;
    # without any confidence, as read for sure (no tolerance at all).
    return [1.0 if confidence is None else float(confidence)] * len(folded)


def match_read_plate(
    read: str,
    registered: Collection[str],
    char_confidences: Sequence[float] | None = None,
    confidence: float | None = None,
    *,
    confident: float = CONFIDENT_CHAR,
) -> PlateMatch | None:
    """Match a reading against registered plates, tolerating only what the recogniser was unsure of.

    An exact match of the normalised reading wins. Otherwise a registered plate of the same length
    matches when it differs in exactly one character that was read with a confidence below
    ``confident`` (``char_confidences`` are per character of the folded reading; without them the
    line's ``confidence`` stands for every character), or when the reading is the plate without its
    province character (lost, so not read at all). Tolerance must single out one registered plate;
    a plate differing in a confidently read character — another province's car with the same tail —
    never matches.
    """
    by_norm: dict[str, str] = {}
    for plate in registered:
        try:
            by_norm[normalize_plate(plate)] = plate
        except PlateFormatError:
            continue
    folded = fold_plate_text(read)
    s = _clean(read)
    if s in by_norm:
        return PlateMatch(by_norm[s], s, tolerant=False)
    confs = _char_confidences(folded, char_confidences, confidence)
    hits = []
    for norm, orig in by_norm.items():
        if len(norm) == len(s):
            diff = [i for i, (a, b) in enumerate(zip(norm, s, strict=True)) if a != b]
            if len(diff) == 1 and confs[diff[0]] < confident:
                hits.append(orig)
        elif len(norm) == len(s) + 1 and s.isascii() and norm[1:] in candidate_tails(read):
            hits.append(orig)
    return PlateMatch(hits[0], s, tolerant=True) if len(hits) == 1 else None
