"""The door side of edge access: open a sealed allow-list with the door's key, decide, limit attempts.

This is the one door-side decider: the simulated firmware uses it, and so do the platform's tests to
check the lists the platform seals (the platform itself imports nothing from ``firmware_sim``; it
implements the sealing side of the same contract, ``docs/protocol.md`` "Sealed allow-lists").

Pure: no IO, the clock is passed in, so a door offline for a week still honours ``valid_until``.

The contract (``seal: "anfang-edge-v1"``):

* the door holds a 32-byte key issued at provisioning; it derives ``mac_key`` and ``seal_key`` from
  it with HKDF-SHA256 (:func:`door_subkeys`); ``key_id`` in the list names the key it was sealed
  for, so a list copied to another door is refused as a whole (``sealed_for_another_door``);
* ``card`` / ``pin`` / ``qr`` entries carry ``hmac:<hex HMAC-SHA256(mac_key, "{kind}:{value}")>``;
* ``face`` and ``plate`` entries carry ``aesgcm:<base64(nonce | ciphertext)>`` under ``seal_key``,
  with ``"{kind}|{subject}"`` as associated data: a float16 unit template (256 bytes) or the UTF-8
  normalised plate;
* the face threshold and the attempt limits come with the list (the platform's settings); nothing
  in this module duplicates them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "CREDENTIAL_KINDS",
    "LIMITED_KINDS",
    "REASONS",
    "SEAL",
    "AttemptLimiter",
    "Decision",
    "EdgeDoor",
    "Limits",
    "Lockout",
    "OpenedList",
    "decide",
    "door_subkeys",
    "key_id",
    "mac_credential",
    "open_allow_list",
]

SEAL = "anfang-edge-v1"
CREDENTIAL_KINDS = ("face", "card", "pin", "qr", "plate")
#: Kinds typed or presented by a person at the door, which attempt limits apply to (a camera reading
#: a waiting car's plate or a passing face again and again is no guessing).
LIMITED_KINDS = ("pin", "card", "qr")

#: Every reason a door gives in its ``access_decided`` event.
REASONS = (
    "granted",
    "unknown_face",
    "unknown_card",
    "unknown_pin",
    "unknown_qr",
    "unknown_vehicle",
    "not_yet_valid",
    "expired",
    "uses_exhausted",
    "liveness_below_threshold",
    "bad_credential",
    "no_allow_list",
    "sealed_for_another_door",
    "locked_out",
)

_NONCE = 12
_UNKNOWN = {"face": "unknown_face", "card": "unknown_card", "pin": "unknown_pin", "qr": "unknown_qr"}


def _hkdf(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)


def door_subkeys(door_key: bytes) -> tuple[bytes, bytes]:
    """``(mac_key, seal_key)`` derived from a door's 32-byte key."""
    if len(door_key) != 32:
        raise ValueError("a door key is 32 bytes")
    return _hkdf(door_key, b"anfang-edge/v1/credential-mac"), _hkdf(door_key, b"anfang-edge/v1/sealed-entry")


def key_id(door_key: bytes) -> str:
    """A public name of the key (16 hex digits), carried in lists so a door spots one not sealed for it."""
    return hmac.new(door_key, b"anfang-edge/v1/key-id", hashlib.sha256).hexdigest()[:16]


def mac_credential(mac_key: bytes, kind: str, value: str) -> str:
    """``hmac:<hex>`` — how a typed or presented credential appears in a sealed list."""
    msg = f"{kind}:{value.strip()}".encode()
    return "hmac:" + hmac.new(mac_key, msg, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Limits:
    """Attempt limits: ``max_failures`` refusals of one kind within ``window_s`` lock it for ``lockout_s``."""

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 300.0

    @classmethod
    def from_doc(cls, doc: Any) -> Limits:
        """From the list's ``limits`` object (defaults for missing or malformed fields)."""
        if not isinstance(doc, Mapping):
            return cls()
        try:
            return cls(int(doc["max_failures"]), float(doc["window_s"]), float(doc["lockout_s"]))
        except (KeyError, TypeError, ValueError):
            return cls()


@dataclass(frozen=True, slots=True)
class _Entry:
    subject: str
    kind: str
    credential: str | tuple[float, ...]  # a MAC, a plate, or an opened unit face template
    valid_from: float | None
    valid_until: float | None


@dataclass(frozen=True, slots=True)
class OpenedList:
    """An allow-list opened with the door's key; ``error`` is set when it cannot be used at all."""

    version: int | None
    entries: tuple[_Entry, ...] = ()
    face_threshold: float | None = None
    limits: Limits = field(default_factory=Limits)
    mac_key: bytes = b""
    error: str | None = None


def _unseal(aead: AESGCM, token: str, kind: str, subject: str) -> bytes | None:
    if not token.startswith("aesgcm:"):
        return None
    try:
        raw = base64.b64decode(token[7:], validate=True)
        return aead.decrypt(raw[:_NONCE], raw[_NONCE:], f"{kind}|{subject}".encode())
    except (InvalidTag, ValueError, binascii.Error):
        return None


def _unit(raw: bytes) -> tuple[float, ...] | None:
    if len(raw) != 256:
        return None
    v = struct.unpack("<128e", raw)
    n = math.sqrt(sum(x * x for x in v))
    return tuple(x / n for x in v) if n and all(math.isfinite(x) for x in v) else None


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def open_allow_list(allow_list: Mapping[str, Any] | None, door_key: bytes | None) -> OpenedList:
    """Check the seal and decrypt a list's sealed entries once (a door does this per list version).

    Entries that do not authenticate under this door's key are dropped; a list for another key, an
    unsealed list or no key at all leave the door with nothing to admit (``error`` says why).
    """
    if not isinstance(allow_list, Mapping):
        return OpenedList(None, error="no_allow_list")
    version = allow_list.get("version")
    version = version if isinstance(version, int) else None
    if door_key is None or allow_list.get("seal") != SEAL:
        return OpenedList(version, error="no_allow_list")
    if allow_list.get("key_id") != key_id(door_key):
        return OpenedList(version, error="sealed_for_another_door")
    mac_key, seal_key = door_subkeys(door_key)
    aead = AESGCM(seal_key)
    entries: list[_Entry] = []
    for e in allow_list.get("entries") or ():
        if not isinstance(e, Mapping):
            continue
        kind, subject, cred = e.get("kind"), e.get("subject"), e.get("credential")
        if kind not in CREDENTIAL_KINDS or not isinstance(subject, str) or not isinstance(cred, str):
            continue
        value: str | tuple[float, ...] | None = cred if cred.startswith("hmac:") else None
        if kind in ("face", "plate"):
            raw = _unseal(aead, cred, kind, subject)
            value = None if raw is None else (_unit(raw) if kind == "face" else raw.decode("utf-8", "replace"))
        if value is None:
            continue
        try:
            entries.append(_Entry(subject, kind, value, _opt(e.get("valid_from")), _opt(e.get("valid_until"))))
        except (TypeError, ValueError):
            continue
    threshold = allow_list.get("face_threshold")
    return OpenedList(
        version,
        tuple(entries),
        float(threshold) if isinstance(threshold, int | float) else None,
        Limits.from_doc(allow_list.get("limits")),
        mac_key,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome the device reports in its ``access_decided`` event (``reason`` is one of :data:`REASONS`)."""

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


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb) if na and nb else 0.0


def _matches(opened: OpenedList, kind: str, credential: str, embedding: Sequence[float] | None) -> list[_Entry]:
    same = [e for e in opened.entries if e.kind == kind]
    if kind == "face":
        if embedding is None or len(embedding) != 128 or opened.face_threshold is None:
            return []
        scored = [(s, e) for e in same if (s := _cosine(e.credential, embedding)) >= opened.face_threshold]  # type: ignore[arg-type]  # face entries hold templates
        if not scored:
            return []
        # Several subjects can clear the threshold; only the best-scoring subject's entries count.
        best = max(scored, key=lambda se: se[0])[1].subject
        return [e for _, e in scored if e.subject == best]
    if kind == "plate":
        return [e for e in same if e.credential == credential.strip()]
    mac = mac_credential(opened.mac_key, kind, credential)
    return [e for e in same if e.credential == mac]


def decide(
    opened: OpenedList,
    credential_kind: str,
    credential: str,
    now: float,
    *,
    used_once: frozenset[str] = frozenset(),
    embedding: Sequence[float] | None = None,
    liveness: float | None = None,
    liveness_threshold: float = 0.8,
) -> Decision:
    """Decide on one presented credential from an opened list.

    An entry matches on kind and MAC (plates exactly, faces by similarity at the list's threshold); it
    must satisfy ``valid_from <= now < valid_until`` (either bound may be null). QR codes already used
    at this door (``used_once``) are refused: an offline door cannot count uses centrally.
    """
    if credential_kind == "face" and (liveness is None or liveness < liveness_threshold):
        return Decision(False, None, "face", "liveness_below_threshold")
    if opened.error is not None:
        return Decision(False, None, credential_kind, opened.error)
    if credential_kind not in CREDENTIAL_KINDS:
        return Decision(False, None, credential_kind, "bad_credential")
    matching = _matches(opened, credential_kind, credential, embedding)
    if not matching:
        return Decision(False, None, credential_kind, _UNKNOWN.get(credential_kind, "unknown_vehicle"))
    reasons: list[str] = []
    for e in matching:
        if e.valid_from is not None and now < e.valid_from:
            reasons.append("not_yet_valid")
        elif e.valid_until is not None and now >= e.valid_until:
            reasons.append("expired")
        elif credential_kind == "qr" and credential in used_once:
            reasons.append("uses_exhausted")
        else:
            return Decision(True, e.subject, credential_kind, "granted")
    return Decision(False, matching[0].subject, credential_kind, reasons[0])


class AttemptLimiter:
    """Per-door attempt limits for typed and presented credentials (pure; the caller passes the time).

    ``max_failures`` refusals of one kind at this door within ``window_s`` lock that kind for
    ``lockout_s``: the door then refuses it with ``locked_out`` without looking it up. The same holds
    per credential (keyed by its MAC, so the limiter keeps no PIN or card number in clear).
    """

    def __init__(self) -> None:
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, keys: Sequence[str], now: float) -> bool:
        """Whether any of ``keys`` (a kind, a credential MAC) is locked at ``now``."""
        return any(self._locked_until.get(k, float("-inf")) > now for k in keys)

    def failed(self, keys: Sequence[str], now: float, limits: Limits) -> list[tuple[str, float]]:
        """Record one refusal under each key; returns ``(key, locked_until)`` for the locks it starts."""
        started = []
        for k in keys:
            recent = [t for t in self._failures.get(k, ()) if now - t < limits.window_s]
            recent.append(now)
            if len(recent) >= limits.max_failures:
                self._locked_until[k] = now + limits.lockout_s
                started.append((k, now + limits.lockout_s))
                recent = []
            self._failures[k] = recent
        return started

    def succeeded(self, keys: Sequence[str]) -> None:
        """A granted attempt clears the failures counted under ``keys`` (not a running lock)."""
        for k in keys:
            self._failures.pop(k, None)

    def prune(self, now: float, limits: Limits) -> None:
        """Forget failures and locks that can no longer matter (bounds memory)."""
        self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < limits.window_s}
        self._locked_until = {k: t for k, t in self._locked_until.items() if t > now}


@dataclass(frozen=True, slots=True)
class Lockout:
    """A lock an :class:`EdgeDoor` started: the door reports it in an ``access_lockout`` event."""

    credential_kind: str
    scope: str  # "door": the kind is locked at this door; "credential": one credential is
    until: float
    failures: int

    def as_event(self) -> dict[str, Any]:
        """The ``access_lockout`` event data (no credential value, not even its MAC)."""
        return {
            "credential_kind": self.credential_kind,
            "scope": self.scope,
            "until": self.until,
            "failures": self.failures,
        }


class EdgeDoor:
    """A door's edge-mode state: its key, the opened list (per version), used QR codes, attempt limits."""

    def __init__(self, door_key: bytes | None) -> None:
        self.door_key = door_key
        self.used_qr: set[str] = set()
        self.limiter = AttemptLimiter()
        self._opened: OpenedList | None = None
        self._opened_from: Mapping[str, Any] | None = None

    def opened(self, allow_list: Mapping[str, Any] | None) -> OpenedList:
        """``allow_list`` opened with the door's key (kept until the list object changes)."""
        if self._opened is None or allow_list is not self._opened_from:
            self._opened = open_allow_list(allow_list, self.door_key)
            self._opened_from = allow_list
        return self._opened

    def decide(
        self,
        allow_list: Mapping[str, Any] | None,
        kind: str,
        credential: str,
        now: float,
        *,
        embedding: Sequence[float] | None = None,
        liveness: float | None = None,
        liveness_threshold: float = 0.8,
    ) -> tuple[Decision, list[Lockout]]:
        """Decide under the attempt limits; returns the decision and any lock it started."""
        opened = self.opened(allow_list)
        limits = opened.limits
        keys = [kind]
        if kind in LIMITED_KINDS and opened.mac_key:
            keys.append(mac_credential(opened.mac_key, kind, credential))
        if kind in LIMITED_KINDS and self.limiter.locked(keys, now):
            return Decision(False, None, kind, "locked_out"), []
        d = decide(
            opened,
            kind,
            credential,
            now,
            used_once=frozenset(self.used_qr),
            embedding=embedding,
            liveness=liveness,
            liveness_threshold=liveness_threshold,
        )
        if kind not in LIMITED_KINDS:
            return d, []
        self.limiter.prune(now, limits)
        if d.allowed:
            if kind == "qr":
                self.used_qr.add(credential)
            self.limiter.succeeded(keys[1:])  # a valid credential never resets the door's count
            return d, []
        started = self.limiter.failed(keys, now, limits)
        return d, [
            Lockout(kind, "door" if k == kind else "credential", until, limits.max_failures) for k, until in started
        ]
