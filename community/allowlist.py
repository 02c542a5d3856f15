"""Edge-mode allow-lists: which credentials a door or gate may accept on its own, and until when.

Pure. The handler writes the result into the device's desired twin as
``{"access_mode": "edge", "allow_list": {"version": n, "seal": ..., "key_id": ..., "entries": [...]}}``,
sealed to that door (:class:`community.edge.DoorSealer`): no PIN, card number, face template or plate
in clear. The door opens it with its own key and decides (``docs/protocol.md``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from community.decisions import entitlement_refusal
from community.edge import SEAL, DoorSealer
from community.passes import sign_pass
from community.snapshot import DeviceInfo, RegistrySnapshot

__all__ = ["EdgeLimits", "allow_list_digest", "build_allow_list", "next_boundary"]


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Attempt limits an edge door enforces (sent with its list): ``max_failures`` refusals of a PIN, card
    or QR code within ``window_s`` lock that kind at the door (or that credential) for ``lockout_s``."""

    max_failures: int = 5
    window_s: float = 300.0
    lockout_s: float = 300.0


def _entry(subject: str, kind: str, credential: str, vf: float | None, vu: float | None) -> dict[str, Any]:
    return {"subject": subject, "kind": kind, "credential": credential, "valid_from": vf, "valid_until": vu}


def build_allow_list(
    snap: RegistrySnapshot, device_id: str, now: float, sealer: DoorSealer, limits: EdgeLimits | None = None
) -> dict[str, Any]:
    """Entries for every person and visitor pass entitled to ``device_id`` now or later, sealed by ``sealer``.

    Tenants' entries carry the lease window, passes their validity window; entries already expired at
    ``now`` are left out. The result has no ``version``; the caller numbers it.
    """
    device = snap.devices.get(device_id, DeviceInfo(device_id, "door_lock"))
    by_person: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for card, pid in snap.cards.items():
        by_person[pid].append(("card", sealer.mac("card", card)))
    for pin, pid in snap.pins.items():
        by_person[pid].append(("pin", sealer.mac("pin", pin)))
    if device.kind == "vehicle_gate":
        for plate, pid in snap.plates.items():
            by_person[pid].append(("plate", sealer.seal_plate(pid, plate)))
    else:
        # Gates serve the whole community: with ~350 bytes per template their list would outgrow the
        # twin document limit (128 KiB), so faces at gates are always decided centrally.
        for pid, template in snap.face_templates.items():
            by_person[pid].append(("face", sealer.seal_face(pid, template)))
    entries: list[dict[str, Any]] = []
    for pid in sorted(by_person):
        person = snap.people.get(pid)
        if person is None or (person.valid_until is not None and person.valid_until <= now):
            continue
        # Judge entitlement at a moment inside the person's own window, so future leases are listed.
        probe = max(now, person.valid_from) if person.valid_from is not None else now
        if entitlement_refusal(person, device, probe) is not None:
            continue
        for kind, cred in sorted(by_person[pid]):
            entries.append(_entry(pid, kind, cred, person.valid_from, person.valid_until))
    for pass_id in sorted(snap.passes):
        state = snap.passes[pass_id]
        c = state.claims
        if state.revoked or state.uses >= c.max_uses or c.valid_until <= now or device_id not in c.doors:
            continue
        subject = f"visitor:{pass_id}"
        payload = sign_pass(c, snap.pass_key)
        entries.append(_entry(subject, "qr", sealer.mac("qr", payload), c.valid_from, c.valid_until))
        if c.plate and device.kind == "vehicle_gate":
            entries.append(_entry(subject, "plate", sealer.seal_plate(subject, c.plate), c.valid_from, c.valid_until))
    return {
        "seal": SEAL,
        "key_id": sealer.key_id,
        "face_threshold": snap.faces.threshold,
        "limits": asdict(limits or EdgeLimits()),
        "entries": entries,
    }


def allow_list_digest(allow_list: dict[str, Any]) -> str:
    """Stable content hash (the version number is excluded) to skip pushing unchanged lists."""
    body = {k: v for k, v in allow_list.items() if k != "version"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def next_boundary(allow_list: dict[str, Any], now: float) -> float | None:
    """The next ``valid_from``/``valid_until`` after ``now`` in a list (when it should be refreshed)."""
    entries = allow_list.get("entries", [])
    times = [
        float(t)
        for e in entries
        for t in (e.get("valid_from"), e.get("valid_until"))
        if t is not None and float(t) > now
    ]
    return min(times) if times else None
