"""Issue 15 item 5: a data subject's requests through the API (staff and the resident's own route),
on a real SQLite registry: face consent withdrawn, a resident deactivated, an ex-tenant erased."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from community_testkit import NOW, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)

from community.api import CommunityServices, create_app
from community.models import AccessDecisionRow, AuditRow, CaptureRow, CredentialRow, PassRow, PersonRow, VehicleRow
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent

SITE = "testsite"
KINDS = {"gate-north": "vehicle_gate", "door-b1-u1": "door_lock"}


@dataclass
class Api:
    client: httpx.AsyncClient
    tokens: dict[str, str]
    clock: list[float]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def api(community: Community) -> AsyncIterator[Api]:
    clock = [NOW]
    app = create_app(CommunityServices(community.store, community.records, clock=lambda: clock[0]))
    tokens = {
        p: await community.records.create_token(p, label="t", now=NOW)
        for p in ("p-owner", "p-b2", "p-tenant", "p-staff")
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield Api(client, tokens, clock)


async def _capture(
    community: Community, device: str, type_: str, data: dict[str, Any], now: float = NOW
) -> dict[str, Any]:
    handler = community.handler()
    actions = RecordingActions(clock=now, command_results={"open": {"opened": True}})
    await handler.on_event(DeviceEvent(SITE, device, KINDS[device], type_, uuid.uuid4().hex, now, data), actions)
    row = await AccessDecisionRow.all().order_by("-ts", "-id").first()
    assert row is not None
    return {"allowed": row.allowed, "reason": row.reason, "subject": row.subject_id}


async def test_withdrawing_face_consent_keeps_the_card(api: Api, community: Community) -> None:
    assert await CredentialRow.filter(person_id="p-owner", kind="face").exists()
    # a resident may not withdraw someone else's consent, only their own
    assert (await api.client.delete("/people/p-owner/face-consent", headers=api.h("p-b2"))).status_code == 403
    r = await api.client.delete("/me/face-consent", headers=api.h("p-owner"))
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["face_templates"] == 1 and r.json()["pin"] is None  # holds card C0001
    assert not await CredentialRow.filter(person_id="p-owner", kind="face").exists()
    assert (await PersonRow.get(id="p-owner")).face_consent is False
    assert (await _capture(community, "door-b1-u1", "card_presented", {"card": "C0001"}))["allowed"] is True
    # p-b2 holds no card: staff withdraw on their request, and a PIN is given once
    r = await api.client.delete("/people/p-b2/face-consent", headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["pin"] and len(r.json()["pin"]) == 6
    actions = {a.action for a in await AuditRow.filter(target__in=["p-owner", "p-b2"])}
    assert "withdraw_face_consent" in actions


async def test_a_deactivated_resident_opens_nothing_and_reads_nothing(api: Api, community: Community) -> None:
    assert (await api.client.post("/people/p-owner/deactivate", headers=api.h("p-b2"))).status_code == 403
    r = await api.client.post("/people/p-owner/deactivate", headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["removed"]["api_tokens"] >= 1
    assert (await api.client.get("/me", headers=api.h("p-owner"))).status_code == 401
    decided = await _capture(community, "door-b1-u1", "card_presented", {"card": "C0001"})
    assert (decided["allowed"], decided["reason"]) == (False, "person_inactive")


async def test_an_erased_ex_tenant_leaves_no_personal_data(api: Api, community: Community) -> None:
    store = community.store
    await store.credentials.add_credential("p-tenant", "pin", "48213907", now=NOW)
    _row, payload = await store.passes.issue_pass(
        "p-tenant", valid_from=NOW, valid_until=NOW + 3600, doors=None, max_uses=1, now=NOW,
        visitor_name="访客甲", visitor_phone="13612345678", plate="赣A77777",
    )  # fmt: skip
    for device, type_, data in (
        ("door-b1-u1", "card_presented", {"card": "C0003"}),
        ("door-b1-u1", "pin_entered", {"pin": "48213907"}),
        ("gate-north", "plate_captured", {"camera": "cam-north-1", "direction": "in", "plate": "赣GD12345"}),
    ):
        assert (await _capture(community, device, type_, data))["allowed"] is True
    decisions = await AccessDecisionRow.filter(subject_id="p-tenant").count()
    assert decisions == 3
    # the lease ends; the ex-tenant asks to be erased
    api.clock[0] = float((await PersonRow.get(id="p-tenant")).lease_end or NOW) + 86400
    for who in ("p-tenant", "p-staff"):  # tokens of that day (staff tokens last a shift, residents' 30 days)
        api.tokens[who] = await community.records.create_token(who, label="t", now=api.clock[0])
    assert (await api.client.get("/me", headers=api.h("p-tenant"))).status_code == 403
    r = await api.client.delete("/people/p-tenant", headers=api.h("p-staff"))
    assert r.status_code == 200, r.text
    removed = r.json()["removed"]
    assert removed["decisions_anonymised"] >= 3 and removed["vehicles"] == 1 and removed["passes"] == 1

    # anonymised statistics stay: the same number of decisions, no person, no credential in them
    assert await AccessDecisionRow.filter(subject_id=None, allowed=True).count() >= 3
    assert not await AccessDecisionRow.filter(subject_id="p-tenant").exists()
    assert not await AccessDecisionRow.filter(credential_ref="赣GD12345").exists()
    assert not await CaptureRow.filter(subject_id="p-tenant").exists()
    assert not await CredentialRow.filter(person_id="p-tenant").exists()
    assert not await VehicleRow.filter(owner_id="p-tenant").exists()
    assert not await PassRow.filter(issued_by="p-tenant").exists()
    person = await PersonRow.get(id="p-tenant")
    assert (person.name_enc, person.phone_enc, person.phone_hash, person.household_id, person.active) == (
        None, None, None, None, False,
    )  # fmt: skip
    # the raw database file (and WAL) holds none of it any more
    raw = b"".join(p.read_bytes() for p in community.db_path.parent.glob(community.db_path.name + "*"))
    for value in (
        "13800000003",
        "王芳",
        "C0003",
        "48213907",
        "赣GD12345",
        "13612345678",
        "访客甲",
        "赣A77777",
        payload,
    ):
        assert value.encode() not in raw, value
    assert (await api.client.get("/me", headers=api.h("p-tenant"))).status_code in (401, 403)
    audit = await AuditRow.filter(action="erase_person", target="p-tenant").first()
    assert audit is not None and audit.actor == "p-staff"


@pytest.mark.postgres
async def test_requests_on_postgres() -> None:
    import asyncpg
    from community_testkit import KEY, community_data
    from tortoise import Tortoise
    from tortoise.backends.base.executor import EXECUTOR_CACHE

    from community.crypto import FieldCipher
    from community.db import init_db
    from community.importer import import_community
    from community.store import CommunityStore
    from privacy.erasure import deactivate_person, erase_person, withdraw_face_consent

    pg = "postgres://postgres@127.0.0.1:5432"
    name = f"anfang_requests_{uuid.uuid4().hex[:10]}"
    EXECUTOR_CACHE.clear()  # SQL compiled for SQLite by earlier tests would be reused on PostgreSQL
    try:
        admin = await asyncpg.connect(f"{pg}/test", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await init_db(f"{pg}/{name}")
        try:
            store = CommunityStore(FieldCipher(KEY), SITE)
            await import_community(community_data(), store, now=NOW)
            withdrawn = await withdraw_face_consent(store, "p-b2", now=NOW)
            assert withdrawn.removed["face_templates"] == 1 and withdrawn.pin is not None
            assert (await deactivate_person(store, "p-owner", now=NOW)).action == "deactivate_person"
            erased = await erase_person(store, "p-tenant", now=NOW)
            assert erased.removed["vehicles"] == 1 and erased.removed["credentials"] >= 1
            person = await PersonRow.get(id="p-tenant")
            assert (person.phone_enc, person.household_id, person.active) == (None, None, False)
            assert not await CredentialRow.filter(person_id="p-tenant").exists()
        finally:
            await Tortoise.close_connections()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        EXECUTOR_CACHE.clear()


async def test_erasing_a_person_deletes_the_track_of_the_tag_they_wear(api: Api, community: Community) -> None:
    from registry.sites import load_site_model, save_site_model
    from twins.site import Tag

    stored = await load_site_model(SITE)
    assert stored is not None
    tags = [Tag(id="tag-t1", person="p-tenant", group="elderly"), Tag(id="tag-o1", person="p-owner", group="elderly")]
    await save_site_model(None, stored.model.model_copy(update={"tags": tags}), "test")
    conn = PersonRow._meta.db  # the registry's connection too
    await conn.execute_query("INSERT INTO sites(id, name, created_at) VALUES (?, ?, 0) ON CONFLICT DO NOTHING",
                             [SITE, SITE])  # fmt: skip
    await conn.execute_query("INSERT INTO devices(id, site_id, kind, name, created_at, updated_at) "
                             "VALUES ('rfid-1', ?, 'rfid_reader', 'rfid-1', 0, 0)", [SITE])  # fmt: skip
    for i, tag in enumerate(["tag-t1", "tag-t1", "tag-o1"]):
        await conn.execute_query(
            "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) VALUES ('rfid-1', ?, "
            "'tag_seen', ?, ?, ?)",
            [f"e{i}", NOW + i, NOW + i, f'{{"tag":"{tag}","rssi":-60}}'],
        )
    for version, tag in enumerate(["tag-t1", "tag-t1", "tag-o1"], start=1):
        await conn.execute_query(
            "INSERT INTO twin_history(device_id, version, ts, source, actor, changed) VALUES (?, ?, ?, 'reported', "
            "'device', '{\"pos\":[1,2]}')",
            [tag, version, NOW],
        )
    r = await api.client.delete("/people/p-tenant", headers=api.h("p-staff"))
    assert r.status_code == 200, r.text
    assert r.json()["removed"]["location_events"] == 2 and r.json()["removed"]["twin_history"] == 2
    left = await conn.execute_query_dict("SELECT data FROM device_events WHERE type = 'tag_seen'")
    assert [row["data"] for row in left] == ['{"tag":"tag-o1","rssi":-60}'], "another resident's track stays"
    history = await conn.execute_query_dict("SELECT device_id FROM twin_history")
    assert [row["device_id"] for row in history] == ["tag-o1"]
