"""Central-mode access decisions through AccessHandler with RecordingActions and a real SQLite registry."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from community_testkit import LEASE_END_DAY, NOW, SITE, Community, community_fixture, db_fixture, noisy, template  # noqa: F401 (pytest fixtures)

from community.models import AccessDecisionRow, CaptureRow
from community.snapshot import CHINA_TZ, lease_window
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent

DEVICE_KINDS = {
    "gate-north": "vehicle_gate",
    "gate-south": "vehicle_gate",
    "cam-north-1": "camera",
    "door-b1-u1": "door_lock",
    "door-b2-u1": "door_lock",
    "cam-park": "camera",
}


def event(device: str, type_: str, data: dict[str, Any], ts: float = NOW) -> DeviceEvent:
    return DeviceEvent(SITE, device, DEVICE_KINDS[device], type_, uuid.uuid4().hex, ts, data)


class TickingActions(RecordingActions):
    """RecordingActions whose clock moves on by 1 ms per reading, so records keep their order."""

    def now(self) -> float:
        self.clock += 0.001
        return self.clock


def fake(now: float = NOW) -> RecordingActions:
    return TickingActions(clock=now, command_results={"open": {"opened": True}})


def opened(actions: RecordingActions) -> list[tuple[str, str, dict[str, Any]]]:
    return [c for c in actions.commands if c[1] == "open"]


async def last_decision() -> AccessDecisionRow:
    row = await AccessDecisionRow.all().order_by("-ts", "-id").first()
    assert row is not None
    return row


async def test_registered_car_opens_gate_unknown_car_does_not(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await handler.on_event(
        event(
            "gate-north",
            "plate_captured",
            {"camera": "cam-north-1", "direction": "in", "plate": "赣G12345", "confidence": 0.97},
        ),
        actions,
    )
    assert opened(actions) == [("gate-north", "open", {"seconds": 5, "subject": "p-owner", "reason": "granted"})]
    row = await last_decision()
    assert (row.allowed, row.subject_id, row.credential_ref, row.device_id) == (
        True,
        "p-owner",
        "赣G12345",
        "gate-north",
    )
    await handler.on_event(
        event("gate-north", "plate_captured", {"camera": "cam-north-1", "direction": "in", "plate": "京A99999"}),
        actions,
    )
    assert len(opened(actions)) == 1, "barrier must stay down for an unknown car"
    row = await AccessDecisionRow.get(credential_ref="京A99999")
    assert (row.allowed, row.reason) == (False, "unknown_vehicle")
    assert await CaptureRow.filter(plate="京A99999").count() == 1


async def test_plate_read_with_unsure_province_still_matches_and_camera_maps_to_gate(community: Community) -> None:
    handler, actions = community.handler(), fake()
    # The capture camera reports on its own; the open command goes to its gate. The recogniser was
    # unsure of the province character only.
    unsure = {"plate": "粤GD12345", "confidence": 0.93, "char_confidences": [0.41] + [0.99] * 7}
    await handler.on_event(
        event("cam-north-1", "plate_captured", {"camera": "cam-north-1", "direction": "in", **unsure}), actions
    )
    assert opened(actions)[0][0] == "gate-north"
    assert opened(actions)[0][2]["subject"] == "p-tenant"
    # The tolerant open is reviewed: both strings in one alarm (and in the log).
    [review] = await community.alarms.store.list(kind="plate_tolerant_match")
    assert (review.data["read"], review.data["registered"]) == ("粤GD12345", "赣GD12345")
    assert any(e.data.get("read_plate") == "粤GD12345" for e in community.platform_events)


async def test_same_tail_with_a_confidently_read_other_province_is_refused(community: Community) -> None:
    handler, actions = community.handler(), fake()
    sure = [
        {"plate": "粤G12345", "confidence": 0.97, "char_confidences": [0.97] * 7},  # every character sure
        {"plate": "粤G12345", "confidence": 0.96},  # only the line's confidence: it stands for each character
        {"plate": "粤G12345"},  # no confidence at all: nothing is tolerated
        {"plate": "粤G12345", "confidence": 0.6, "char_confidences": [0.95, 0.3, 0.5, 0.5, 0.5, 0.5, 0.5]},
    ]
    for reading in sure:
        await handler.on_event(event("gate-north", "plate_captured", {"camera": "cam-north-1", **reading}), actions)
        row = await last_decision()
        assert (row.allowed, row.reason) == (False, "unknown_vehicle"), reading
    assert opened(actions) == []
    assert await community.alarms.store.list(kind="plate_tolerant_match") == []
    # The registered car itself, read surely, still opens without review.
    await handler.on_event(event("gate-north", "plate_captured", {"plate": "赣G12345", "confidence": 0.97}), actions)
    assert opened(actions)[0][2]["subject"] == "p-owner"
    assert await community.alarms.store.list(kind="plate_tolerant_match") == []


async def test_face_opens_own_building_door_only(community: Community) -> None:
    handler, actions = community.handler(), fake()
    live = noisy(template(1), seed=11)
    await handler.on_event(event("door-b1-u1", "face_captured", {"liveness": 0.97, "embedding": live}), actions)
    assert [c[0] for c in opened(actions)] == ["door-b1-u1"]
    row = await last_decision()
    assert row.subject_id == "p-owner" and row.score is not None and row.score > 0.8
    await handler.on_event(event("door-b2-u1", "face_captured", {"liveness": 0.97, "embedding": live}), actions)
    assert len(opened(actions)) == 1
    assert (await last_decision()).reason == "not_entitled_here"


async def test_spoof_with_low_liveness_is_refused(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await handler.on_event(event("door-b1-u1", "face_captured", {"liveness": 0.42, "embedding": template(1)}), actions)
    assert opened(actions) == []
    row = await last_decision()
    assert (row.allowed, row.reason, row.score) == (False, "liveness_below_threshold", 0.42)


async def test_liveness_threshold_is_configurable(community: Community) -> None:
    handler, actions = community.handler(liveness_threshold=0.4), fake()
    await handler.on_event(event("door-b1-u1", "face_captured", {"liveness": 0.42, "embedding": template(1)}), actions)
    assert len(opened(actions)) == 1


async def test_unknown_face_is_refused(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await handler.on_event(event("door-b1-u1", "face_captured", {"liveness": 0.99, "embedding": template(99)}), actions)
    assert opened(actions) == []
    assert (await last_decision()).reason == "unknown_face"


async def test_tenant_access_ends_by_itself_at_lease_end(community: Community) -> None:
    _, lease_until = lease_window(dt.date(2026, 9, 1), LEASE_END_DAY)
    day_before = dt.datetime.combine(LEASE_END_DAY, dt.time(9, 0), CHINA_TZ).timestamp()
    handler = community.handler()
    before, after = fake(day_before), fake(lease_until + 60)
    capture = {"liveness": 0.95, "embedding": noisy(template(3), seed=5)}
    await handler.on_event(event("door-b1-u1", "face_captured", capture, day_before), before)
    assert len(opened(before)) == 1
    await handler.on_event(event("door-b1-u1", "face_captured", capture, lease_until + 60), after)
    await handler.on_event(event("door-b1-u1", "card_presented", {"card": "C0003"}, lease_until + 60), after)
    await handler.on_event(event("gate-north", "plate_captured", {"plate": "赣GD12345"}, lease_until + 60), after)
    assert opened(after) == []
    reasons = {r.reason for r in await AccessDecisionRow.filter(subject_id="p-tenant", allowed=False)}
    assert reasons == {"lease_ended"}


async def test_declined_face_consent_gets_working_alternative_credential(community: Community) -> None:
    pin = community.report.pins["p-noface"]
    handler, actions = community.handler(), fake()
    # Their face is never enrolled although the community file carried a template.
    await handler.on_event(event("door-b1-u1", "face_captured", {"liveness": 0.99, "embedding": template(4)}), actions)
    assert opened(actions) == []
    for door in ("door-b1-u1",):
        await handler.on_event(event(door, "pin_entered", {"pin": pin}), actions)
    await handler.on_event(event("door-b2-u1", "pin_entered", {"pin": pin}), actions)
    assert [c[0] for c in opened(actions)] == ["door-b1-u1"]
    row = await AccessDecisionRow.get(device_id="door-b1-u1", credential_kind="pin", allowed=True)
    assert row.credential_ref == "****", "a PIN is never written to the decision log"


async def test_staff_card_opens_every_door_and_police_too(community: Community) -> None:
    handler, actions = community.handler(), fake()
    for door in ("door-b1-u1", "door-b2-u1"):
        await handler.on_event(event(door, "card_presented", {"card": "S0001"}), actions)
        await handler.on_event(event(door, "card_presented", {"card": "P0001"}), actions)
    assert len(opened(actions)) == 4
    await handler.on_event(event("door-b1-u1", "card_presented", {"card": "X-unknown"}), actions)
    assert (await last_decision()).reason == "unknown_card"


async def test_visitor_qr_works_for_its_uses_then_is_refused(community: Community) -> None:
    handler, actions = community.handler(), fake()
    _, payload = await community.store.passes.issue_pass(
        "p-owner",
        valid_from=NOW - 60,
        valid_until=NOW + 3600,
        doors=["door-b1-u1"],
        max_uses=2,
        now=NOW,
        visitor_phone="13900000000",
    )
    for _ in range(3):
        await handler.on_event(event("door-b1-u1", "qr_scanned", {"payload": payload}), actions)
    assert len(opened(actions)) == 2
    rows = await AccessDecisionRow.filter(credential_kind="qr").order_by("ts")
    assert [r.reason for r in rows].count("uses_exhausted") == 1
    await handler.on_event(event("door-b2-u1", "qr_scanned", {"payload": payload}), actions)
    assert (await AccessDecisionRow.get(device_id="door-b2-u1")).reason == "door_not_allowed"


async def test_forged_altered_expired_or_revoked_qr_opens_nothing(community: Community) -> None:
    handler = community.handler()
    row, payload = await community.store.passes.issue_pass(
        "p-owner", valid_from=NOW - 60, valid_until=NOW + 3600, doors=None, max_uses=5, now=NOW
    )
    head, claims, tag = payload.split(".")
    altered = f"{head}.{claims[:-2]}{'A' if claims[-2] != 'A' else 'B'}{claims[-1]}.{tag}"
    forged_tag = f"{head}.{claims}.{'A' * len(tag)}"
    cases = {"bad_signature": [altered, forged_tag], "malformed": ["hello", "AFP1.x.y.z"]}
    for reason, payloads in cases.items():
        for p in payloads:
            actions = fake()
            await handler.on_event(event("door-b1-u1", "qr_scanned", {"payload": p}), actions)
            assert opened(actions) == [], p
            assert await AccessDecisionRow.filter(reason=reason).count() >= 1
    actions = fake(NOW + 3601)
    await handler.on_event(event("door-b1-u1", "qr_scanned", {"payload": payload}, NOW + 3601), actions)
    assert opened(actions) == [] and (await last_decision()).reason == "expired"
    assert await AccessDecisionRow.filter(reason="bad_signature").count() == 2
    owner = await community.store.people.person("p-owner")
    await community.store.passes.revoke_pass(row.id, by=owner, now=NOW)
    actions = fake(NOW + 10)
    await handler.on_event(event("door-b1-u1", "qr_scanned", {"payload": payload}), actions)
    assert opened(actions) == [] and await AccessDecisionRow.filter(reason="revoked").count() == 1


async def test_visitor_car_enters_with_plate_pass(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await community.store.passes.issue_pass(
        "p-owner",
        valid_from=NOW - 60,
        valid_until=NOW + 3600,
        doors=["gate-north"],
        max_uses=1,
        now=NOW,
        plate="湘A8888D",
    )
    for _ in range(2):
        await handler.on_event(event("gate-north", "plate_captured", {"plate": "湘A8888D"}), actions)
    assert len(opened(actions)) == 1
    assert (await last_decision()).reason == "uses_exhausted"


async def test_watchlisted_face_raises_police_alarm_even_when_door_opens(community: Community) -> None:
    handler, actions = community.handler(), fake()
    wid = await community.store.watch.add_watch(
        kind="face",
        template=template(1),
        reason="wanted for questioning",
        added_by="p-police",
        now=NOW,
        label="嫌疑人A",
    )
    await handler.on_event(
        event(
            "door-b1-u1",
            "face_captured",
            {"liveness": 0.99, "embedding": noisy(template(1), 3), "image_jpeg_b64": "aGVsbG8="},
        ),
        actions,
    )
    assert len(opened(actions)) == 1
    [(topic, payload, retain)] = actions.published
    assert topic.startswith(f"anfang/{SITE}/alarms/") and retain
    assert isinstance(payload, dict)
    assert payload["audience"] == "police" and payload["data"]["list_reason"] == "wanted for questioning"
    assert payload["data"]["place"] == "1栋1单元门禁" and payload["evidence"]["snapshot_ref"]
    alarm = await community.alarms.store.get(payload["id"])
    assert alarm is not None and alarm.evidence["watch_id"] == wid and alarm.kind == "watchlist_match"
    # seen again while the alarm is open: the same alarm counts it, no second alarm
    await handler.on_event(
        event(
            "door-b1-u1",
            "face_captured",
            {"liveness": 0.99, "embedding": noisy(template(1), 4), "image_jpeg_b64": "aGVsbG8="},
        ),
        actions,
    )
    [only] = await community.alarms.store.list()
    assert only.id == alarm.id and only.count == 2
    types = [e.type for e in community.platform_events]
    assert "watchlist_match" in types and "access_decided" in types
    assert all(e.kind == "platform" for e in community.platform_events)


async def test_watchlisted_plate_at_plain_camera_alarms_without_decision(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await community.store.watch.add_watch(
        kind="plate", plate="京A99999", reason="stolen vehicle", added_by="p-police", now=NOW
    )
    await handler.on_event(event("cam-park", "plate_captured", {"camera": "cam-park", "plate": "京A99999"}), actions)
    assert opened(actions) == [] and await AccessDecisionRow.all().count() == 0
    assert len(actions.published) == 1
    match = [e for e in community.platform_events if e.type == "watchlist_match"]
    assert match and match[0].data["list_reason"] == "stolen vehicle" and match[0].data["camera"] == "cam-park"


async def test_image_capture_is_embedded_by_injected_vision(community: Community) -> None:
    calls: list[bytes] = []

    async def embed(image: bytes) -> Any:
        calls.append(image)
        import numpy as np

        return np.asarray(noisy(template(2), 9), dtype=np.float32)

    from community.handler import AccessConfig, AccessHandler

    handler = AccessHandler(
        community.store, community.records, AccessConfig(site=SITE), embed_image=embed, alarms=community.alarms
    )
    actions = fake()
    await handler.on_event(
        event("door-b2-u1", "face_captured", {"liveness": 0.9, "image_jpeg_b64": "aGVsbG8="}), actions
    )
    assert calls == [b"hello"] and opened(actions)[0][2]["subject"] == "p-b2"


async def test_registry_change_is_seen_without_restart(community: Community) -> None:
    handler, actions = community.handler(), fake()
    await handler.on_event(event("gate-north", "plate_captured", {"plate": "赣G54321"}), actions)
    assert opened(actions) == []
    await community.store.vehicles.add_vehicle("赣G54321", "p-b2", now=NOW)
    await handler.on_event(event("gate-north", "plate_captured", {"plate": "赣G54321"}), actions)
    assert len(opened(actions)) == 1
