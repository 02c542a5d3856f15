"""Issue 16 item 4: attempt limits, decided centrally and by an edge door, each raising one alarm."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Sequence
from typing import Any

from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)

from community.allowlist import EdgeLimits
from community.decisions import Capture, CredentialKind
from community.edge import door_key
from community.handler import AccessHandler
from firmware_sim.firmware import DoorLock, Publish
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent


def _wrong_pin(right: str, i: int) -> str:
    pin = f"{(int(right) + 1 + i) % 10**6:06d}"
    assert pin != right
    return pin


async def _try(handler: AccessHandler, actions: RecordingActions, door: str, kind: CredentialKind, value: str) -> str:
    capture = Capture(door, "vehicle_gate" if door.startswith("gate") else "door_lock", kind, credential=value)
    decision = await handler.handle_capture(capture, actions)
    return "granted" if decision.allowed else decision.reason


async def test_five_wrong_pins_lock_pin_entry_at_that_door_and_raise_one_alarm(community: Community) -> None:
    handler = community.handler()
    actions = RecordingActions(clock=NOW, command_results={"open": {}})
    pin = community.report.pins["p-noface"]
    for i in range(4):
        assert await _try(handler, actions, "door-b1-u1", "pin", _wrong_pin(pin, i)) == "unknown_pin"
    assert await community.alarms.store.list(kind="access_lockout") == []
    assert await _try(handler, actions, "door-b1-u1", "pin", _wrong_pin(pin, 4)) == "unknown_pin"
    # Locked: even the right PIN is refused at this door, and nothing is opened.
    actions.clock = NOW + 10
    assert await _try(handler, actions, "door-b1-u1", "pin", pin) == "locked_out"
    for i in range(10):
        assert await _try(handler, actions, "door-b1-u1", "pin", _wrong_pin(pin, 10 + i)) == "locked_out"
    assert not any(name == "open" for _, name, _ in actions.commands)
    # Other doors and other kinds are not locked.
    assert await _try(handler, actions, "gate-north", "pin", pin) == "granted"
    assert await _try(handler, actions, "door-b1-u1", "card", "C0001") == "granted"
    [alarm] = await community.alarms.store.list(kind="access_lockout")
    assert (alarm.subject, alarm.state, alarm.count) == ("door-b1-u1", "raised", 1)
    assert alarm.evidence["credential_kind"] == "pin" and pin not in str(alarm.to_json())
    # After the lockout the right PIN opens again.
    actions.clock = NOW + 301
    assert await _try(handler, actions, "door-b1-u1", "pin", pin) == "granted"


async def test_one_credential_refused_at_several_doors_is_locked_everywhere(community: Community) -> None:
    handler = community.handler(limits=EdgeLimits(max_failures=3, window_s=300.0, lockout_s=300.0))
    actions = RecordingActions(clock=NOW, command_results={"open": {}})
    for door in ("door-b1-u1", "door-b2-u1", "gate-north"):
        assert await _try(handler, actions, door, "card", "X9999") == "unknown_card"
    assert await _try(handler, actions, "gate-south", "card", "X9999") == "locked_out"
    assert await _try(handler, actions, "gate-south", "card", "C0001") == "granted", "the door itself is not locked"
    [alarm] = await community.alarms.store.list(kind="access_lockout")
    assert alarm.evidence["scope"] == "credential" and "X9999" not in str(alarm.to_json())


def _sealed_door(community: Community, handler: AccessHandler, actions: RecordingActions) -> DoorLock:
    """The simulated door in edge mode, holding the list the platform sealed for it."""
    key = door_key(community.cipher.edge_root, SITE, "door-b1-u1")
    door = DoorLock("door-b1-u1", seq_start=0, boot_ts=NOW, edge_key=key)
    [patch] = [p for d, p in actions.desired if d == "door-b1-u1"]
    door.on_message("twin/desired", json.dumps({"version": 1, "desired": patch}).encode(), NOW)
    return door


def _events(outs: Sequence[object], type_: str) -> list[dict[str, Any]]:
    pubs = [o for o in outs if isinstance(o, Publish) and o.suffix == f"events/{type_}"]
    return [o.payload["data"] for o in pubs if isinstance(o.payload, dict)]


async def test_edge_door_locks_pin_entry_itself_and_the_platform_raises_one_alarm(community: Community) -> None:
    handler = community.handler(edge_devices=frozenset({"door-b1-u1"}))
    actions = RecordingActions(clock=NOW)
    await handler.refresh_edge_allow_lists(actions)
    door = _sealed_door(community, handler, actions)
    door.reported["access_mode"] = "edge"
    pin = community.report.pins["p-noface"]
    rng = random.Random(7)
    lockouts: list[dict[str, Any]] = []
    for i in range(5):
        outs = door.stimulate("events/pin_entered", {"pin": _wrong_pin(pin, rng.randrange(1000))}, NOW + i)
        assert _events(outs, "access_decided")[0]["reason"] == "unknown_pin"
        assert _events(outs, "pin_entered") == [{}], "an edge door never publishes the PIN"
        lockouts += _events(outs, "access_lockout")
    assert [(e["credential_kind"], e["scope"]) for e in lockouts] == [("pin", "door")]
    outs = door.stimulate("events/pin_entered", {"pin": pin}, NOW + 10)
    assert _events(outs, "access_decided")[0]["reason"] == "locked_out" and not _events(outs, "door_opened")
    outs = door.stimulate("events/pin_entered", {"pin": pin}, NOW + 310)
    assert _events(outs, "access_decided")[0]["reason"] == "granted"
    # The door's lockout event, delivered twice (a redelivery or a second lock), gives one alarm.
    for _ in range(2):
        ev = DeviceEvent(SITE, "door-b1-u1", "door_lock", "access_lockout", uuid.uuid4().hex, NOW + 5, lockouts[0])
        await handler.on_event(ev, actions)
    [alarm] = await community.alarms.store.list(kind="access_lockout")
    assert alarm.subject == "door-b1-u1" and alarm.state == "raised"
