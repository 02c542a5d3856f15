"""Central-mode access decisions: one capture + the registry snapshot + the time → allow/deny and why.

Pure (no IO, the clock is a parameter). The handler turns a :class:`Decision` into an ``open``
command and an ``access_decisions`` row.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from community.passes import PassError, verify_pass
from community.snapshot import STAFF_ROLES, DeviceInfo, PersonInfo, RegistrySnapshot, WatchEntry
from vision.gallery import GalleryError
from vision.plate_text import PlateFormatError, PlateMatch, match_plate, match_read_plate, normalize_plate

__all__ = ["Capture", "CredentialKind", "Decision", "decide", "entitlement_refusal", "resolve_target", "watchlist_hits"]

CredentialKind = Literal["plate", "face", "qr", "card", "pin"]
_OPENABLE = ("door_lock", "vehicle_gate")


@dataclass(frozen=True, slots=True)
class Capture:
    """One credential presented at a device (the reporting device, possibly a gate camera)."""

    device_id: str
    device_kind: str
    kind: CredentialKind
    credential: str | None = None
    embedding: np.ndarray | None = None
    liveness: float | None = None
    confidence: float | None = None
    camera: str | None = None
    snapshot_ref: str | None = None
    char_confidences: tuple[float, ...] | None = None  # a plate reading's, per character


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of :func:`decide`.

    ``target`` is the door/gate to open (None when the capture came from a camera that guards
    nothing); ``credential_ref`` is a non-secret reference to the credential for the record;
    ``tolerant_read`` is the plate as read when it matched the registered plate ``credential_ref``
    only tolerantly (one low-confidence character, or a lost province character).
    """

    allowed: bool
    reason: str
    target: str | None
    credential_kind: str
    subject: str | None = None
    subject_role: str | None = None
    credential_ref: str | None = None
    score: float | None = None
    pass_id: str | None = None
    tolerant_read: str | None = None


def resolve_target(capture: Capture, snap: RegistrySnapshot) -> DeviceInfo | None:
    """The door or gate a capture asks to open."""
    dev = snap.devices.get(capture.device_id)
    if dev is None:
        openable = capture.device_kind in _OPENABLE
        return DeviceInfo(capture.device_id, capture.device_kind) if openable else None
    if dev.kind in _OPENABLE:
        return dev
    if dev.gate is not None:
        return snap.devices.get(dev.gate, DeviceInfo(dev.gate, "vehicle_gate"))
    return None


def entitlement_refusal(person: PersonInfo, target: DeviceInfo, now: float) -> str | None:
    """Why ``person`` may not open ``target`` now, or None when they may."""
    if not person.active:
        return "person_inactive"
    if person.role in STAFF_ROLES:
        return None
    if person.valid_from is not None and now < person.valid_from:
        return "lease_not_started"
    if person.valid_until is not None and now >= person.valid_until:
        return "lease_ended"
    if target.kind == "vehicle_gate":
        return None
    if target.kind == "door_lock" and person.building is not None and person.building == target.building:
        return None
    return "not_entitled_here"


def _ref(snap: RegistrySnapshot, kind: str, credential: str | None) -> str | None:
    """What the decision log may keep of a credential: a plate as read, a card as a keyed reference, a PIN
    as ``****``; a QR payload never (its pass id is recorded instead)."""
    if credential is None:
        return None
    if kind == "pin":
        return "****"
    if kind == "card":
        return snap.card_ref(credential)
    if kind == "plate":
        return credential
    return None


def _person_decision(
    snap: RegistrySnapshot,
    capture: Capture,
    target: DeviceInfo,
    subject: str,
    now: float,
    score: float | None,
    ref: str | None,
) -> Decision:
    person = snap.people.get(subject)
    if person is None:
        return Decision(False, "unknown_subject", target.id, capture.kind, subject, None, ref, score)
    refusal = entitlement_refusal(person, target, now)
    return Decision(refusal is None, refusal or "granted", target.id, capture.kind, subject, person.role, ref, score)


def _pass_decision(
    snap: RegistrySnapshot, capture: Capture, target: DeviceInfo, pass_id: str, now: float, ref: str | None
) -> Decision:
    state = snap.passes.get(pass_id)

    def deny(reason: str) -> Decision:
        return Decision(False, reason, target.id, capture.kind, None, "visitor", ref, None, pass_id)

    if state is None:
        return deny("unknown_pass")
    c = state.claims
    if now < c.valid_from:
        return deny("not_yet_valid")
    if now >= c.valid_until:
        return deny("expired")
    if target.id not in c.doors:
        return deny("door_not_allowed")
    if state.revoked:
        return deny("revoked")
    if state.uses >= state.claims.max_uses:
        return deny("uses_exhausted")
    return Decision(True, "granted", target.id, capture.kind, None, "visitor", ref, None, pass_id)


def decide(capture: Capture, snap: RegistrySnapshot, now: float) -> Decision:
    """Allow or deny ``capture`` against the registry at time ``now``, with the reason."""
    target = resolve_target(capture, snap)
    if target is None:
        ref = _ref(snap, capture.kind, capture.credential)
        return Decision(False, "not_an_access_point", None, capture.kind, credential_ref=ref)
    cred = capture.credential
    if capture.kind == "face":
        if capture.liveness is None or capture.liveness < snap.liveness_threshold:
            return Decision(False, "liveness_below_threshold", target.id, "face", score=capture.liveness)
        if capture.embedding is None:
            return Decision(False, "no_face_template", target.id, "face")
        try:
            match = snap.faces.best_match(capture.embedding)
        except GalleryError:
            return Decision(False, "bad_face_template", target.id, "face")
        if match.subject is None:
            return Decision(False, "unknown_face", target.id, "face", score=match.score)
        return _person_decision(snap, capture, target, match.subject, now, match.score, "face")
    if not cred:
        return Decision(False, "no_credential", target.id, capture.kind)
    if capture.kind == "plate":
        return _plate_decision(snap, capture, target, cred, now)
    if capture.kind == "qr":
        try:
            claims = verify_pass(cred, snap.pass_key, now=now, site=snap.site, door=target.id)
        except PassError as exc:
            return Decision(
                False,
                exc.reason,
                target.id,
                "qr",
                subject_role="visitor",
                credential_ref=exc.pass_id,
                pass_id=exc.pass_id,
            )
        return _pass_decision(snap, capture, target, claims.pass_id, now, claims.pass_id)
    table = snap.cards if capture.kind == "card" else snap.pins
    subject = table.get(cred.strip())
    if subject is None:
        return Decision(
            False, f"unknown_{capture.kind}", target.id, capture.kind, credential_ref=_ref(snap, capture.kind, cred)
        )
    return _person_decision(snap, capture, target, subject, now, None, _ref(snap, capture.kind, cred))


def _plate_decision(snap: RegistrySnapshot, capture: Capture, target: DeviceInfo, read: str, now: float) -> Decision:
    try:
        ref = normalize_plate(read)
    except PlateFormatError:
        ref = read

    def match(registered: Collection[str]) -> PlateMatch | None:
        return match_read_plate(
            read, registered, capture.char_confidences, capture.confidence, confident=snap.plate_char_confidence
        )

    found = match(snap.plates.keys())
    if found is not None:
        d = _person_decision(snap, capture, target, snap.plates[found.plate], now, capture.confidence, found.plate)
        return replace(d, tolerant_read=found.read if found.tolerant else None)
    by_pass = snap.pass_plates()
    found = match(by_pass.keys())
    if found is not None:
        d = _pass_decision(snap, capture, target, by_pass[found.plate], now, found.plate)
        return replace(d, tolerant_read=found.read if found.tolerant else None)
    return Decision(False, "unknown_vehicle", target.id, "plate", credential_ref=ref, score=capture.confidence)


def watchlist_hits(capture: Capture, snap: RegistrySnapshot) -> list[tuple[WatchEntry, float | None]]:
    """Watchlist entries the capture matches (face by similarity, plate tolerantly), with score."""
    hits: list[tuple[WatchEntry, float | None]] = []
    if capture.kind == "face" and capture.embedding is not None and len(snap.watch_faces):
        try:
            match = snap.watch_faces.best_match(capture.embedding)
        except GalleryError:
            return hits
        if match.subject is not None and match.subject in snap.watch:
            hits.append((snap.watch[match.subject], match.score))
    elif capture.kind == "plate" and capture.credential and snap.watch_plates:
        plate = match_plate(capture.credential, snap.watch_plates.keys())
        if plate is not None:
            hits.append((snap.watch[snap.watch_plates[plate]], capture.confidence))
    return hits
