"""Pure firmware behaviour: what a device does with desired state, commands and time."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from community.edge import DoorSealer
from firmware_sim.edge_access import decide, open_allow_list
from firmware_sim.firmware import DoorLock, Output, PtzTracker, Publish, Reboot, VehicleGate
from firmware_sim.identity import face_embedding


def msg(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def pubs(outs: list[Output], suffix: str) -> list[dict[str, Any]]:
    return [o.payload for o in outs if isinstance(o, Publish) and o.suffix == suffix and isinstance(o.payload, dict)]


def test_gate_open_command_travels_then_closes() -> None:
    gate = VehicleGate("gate-n", cameras=["c1"], seq_start=1000, boot_ts=0.0)
    outs = gate.on_message("cmd/open", msg({"id": "x1", "args": {"seconds": 5, "subject": "p1"}}), now=100.0)
    assert pubs(outs, "cmd/open/result") == [
        {"id": "x1", "ok": True, "result": {"barrier": "moving", "open_seconds": 5.0}, "error": None}
    ]
    assert pubs(outs, "twin/reported")[0]["state"] == {"barrier": "moving"}
    assert gate.tick(101.9) == []
    up = gate.tick(102.0)
    assert pubs(up, "twin/reported")[0]["state"] == {"barrier": "up"}
    assert pubs(up, "events/barrier_opened")[0]["data"] == {"by": "p1"}
    closing = gate.tick(107.0)
    assert pubs(closing, "twin/reported")[0]["state"] == {"barrier": "moving"}
    down = gate.tick(109.0)
    assert pubs(down, "twin/reported")[0]["state"] == {"barrier": "down"}
    assert pubs(down, "events/barrier_closed")


def test_door_relocks_after_hold_time() -> None:
    door = DoorLock("door-1", seq_start=0, boot_ts=0.0)
    door.on_message("twin/desired", msg({"version": 3, "desired": {"hold_seconds": 4}}), now=0.0)
    assert door.reported["hold_seconds"] == 4
    outs = door.on_message("cmd/open", msg({"id": "c", "args": {"subject": "p9"}}), now=10.0)
    assert pubs(outs, "events/door_opened")[0]["data"] == {"by": "access", "subject": "p9"}
    assert door.reported["lock"] == "unlocked"
    assert door.tick(13.9) == []
    assert pubs(door.tick(14.0), "twin/reported")[0]["state"] == {"door": "closed", "lock": "locked"}


def test_unknown_command_and_bad_arguments_are_answered_not_ignored() -> None:
    door = DoorLock("door-1", seq_start=0, boot_ts=0.0)
    res = pubs(door.on_message("cmd/selfdestruct", msg({"id": "a", "args": {}}), 0.0), "cmd/selfdestruct/result")
    assert res[0]["ok"] is False and "unknown command" in res[0]["error"]
    res = pubs(door.on_message("cmd/open", msg({"id": "b", "args": {"seconds": -1}}), 0.0), "cmd/open/result")
    assert res[0]["ok"] is False and res[0]["id"] == "b"


def test_reboot_and_ptz_goto() -> None:
    ptz = PtzTracker("t1", seq_start=0, boot_ts=0.0)
    outs = ptz.on_message("cmd/ptz_goto", msg({"id": "p", "args": {"pan": 30, "tilt": -10, "zoom": 4}}), 0.0)
    assert pubs(outs, "cmd/ptz_goto/result")[0]["ok"] is True
    assert pubs(ptz.tick(1.0), "twin/reported")[0]["state"] == {"pan": 30.0, "tilt": -10.0, "zoom": 4.0}
    outs = ptz.on_message("cmd/reboot", msg({"id": "r", "args": {}}), 2.0)
    assert any(isinstance(o, Reboot) for o in outs)


def test_stale_desired_versions_are_ignored() -> None:
    door = DoorLock("door-1", seq_start=0, boot_ts=0.0)
    door.on_message("twin/desired", msg({"version": 5, "desired": {"hold_seconds": 9}}), 0.0)
    assert door.on_message("twin/desired", msg({"version": 4, "desired": {"hold_seconds": 2}}), 1.0) == []
    assert door.reported["hold_seconds"] == 9


ENTRY_WINDOW = st.tuples(st.floats(0, 1e6), st.floats(0, 1e6)).map(sorted)
DOOR_KEY = bytes(range(32))
SEALER = DoorSealer(DOOR_KEY)


def sealed(entries: list[dict[str, Any]], version: int = 1, threshold: float = 0.363) -> dict[str, Any]:
    """A list sealed to ``DOOR_KEY`` the way the platform seals it (credentials given in clear here)."""
    out = []
    for e in entries:
        kind, cred = e["kind"], e["credential"]
        if kind == "face":
            cred = SEALER.seal_face(e["subject"], cred)
        elif kind == "plate":
            cred = SEALER.seal_plate(e["subject"], cred)
        else:
            cred = SEALER.mac(kind, cred)
        out.append({**e, "credential": cred})
    return {
        "version": version,
        "seal": "anfang-edge-v1",
        "key_id": SEALER.key_id,
        "face_threshold": threshold,
        "limits": {"max_failures": 5, "window_s": 300.0, "lockout_s": 300.0},
        "entries": out,
    }


@given(ENTRY_WINDOW, st.floats(0, 1e6))
def test_edge_decision_respects_validity_window(window: list[float], now: float) -> None:
    lo, hi = window
    opened = open_allow_list(
        sealed([{"subject": "p1", "kind": "card", "credential": "C1", "valid_from": lo, "valid_until": hi}]), DOOR_KEY
    )
    d = decide(opened, "card", "C1", now)
    assert d.allowed == (lo <= now < hi)
    assert d.reason == ("granted" if lo <= now < hi else ("not_yet_valid" if now < lo else "expired"))
    assert decide(opened, "card", "C2", now).reason == "unknown_card"


def test_sealed_entries_open_only_with_this_doors_key() -> None:
    allow = sealed(
        [
            {
                "subject": "p5",
                "kind": "face",
                "credential": face_embedding("p5"),
                "valid_from": None,
                "valid_until": None,
            },
            {"subject": "p5", "kind": "card", "credential": "C5", "valid_from": None, "valid_until": None},
            {"subject": "p5", "kind": "plate", "credential": "赣G12345", "valid_from": None, "valid_until": None},
        ]
    )
    opened = open_allow_list(allow, DOOR_KEY)
    assert decide(opened, "card", "C5", 0.0).allowed
    assert decide(opened, "plate", "赣G12345", 0.0).allowed
    assert decide(opened, "plate", "粤G12345", 0.0).reason == "unknown_vehicle", "the door matches plates exactly"
    seen = face_embedding("p5", 0.05, random.Random(1))
    assert decide(opened, "face", "", 0.0, embedding=seen, liveness=0.97).subject == "p5"
    assert not decide(opened, "face", "", 0.0, embedding=face_embedding("p6"), liveness=0.97).allowed
    assert decide(opened, "face", "", 0.0, embedding=seen, liveness=0.2).reason == "liveness_below_threshold"
    other = open_allow_list(allow, bytes(32))
    assert decide(other, "card", "C5", 0.0).reason == "sealed_for_another_door"
    forged = {**allow, "key_id": other_key_id()}
    moved = open_allow_list(forged, bytes(32))
    assert {e.kind for e in moved.entries} == {"card"}, "sealed faces and plates do not open with another key"
    assert decide(moved, "card", "C5", 0.0).reason == "unknown_card", "nor does another door's MAC fit"
    assert decide(open_allow_list(allow, None), "card", "C5", 0.0).reason == "no_allow_list"
    clear = {**allow, "entries": [{**allow["entries"][1], "credential": "C5"}]}
    assert not decide(open_allow_list(clear, DOOR_KEY), "card", "C5", 0.0).allowed, "no credential in clear"


def other_key_id() -> str:
    return DoorSealer(bytes(32)).key_id


def test_edge_door_decides_locally_and_qr_is_single_use() -> None:
    door = DoorLock("door-1", seq_start=0, boot_ts=0.0, edge_key=DOOR_KEY)
    allow = sealed(
        [
            {
                "subject": "p1",
                "kind": "face",
                "credential": face_embedding("p1"),
                "valid_from": None,
                "valid_until": 1000.0,
            },
            {"subject": "guest", "kind": "qr", "credential": "Q1", "valid_from": None, "valid_until": None},
        ],
        version=7,
    )
    outs = door.on_message(
        "twin/desired", msg({"version": 1, "desired": {"access_mode": "edge", "allow_list": allow}}), 0.0
    )
    assert pubs(outs, "twin/reported")[0]["state"] == {"access_mode": "edge", "allow_list_version": 7}
    face = {"liveness": 0.97, "embedding": face_embedding("p1", 0.05, random.Random(2)), "_credential": "p1"}
    ok = door.stimulate("events/face_captured", face, 500.0)
    assert pubs(ok, "events/access_decided")[0]["data"]["allowed"] is True
    assert "_credential" not in pubs(ok, "events/face_captured")[0]["data"]
    late = door.stimulate("events/face_captured", face, 1001.0)
    assert pubs(late, "events/access_decided")[0]["data"] == {
        "allowed": False,
        "subject": "p1",
        "credential_kind": "face",
        "reason": "expired",
    }
    spoof = door.stimulate("events/face_captured", {**face, "liveness": 0.2}, 500.0)
    assert pubs(spoof, "events/access_decided")[0]["data"]["reason"] == "liveness_below_threshold"
    first = door.stimulate("events/qr_scanned", {"payload": "Q1"}, 600.0)
    second = door.stimulate("events/qr_scanned", {"payload": "Q1"}, 700.0)
    assert pubs(first, "events/access_decided")[0]["data"]["allowed"] is True
    assert pubs(second, "events/access_decided")[0]["data"]["reason"] == "uses_exhausted"


OPS = st.lists(st.sampled_from(["open", "desired", "tick", "force", "exit", "telemetry"]), max_size=40)


@given(OPS)
def test_seq_strictly_increases_whatever_happens(ops: list[str]) -> None:
    door = DoorLock("d", seq_start=1_700_000_000_000, boot_ts=0.0)
    seqs: list[int] = []
    now = 0.0
    for i, op in enumerate(ops):
        now += 1.5
        if op == "open":
            outs = door.on_message("cmd/open", msg({"id": str(i), "args": {"seconds": 2}}), now)
        elif op == "desired":
            outs = door.on_message("twin/desired", msg({"version": i, "desired": {"hold_seconds": i + 1}}), now)
        elif op == "tick":
            outs = door.tick(now + 10)
        elif op == "force":
            outs = door.stimulate("events/door_forced", {}, now)
        elif op == "exit":
            outs = door.stimulate("events/door_opened", {"by": "exit_button"}, now)
        else:
            outs = door.stimulate("telemetry", {"rssi": -60}, now)
        seqs += [p["seq"] for p in pubs(outs, "twin/reported")]
    assert seqs == sorted(set(seqs))
