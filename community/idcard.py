"""PRC resident identity card numbers (GB 11643-1999): validation and check digit.

Pure functions, no IO. An 18-character number is 6 digits of administrative area, 8 digits of
birth date (YYYYMMDD), 3 digits of sequence (odd for men, even for women) and a check character
computed with ISO 7064 MOD 11-2 (``X`` stands for 10).
"""

from __future__ import annotations

import datetime as dt

__all__ = ["IdCardError", "birth_date", "check_char", "is_valid_id_number", "mask_id_number", "validate_id_number"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


class IdCardError(ValueError):
    """An ID-card number is malformed.

    Attributes:
        reason: why it was rejected (machine-friendly snake_case).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid ID-card number: {reason}")
        self.reason = reason


def check_char(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits.

    Raises:
        IdCardError: ``first17`` is not 17 ASCII digits.
    """
    if len(first17) != 17 or not first17.isascii() or not first17.isdigit():
        raise IdCardError("body_not_17_digits")
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK[total % 11]


def birth_date(number: str) -> dt.date:
    """The birth date encoded in a (syntactically valid) 18-character number.

    Raises:
        IdCardError: the date part is not a real calendar date.
    """
    try:
        return dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError as exc:
        raise IdCardError("bad_birth_date") from exc


def validate_id_number(number: str) -> str:
    """Return the canonical (upper-case ``X``) form of a valid 18-character ID-card number.

    Raises:
        IdCardError: wrong length, non-digits, impossible birth date or wrong check character.
    """
    s = number.strip().upper()
    if len(s) != 18:
        raise IdCardError("length_not_18")
    body, check = s[:17], s[17]
    expected = check_char(body)
    birth_date(s)
    if check != expected:
        raise IdCardError("check_digit_mismatch")
    return s


def is_valid_id_number(number: str) -> bool:
    """True when :func:`validate_id_number` accepts ``number``."""
    try:
        validate_id_number(number)
    except IdCardError:
        return False
    return True


def mask_id_number(number: str) -> str:
    """Display form that hides everything but the first 3 and last 2 characters."""
    return number[:3] + "*" * max(len(number) - 5, 0) + number[-2:] if len(number) > 5 else "*" * len(number)
