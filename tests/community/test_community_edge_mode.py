"""Edge mode: allow-lists pushed into doors' desired twins; an offline door still expires a tenant."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import pytest
from community_testkit import LEASE_END_DAY, NOW, SITE, Community, community_fixture, db_fixture, noisy, template  # noqa: F401 (pytest fixtures)

from community.edge import door_key, key_id
from community.edge_keys import rotate_edge_key
from community.errors import NotFound
from community.models import AccessDecisionRow
from community.snapshot import lease_window
from firmware_sim.edge_access import decide, open_allow_list
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent, TwinChange

DOOR_KEYS: dict[str, bytes] = {}


def edge_decide(
    allow: dict[str, Any], kind: str, credential: str | list[float], now: float, *, liveness: float | None = None
) -> tuple[bool, str | None, str]:
    """What the door holding ``allow`` decides (the simulated firmware's decider, with the door's key)."""
    opened = open_allow_list(allow, DOOR_KEYS[allow["key_id"]])
    if isinstance(credential, list):
        d = decide(opened, kind, "", now, embedding=credential, liveness=liveness)
    else:
        d = decide(opened, kind, credential, now, liveness=liveness)
    return d.allowed, d.subject, d.reason


def remember_keys(community: Community, *devices: str) -> None:
    for device in devices:
        key = door_key(community.store.cipher.edge_root, SITE, device)
        DOOR_KEYS[key_id(key)] = key


def pushed_list(actions: RecordingActions, device: str) -> dict[str, Any]:
    patches = [p for d, p in actions.desired if d == device]
    assert patches, f"no allow-list pushed to {device}"
    assert patches[-1]["access_mode"] == "edge"
    allow: dict[str, Any] = patches[-1]["allow_list"]
    return allow


async def test_offline_edge_door_refuses_expired_tenant(community: Community) -> None:
    handler = community.handler(edge_devices=frozenset({"door-b1-u1"}))
    remember_keys(community, "door-b1-u1")
    actions = RecordingActions(clock=NOW)
    assert await handler.refresh_edge_allow_lists(actions) == ["door-b1-u1"]
    allow = pushed_list(actions, "door-b1-u1")
    subjects = {e["subject"] for e in allow["entries"]}
    assert {"p-owner", "p-tenant", "p-noface", "p-staff", "p-police"} <= subjects
    assert "p-b2" not in subjects, "another building's resident is not on this door's list"
    assert all(set(e) == {"subject", "kind", "credential", "valid_from", "valid_until"} for e in allow["entries"])
    assert {str(e["credential"]).split(":")[0] for e in allow["entries"]} == {"hmac", "aesgcm"}, "all sealed"
    assert not any("C0003" in str(e["credential"]) for e in allow["entries"]), "cards are digested, not in clear"
    # From here on the door is offline: it only has `allow` and its own clock.
    _, lease_until = lease_window(dt.date(2026, 9, 1), LEASE_END_DAY)
    assert edge_decide(allow, "card", "C0003", lease_until - 86400) == (True, "p-tenant", "granted")
    assert edge_decide(allow, "card", "C0003", lease_until + 60) == (False, "p-tenant", "expired")
    face = noisy(template(3), 4)
    assert edge_decide(allow, "face", face, lease_until - 60, liveness=0.9)[0] is True
    assert edge_decide(allow, "face", face, lease_until + 60, liveness=0.9) == (False, "p-tenant", "expired")
    assert edge_decide(allow, "card", "C0001", lease_until + 60)[0] is True
    pin = community.report.pins["p-noface"]
    assert edge_decide(allow, "pin", pin, lease_until + 60)[0] is True


async def test_unchanged_list_is_not_pushed_again_and_new_pass_is(community: Community) -> None:
    handler = community.handler(edge_devices=frozenset({"door-b1-u1", "gate-north"}))
    remember_keys(community, "door-b1-u1", "gate-north")
    actions = RecordingActions(clock=NOW)
    assert await handler.refresh_edge_allow_lists(actions) == ["door-b1-u1", "gate-north"]
    assert await handler.refresh_edge_allow_lists(actions) == []
    _, payload = await community.store.passes.issue_pass(
        "p-owner", valid_from=NOW, valid_until=NOW + 7200, doors=["gate-north"], max_uses=1, now=NOW, plate="湘A8888D"
    )
    assert await handler.refresh_edge_allow_lists(actions) == ["gate-north"]
    gate = pushed_list(actions, "gate-north")
    assert {e["kind"] for e in gate["entries"]} == {"card", "pin", "plate", "qr"}, "no face templates at gates"
    assert edge_decide(gate, "qr", payload, NOW + 1)[0] is True
    assert edge_decide(gate, "qr", payload.replace("AFP1.", "AFP1.x"), NOW + 1)[0] is False
    assert edge_decide(gate, "plate", "湘A8888D", NOW + 1)[0] is True
    assert edge_decide(gate, "plate", "湘A8888D", NOW + 7201)[2] == "expired"
    assert edge_decide(gate, "plate", "赣G12345", NOW + 1) == (True, "p-owner", "granted")
    versions = [p["allow_list"]["version"] for d, p in actions.desired if d == "gate-north"]
    assert versions == sorted(versions) and len(set(versions)) == 2
    assert await handler.next_edge_boundary(NOW) == NOW + 7200


async def test_door_switching_to_edge_gets_list_and_edge_decisions_are_recorded(community: Community) -> None:
    handler = community.handler()
    actions = RecordingActions(clock=NOW)
    change = TwinChange(
        SITE, "door-b2-u1", "door_lock", 7, NOW, {"access_mode": "edge"}, {}, {}, {"access_mode": "edge"}
    )
    await handler.on_twin_change(change, actions)
    assert "p-b2" in {e["subject"] for e in pushed_list(actions, "door-b2-u1")["entries"]}
    ev = DeviceEvent(
        SITE,
        "door-b2-u1",
        "door_lock",
        "access_decided",
        uuid.uuid4().hex,
        NOW,
        {"allowed": True, "subject": "p-b2", "credential_kind": "face", "reason": "allowed"},
    )
    await handler.on_event(ev, actions)
    row = await AccessDecisionRow.get(device_id="door-b2-u1")
    assert (row.mode, row.allowed, row.subject_id, row.subject_role) == ("edge", True, "p-b2", "owner")
    assert any(e.type == "access_decided" and e.data["allowed"] for e in community.platform_events)
    # In edge mode a capture event does not produce a second, central decision or open command.
    cap = DeviceEvent(SITE, "door-b2-u1", "door_lock", "card_presented", uuid.uuid4().hex, NOW, {"card": "S0001"})
    await handler.on_event(cap, actions)
    assert actions.commands == [] and await AccessDecisionRow.all().count() == 1


async def test_rotating_a_door_key_reseals_its_list_and_the_old_key_opens_nothing(community: Community) -> None:
    handler = community.handler(edge_devices=frozenset({"door-b1-u1"}))
    actions = RecordingActions(clock=NOW)
    await handler.refresh_edge_allow_lists(actions)
    old = pushed_list(actions, "door-b1-u1")
    old_key = door_key(community.store.cipher.edge_root, SITE, "door-b1-u1")
    assert decide(open_allow_list(old, old_key), "card", "C0001", NOW).allowed
    shown = await rotate_edge_key(community.store.cipher, SITE, "door-b1-u1")
    new_key = base64.b64decode(shown)
    assert new_key != old_key and new_key == door_key(community.store.cipher.edge_root, SITE, "door-b1-u1", 1)
    assert await handler.refresh_edge_allow_lists(actions) == ["door-b1-u1"], "resealed without being forced"
    new = pushed_list(actions, "door-b1-u1")
    assert new["key_id"] != old["key_id"]
    assert decide(open_allow_list(new, new_key), "card", "C0001", NOW).allowed
    assert decide(open_allow_list(new, old_key), "card", "C0001", NOW).reason == "sealed_for_another_door"
    with pytest.raises(NotFound):
        await rotate_edge_key(community.store.cipher, SITE, "cam-park")
