"""In-memory, read-optimised view of the community registry that access decisions run against.

Built by :meth:`community.store.CommunityStore.snapshot` from the database (decrypting what a decision
needs) and kept by the handler; the pure functions in :mod:`community.decisions` and
:mod:`community.allowlist` only read it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass, field

import numpy as np

from community.passes import PassClaims
from twins.site import DeviceInfo  # the platform's one device record (building/unit of a door, gate of a camera)
from vision.gallery import FaceGallery
from vision.plate_text import CONFIDENT_CHAR

__all__ = [
    "ALL_ROLES",
    "CHINA_TZ",
    "RESIDENT_ROLES",
    "STAFF_ROLES",
    "DeviceInfo",
    "PassState",
    "PersonInfo",
    "RegistrySnapshot",
    "WatchEntry",
    "lease_window",
]

RESIDENT_ROLES = frozenset({"owner", "family", "tenant", "elderly_alone", "child"})
STAFF_ROLES = frozenset({"staff", "police"})
ALL_ROLES = RESIDENT_ROLES | STAFF_ROLES
#: Leases are dated in local (China Standard) time, which has no daylight saving.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8))


def lease_window(start: dt.date, end: dt.date) -> tuple[float, float]:
    """Epoch seconds of a lease: from 00:00 local on ``start`` to 00:00 local the day after ``end``."""
    begin = dt.datetime.combine(start, dt.time(0), CHINA_TZ)
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(0), CHINA_TZ)
    return begin.timestamp(), until.timestamp()


@dataclass(frozen=True, slots=True)
class PersonInfo:
    """What a decision needs to know about a registered person (no contact data)."""

    id: str
    role: str
    household_id: str | None
    building: str | None
    valid_from: float | None = None
    valid_until: float | None = None
    face_consent: bool = False
    active: bool = True


@dataclass(frozen=True, slots=True)
class PassState:
    """A visitor pass as issued, plus the state the signature cannot carry (uses, revocation)."""

    claims: PassClaims
    issued_by: str
    uses: int = 0
    revoked: bool = False


@dataclass(frozen=True, slots=True)
class WatchEntry:
    """A face or plate of interest to community police."""

    id: str
    kind: str
    reason: str
    plate: str | None = None
    label: str | None = None


@dataclass
class RegistrySnapshot:
    """Everything :func:`community.decisions.decide` reads, indexed for O(1)/vectorised look-ups."""

    site: str
    pass_key: bytes
    people: dict[str, PersonInfo] = field(default_factory=dict)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    plates: dict[str, str] = field(default_factory=dict)
    cards: dict[str, str] = field(default_factory=dict)
    pins: dict[str, str] = field(default_factory=dict)
    faces: FaceGallery = field(default_factory=FaceGallery)
    face_templates: dict[str, np.ndarray] = field(default_factory=dict)
    passes: dict[str, PassState] = field(default_factory=dict)
    watch: dict[str, WatchEntry] = field(default_factory=dict)
    watch_faces: FaceGallery = field(default_factory=FaceGallery)
    watch_plates: dict[str, str] = field(default_factory=dict)
    liveness_threshold: float = 0.8
    plate_char_confidence: float = CONFIDENT_CHAR  # a plate differing in a character read this surely is another
    #: key of the credential references in the decision log (the look-up hash key of the site's cipher, so a
    #: card's reference is a prefix of its ``community_credentials.value_hash``)
    ref_key: bytes = b""

    def card_ref(self, card: str) -> str:
        """What the decision log keeps of a card number: ``card:`` and 16 hex digits of its keyed hash."""
        msg = b"card\x00" + card.strip().encode("utf-8")
        return "card:" + hmac.new(self.ref_key, msg, hashlib.sha256).hexdigest()[:16]

    def pass_plates(self) -> dict[str, str]:
        """Plate → pass id of passes that carry a plate and are not revoked."""
        return {p.claims.plate: pid for pid, p in self.passes.items() if p.claims.plate and not p.revoked}

    def register_use(self, pass_id: str) -> None:
        """Count one use of a pass (the handler persists it too)."""
        state = self.passes.get(pass_id)
        if state is not None:
            self.passes[pass_id] = PassState(state.claims, state.issued_by, state.uses + 1, state.revoked)
