"""Personal-data rules: nothing readable in the database file, retention purge, consent withdrawal."""

from __future__ import annotations

import uuid

from community_testkit import NOW, SITE, Community, community_data, community_fixture, db_fixture, template  # noqa: F401 (pytest fixtures)
from tortoise import Tortoise

from community.decisions import Capture, Decision
from community.models import AccessDecisionRow, AuditRow, CaptureRow, CredentialRow, PassRow
from community.records import Retention
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent

DAY = 86400.0


async def test_no_plain_id_number_or_phone_in_database_file(community: Community) -> None:
    await community.store.passes.issue_pass(
        "p-owner",
        valid_from=NOW,
        valid_until=NOW + 3600,
        doors=None,
        max_uses=1,
        now=NOW,
        visitor_phone="13912345678",
        visitor_name="访客甲",
    )
    handler = community.handler()
    await handler.on_event(
        DeviceEvent(SITE, "door-b1-u1", "door_lock", "card_presented", uuid.uuid4().hex, NOW, {"card": "C0001"}),
        RecordingActions(clock=NOW),
    )
    assert (await community.store.people.find_by_phone("13800000002"))[0].id == "p-b2", "look-up by keyed hash works"
    await Tortoise.close_connections()
    raw = b"".join(p.read_bytes() for p in community.db_path.parent.glob("t.db*"))
    secrets_ = [p["phone"] for p in community_data()["people"]] + ["13912345678"]
    secrets_ += [p["id_number"] for p in community_data()["people"] if p.get("id_number")]
    for s in secrets_:
        assert s.encode() not in raw, f"{s} readable in the database file"
    for s in ("张伟", "访客甲", "C0001"):
        assert s.encode("utf-8") not in raw
    assert b"community_people" in raw, "sanity: this is the database file"


async def test_purge_enforces_retention(community: Community) -> None:
    rec = community.records
    cap = Capture("door-b1-u1", "door_lock", "card", credential="C0001")
    for age_days in (100, 45, 1):
        ts = NOW - age_days * DAY
        cid = await rec.record_capture(cap, ts=ts, subject="p-owner", score=None)
        await rec.record_decision(
            Decision(True, "granted", "door-b1-u1", "card", "p-owner", "owner"),
            ts=ts,
            mode="central",
            device_id="door-b1-u1",
            capture_id=cid,
        )
    await community.store.passes.issue_pass(
        "p-owner", valid_from=NOW - 50 * DAY, valid_until=NOW - 49 * DAY + 1, doors=None, max_uses=1, now=NOW - 50 * DAY
    )
    handler = community.handler(retention=Retention(captures_days=30, decisions_days=90))
    counts = await handler.purge(NOW)
    assert counts["captures"] == 2 and counts["decisions"] == 1 and counts["passes"] == 1
    assert await CaptureRow.all().count() == 1 and await AccessDecisionRow.all().count() == 2
    assert await PassRow.all().count() == 0


async def test_withdrawing_face_consent_deletes_template_and_face_stops_working(community: Community) -> None:
    await community.store.people.set_face_consent("p-owner", False)
    assert await CredentialRow.filter(person_id="p-owner", kind="face").count() == 0
    handler, actions = community.handler(), RecordingActions(clock=NOW)
    await handler.on_event(
        DeviceEvent(
            SITE,
            "door-b1-u1",
            "door_lock",
            "face_captured",
            uuid.uuid4().hex,
            NOW,
            {"liveness": 0.99, "embedding": template(1)},
        ),
        actions,
    )
    await handler.on_event(
        DeviceEvent(SITE, "door-b1-u1", "door_lock", "card_presented", uuid.uuid4().hex, NOW, {"card": "C0001"}),
        actions,
    )
    assert [r.reason for r in await AccessDecisionRow.all().order_by("credential_kind")] == ["granted", "unknown_face"]
    assert await AuditRow.all().count() == 0
