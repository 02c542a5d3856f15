"""Visitor passes: compact signed QR payloads (HMAC-SHA256), parse and verify.

Pure functions, no IO. A payload reads ``AFP1.<claims>.<tag>`` where ``claims`` is the base64url
(unpadded) canonical JSON of :class:`PassClaims` and ``tag`` the first 16 bytes of
HMAC-SHA256(key, ``"AFP1." + claims``). Any change of a character breaks the tag. The signature
proves the platform issued the pass and fixes its window and doors; how often it was used and
whether it was revoked is state the platform keeps (see :mod:`community.decisions`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["PREFIX", "PassClaims", "PassError", "parse_pass", "sign_pass", "verify_pass"]

PREFIX = "AFP1"
_TAG_LEN = 16


class PassError(ValueError):
    """A QR payload is not a usable pass.

    Attributes:
        reason: ``malformed``, ``bad_signature``, ``not_yet_valid``, ``expired``, ``wrong_site``
            or ``door_not_allowed``.
        pass_id: the pass id when the payload could be parsed, else None.
    """

    def __init__(self, reason: str, pass_id: str | None = None) -> None:
        super().__init__(f"visitor pass refused: {reason}")
        self.reason = reason
        self.pass_id = pass_id


@dataclass(frozen=True, slots=True)
class PassClaims:
    """What a pass grants: who issued it, where and when, how often, and optionally a car plate."""

    pass_id: str
    site: str
    valid_from: int
    valid_until: int
    doors: tuple[str, ...]
    max_uses: int
    plate: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Compact claim dictionary (short keys keep the QR code small)."""
        out: dict[str, Any] = {
            "i": self.pass_id,
            "s": self.site,
            "f": self.valid_from,
            "t": self.valid_until,
            "d": list(self.doors),
            "u": self.max_uses,
        }
        if self.plate is not None:
            out["p"] = self.plate
        return out


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, signed: str) -> str:
    return _b64e(hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()[:_TAG_LEN])


def sign_pass(claims: PassClaims, key: bytes) -> str:
    """The QR payload for ``claims`` signed with ``key``."""
    body = json.dumps(claims.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    signed = f"{PREFIX}.{_b64e(body.encode('utf-8'))}"
    return f"{signed}.{_tag(key, signed)}"


def _claims_from(obj: Any) -> PassClaims:
    if not isinstance(obj, dict):
        raise PassError("malformed")
    try:
        doors = obj["d"]
        plate = obj.get("p")
        claims = PassClaims(
            pass_id=str(obj["i"]),
            site=str(obj["s"]),
            valid_from=int(obj["f"]),
            valid_until=int(obj["t"]),
            doors=tuple(str(d) for d in doors),
            max_uses=int(obj["u"]),
            plate=None if plate is None else str(plate),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise PassError("malformed") from exc
    if not isinstance(doors, list):
        raise PassError("malformed", claims.pass_id)
    return claims


def parse_pass(payload: str) -> PassClaims:
    """Decode the claims WITHOUT checking the signature (for display and logs only).

    Raises:
        PassError: ``malformed``.
    """
    parts = payload.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise PassError("malformed")
    try:
        obj = json.loads(_b64d(parts[1]).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise PassError("malformed") from exc
    return _claims_from(obj)


def verify_pass(
    payload: str, key: bytes, *, now: float, site: str | None = None, door: str | None = None
) -> PassClaims:
    """Check signature, validity window, site and (optionally) the door; return the claims.

    Raises:
        PassError: with the first reason the pass is refused.
    """
    parts = payload.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise PassError("malformed")
    expected = _tag(key, f"{parts[0]}.{parts[1]}")
    if not hmac.compare_digest(expected.encode("ascii"), parts[2].encode("ascii", "replace")):
        pass_id: str | None
        try:
            pass_id = parse_pass(payload).pass_id
        except PassError:
            pass_id = None
        raise PassError("bad_signature", pass_id)
    claims = parse_pass(payload)
    if now < claims.valid_from:
        raise PassError("not_yet_valid", claims.pass_id)
    if now >= claims.valid_until:
        raise PassError("expired", claims.pass_id)
    if site is not None and claims.site != site:
        raise PassError("wrong_site", claims.pass_id)
    if door is not None and door not in claims.doors:
        raise PassError("door_not_allowed", claims.pass_id)
    return claims
