"""Attempt limits for central decisions: repeated refusals lock a credential kind at a door, or one credential.

Pure (no IO, the clock is a parameter). The same policy as an edge door's (``docs/protocol.md``,
"Attempt limits"), with the same :class:`community.allowlist.EdgeLimits`: ``max_failures`` refusals
of PINs (or cards, or QR codes) at one door within ``window_s`` lock that kind at that door for
``lockout_s``; the same is counted per credential across doors (under a keyed hash the caller makes,
so no PIN or card number is kept). While locked, the kind is refused with ``locked_out`` without
being looked up, and a granted credential never resets a door's count.

State is per access handler: with several workers per site each partition's owner counts the captures
of its doors (a door's captures go to one owner, so door limits hold exactly). A credential's count
across doors is then kept site-wide in the database instead (:mod:`community.credential_limits`,
``credential_scope=False`` here, :func:`credential_lock` decides on the shared count), so a stolen card
or a guessed PIN gets ``max_failures`` refusals in total, whichever partitions its doors belong to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from community.allowlist import EdgeLimits

__all__ = ["LIMITED_KINDS", "AttemptLimits", "LockStarted", "credential_lock"]

#: Credentials a person types or presents; plates and faces are read from whoever passes by.
LIMITED_KINDS = frozenset({"pin", "card", "qr"})

_MAX_KEYS = 100_000  # bounds memory under a flood of distinct guesses; the oldest keys are dropped first


@dataclass(frozen=True, slots=True)
class LockStarted:
    """A lock that a refusal started."""

    door: str
    credential_kind: str
    scope: str  # "door" or "credential"
    until: float
    failures: int
    credential_key: str | None = None  # the keyed hash, for a credential lock


class AttemptLimits:
    """Sliding-window failure counts and running locks (see the module docstring)."""

    def __init__(self, limits: EdgeLimits, *, credential_scope: bool = True) -> None:
        """``credential_scope``: count per credential here too (off when a shared store counts it)."""
        self.limits = limits
        self.credential_scope = credential_scope
        self._failures: dict[tuple[str, ...], list[float]] = {}
        self._locked_until: dict[tuple[str, ...], float] = {}

    def _keys(self, door: str, kind: str, credential_key: str | None) -> list[tuple[str, ...]]:
        keys: list[tuple[str, ...]] = [("door", door, kind)]
        if credential_key is not None and self.credential_scope:
            keys.append(("credential", kind, credential_key))
        return keys

    def locked(self, door: str, kind: str, credential_key: str | None, now: float) -> bool:
        """Whether ``kind`` is locked at ``door``, or the credential is, at ``now``."""
        if kind not in LIMITED_KINDS:
            return False
        return any(self._locked_until.get(k, float("-inf")) > now for k in self._keys(door, kind, credential_key))

    def record(self, door: str, kind: str, credential_key: str | None, allowed: bool, now: float) -> list[LockStarted]:
        """Count one decision; returns the locks a refusal starts (at most one per scope)."""
        if kind not in LIMITED_KINDS:
            return []
        keys = self._keys(door, kind, credential_key)
        if allowed:
            if len(keys) > 1:
                self._failures.pop(keys[1], None)
            return []
        started = []
        for key in keys:
            recent = [t for t in self._failures.pop(key, ()) if now - t < self.limits.window_s]
            recent.append(now)
            if len(recent) >= self.limits.max_failures:
                until = now + self.limits.lockout_s
                self._locked_until[key] = until
                started.append(
                    LockStarted(
                        door, kind, key[0], until, len(recent), credential_key if key[0] == "credential" else None
                    )
                )
                recent = []
            self._failures[key] = recent
        self._bound(now)
        return started

    def _bound(self, now: float) -> None:
        if len(self._failures) <= _MAX_KEYS and len(self._locked_until) <= _MAX_KEYS:
            return
        self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self.limits.window_s}
        self._locked_until = {k: t for k, t in self._locked_until.items() if t > now}
        while len(self._failures) > _MAX_KEYS:
            del self._failures[next(iter(self._failures))]

    def active(self, now: float) -> Sequence[tuple[str, ...]]:
        """The keys locked at ``now`` (for tests and status)."""
        return [k for k, t in self._locked_until.items() if t > now]


def credential_lock(
    limits: EdgeLimits, door: str, kind: str, credential_key: str, failures: int, now: float
) -> LockStarted | None:
    """The credential lock ``failures`` refusals of one credential within ``limits.window_s`` start (the
    last at ``door`` at ``now``), or None while they are fewer than ``limits.max_failures``."""
    if kind not in LIMITED_KINDS or failures < limits.max_failures:
        return None
    return LockStarted(door, kind, "credential", now + limits.lockout_s, failures, credential_key)
