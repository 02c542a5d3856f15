"""HTTP API: role boundaries, personal-data audit, passes, enrolment — in-process via httpx ASGITransport."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from community_testkit import LEASE_END_DAY, NOW, Community, community_fixture, db_fixture, noisy, template  # noqa: F401 (pytest fixtures)

from anfang.alarm_dispatch import PlatformAlarmDesk
from community.api import CommunityServices, create_app
from community.models import AccessDecisionRow, AuditRow, EnrolmentRow
from community.snapshot import lease_window


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
    desk = PlatformAlarmDesk(community.alarms, lambda: None)
    app = create_app(CommunityServices(community.store, community.records, clock=lambda: clock[0]), desk)
    tokens = {
        p: await community.records.create_token(p, label="test", now=NOW)
        for p in ("p-owner", "p-b2", "p-tenant", "p-staff", "p-police")
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield Api(client, tokens, clock)


async def test_openapi_is_served(api: Api) -> None:
    r = await api.client.get("/openapi.json")
    assert r.status_code == 200 and "/passes" in r.json()["paths"]


async def test_no_or_bad_token_is_401(api: Api) -> None:
    assert (await api.client.get("/me")).status_code == 401
    r = await api.client.get("/me", headers={"Authorization": "Bearer afc_nope"})
    assert r.status_code == 401 and r.json()["code"] == "bad_token"


async def test_resident_sees_own_household_not_another(api: Api) -> None:
    r = await api.client.get("/households/h1", headers=api.h("p-owner"))
    assert r.status_code == 200
    members = {m["id"]: m for m in r.json()["members"]}
    assert set(members) == {"p-owner", "p-noface"} and members["p-owner"]["phone"] == "13800000001"
    assert (await api.client.get("/households/h2", headers=api.h("p-owner"))).status_code == 403
    assert (await api.client.get("/people/p-b2", headers=api.h("p-owner"))).status_code == 403
    assert (await api.client.get("/people/p-noface", headers=api.h("p-owner"))).status_code == 200
    assert (await api.client.get("/households/h2", headers=api.h("p-staff"))).status_code == 200


async def test_personal_data_reads_are_audited(api: Api) -> None:
    await api.client.get("/me", headers=api.h("p-owner"))
    await api.client.get("/households/h2", headers=api.h("p-police"))
    rows = await AuditRow.all().order_by("ts")
    assert [(r.actor, r.action, r.target) for r in rows] == [
        ("p-owner", "view_person", "p-owner"),
        ("p-police", "view_household", "h2"),
    ]


async def test_only_police_see_the_watchlist(api: Api) -> None:
    body = {"kind": "plate", "plate": "京A99999", "reason": "stolen"}
    for who in ("p-owner", "p-staff", "p-tenant"):
        assert (await api.client.get("/watchlist", headers=api.h(who))).status_code == 403
        assert (await api.client.post("/watchlist", json=body, headers=api.h(who))).status_code == 403
    r = await api.client.post("/watchlist", json=body, headers=api.h("p-police"))
    assert r.status_code == 201
    listed = (await api.client.get("/watchlist", headers=api.h("p-police"))).json()
    assert [w["plate"] for w in listed] == ["京A99999"]
    assert (await api.client.delete(f"/watchlist/{r.json()['id']}", headers=api.h("p-police"))).status_code == 204
    assert (await api.client.get("/watchlist", headers=api.h("p-police"))).json() == []


async def test_only_staff_register_people_tenants_and_vehicles(api: Api) -> None:
    person = {
        "role": "owner",
        "household_id": "h2",
        "name": "新住户",
        "phone": "13811112222",
        "id_number": "110105194912310021",
    }
    r = await api.client.post("/people", json=person, headers=api.h("p-staff"))
    assert r.status_code == 422 and r.json()["code"] == "id_number_check_digit_mismatch"
    person["id_number"] = "11010519491231002X"
    assert (await api.client.post("/people", json=person, headers=api.h("p-owner"))).status_code == 403
    r = await api.client.post("/people", json=person, headers=api.h("p-staff"))
    assert r.status_code == 409, "the same ID-card number cannot be registered twice"
    person.pop("id_number")
    r = await api.client.post("/people", json=person, headers=api.h("p-staff"))
    assert r.status_code == 201 and r.json()["pin"], "no face consent: an alternative PIN is issued"
    tenant = {"household_id": "h2", "phone": "13811113333", "lease_start": "2026-01-01", "lease_end": "2026-12-31"}
    assert (await api.client.post("/tenants", json=tenant, headers=api.h("p-owner"))).status_code == 403
    assert (await api.client.post("/tenants", json=tenant, headers=api.h("p-staff"))).status_code == 201
    vehicle = {"plate": "赣G·77777", "owner_id": "p-b2"}
    assert (await api.client.post("/vehicles", json=vehicle, headers=api.h("p-owner"))).status_code == 403
    r = await api.client.post("/vehicles", json=vehicle, headers=api.h("p-staff"))
    assert r.status_code == 201 and r.json()["plate"] == "赣G77777"


async def test_enrolment_refuses_face_not_matching_id_photo(api: Api) -> None:
    body = {"id_photo_embedding": template(2), "live_embedding": template(50)}
    r = await api.client.post("/people/p-b2/enrolment", json=body, headers=api.h("p-staff"))
    assert r.status_code == 422 and r.json()["code"] == "face_id_mismatch"
    body["live_embedding"] = noisy(template(2), 1)
    r = await api.client.post("/people/p-b2/enrolment", json=body, headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["score"] > 0.8
    checks = await EnrolmentRow.filter(person_id="p-b2").order_by("ts")
    assert [(c.matched, c.operator) for c in checks] == [(False, "p-staff"), (True, "p-staff")]
    r = await api.client.post("/people/p-noface/enrolment", json=body, headers=api.h("p-staff"))
    assert r.status_code == 409 and r.json()["code"] == "no_face_consent"


async def test_passes_issue_list_revoke_and_tenant_after_lease(api: Api, community: Community) -> None:
    body = {
        "valid_from": NOW,
        "valid_until": NOW + 86400,
        "doors": ["door-b1-u1"],
        "max_uses": 2,
        "visitor_phone": "13900001111",
    }
    r = await api.client.post("/passes", json=body, headers=api.h("p-owner"))
    assert r.status_code == 201 and r.json()["payload"].startswith("AFP1.")
    pid = r.json()["id"]
    bad = dict(body, doors=["door-b2-u1"])
    assert (await api.client.post("/passes", json=bad, headers=api.h("p-owner"))).status_code == 403
    assert [p["id"] for p in (await api.client.get("/passes", headers=api.h("p-owner"))).json()] == [pid]
    assert (await api.client.delete(f"/passes/{pid}", headers=api.h("p-b2"))).status_code == 403
    assert (await api.client.delete(f"/passes/{pid}", headers=api.h("p-owner"))).status_code == 204
    assert (await api.client.get("/passes", headers=api.h("p-owner"))).json()[0]["revoked"] is True
    _, lease_until = lease_window(dt.date(2026, 9, 1), LEASE_END_DAY)
    api.clock[0] = lease_until - 3600
    # months later: a fresh token (a resident's lives 30 days)
    api.tokens["p-tenant"] = await community.records.create_token("p-tenant", label="t", now=api.clock[0])
    late = dict(body, valid_from=lease_until - 3600, valid_until=lease_until + 86400)
    r = await api.client.post("/passes", json=late, headers=api.h("p-tenant"))
    assert r.status_code == 201 and r.json()["valid_until"] == lease_until, "a tenant's pass ends with the lease"
    api.clock[0] = lease_until + 60
    late = dict(body, valid_from=lease_until + 60, valid_until=lease_until + 86400)
    r = await api.client.post("/passes", json=late, headers=api.h("p-tenant"))
    assert r.status_code == 403 and r.json()["code"] == "lease_ended"


async def test_access_history_and_police_search(api: Api, community: Community) -> None:
    from community.decisions import Decision

    for subject, device in (("p-owner", "door-b1-u1"), ("p-b2", "door-b2-u1")):
        await community.records.record_decision(
            Decision(True, "granted", device, "card", subject, "owner"), ts=NOW, mode="central", device_id=device
        )
    mine = (await api.client.get("/me/access", headers=api.h("p-owner"))).json()
    assert [d["subject_id"] for d in mine] == ["p-owner"]
    assert (await api.client.get("/decisions", headers=api.h("p-owner"))).status_code == 403
    assert (await api.client.get("/captures", headers=api.h("p-staff"))).status_code == 403
    r = await api.client.get("/decisions", params={"device": "door-b2-u1", "since": NOW - 1}, headers=api.h("p-police"))
    assert [d["subject_id"] for d in r.json()] == ["p-b2"]
    assert await AccessDecisionRow.all().count() == 2
    assert await AuditRow.filter(actor="p-police", action="search_decisions").count() == 1


async def test_alarms_are_listed_acknowledged_and_cleared_by_role(api: Api, community: Community) -> None:
    alarms = community.alarms
    hit, _ = await alarms.raise_alarm(
        None,
        rule_id="access",
        subject="嫌疑人A",
        kind="watchlist_match",
        severity="critical",
        message="watchlist: 嫌疑人A",
        now=NOW,
        audience="police",
        evidence={"device": "door-b1-u1", "snapshot_ref": "s/d/e"},
    )
    forced, _ = await alarms.raise_alarm(
        None,
        rule_id="door-forced",
        subject="door-b2-u1",
        kind="door_forced",
        severity="critical",
        message="2栋1单元 forced",
        now=NOW + 1,
    )
    assert (await api.client.get("/alarms", headers=api.h("p-owner"))).status_code == 403
    police = (await api.client.get("/alarms", headers=api.h("p-police"))).json()
    assert [a["id"] for a in police] == [hit.id, forced.id]
    assert police[0]["evidence"]["snapshot_ref"] == "s/d/e" and police[0]["source"] == "access"
    # staff see the site's alarms but not watchlist hits, which are for police
    staff = (await api.client.get("/alarms", headers=api.h("p-staff"))).json()
    assert [a["id"] for a in staff] == [forced.id]
    assert (await api.client.get(f"/alarms/{hit.id}", headers=api.h("p-staff"))).status_code == 404

    r = await api.client.post(f"/alarms/{forced.id}/ack", json={"note": "guard on the way"}, headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert r.json()["acked_by"] == "p-staff" and r.json()["ack_note"] == "guard on the way"
    r = await api.client.post(f"/alarms/{forced.id}/clear", json={"note": "door repaired"}, headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["state"] == "cleared" and r.json()["clear_note"] == "door repaired"
    again = await api.client.post(f"/alarms/{forced.id}/clear", json={}, headers=api.h("p-staff"))
    assert again.status_code == 409 and again.json()["code"] == "alarm_not_open"
    still_open = (await api.client.get("/alarms", headers=api.h("p-police"))).json()
    assert [a["id"] for a in still_open] == [hit.id]
    everything = await api.client.get(
        "/alarms", params={"state": ["raised", "acknowledged", "cleared"]}, headers=api.h("p-police")
    )
    assert [a["id"] for a in everything.json()] == [hit.id, forced.id]
    assert (await api.client.get("/alarms", params={"state": "gone"}, headers=api.h("p-police"))).status_code == 400
    assert (await api.client.post("/alarms/nope/ack", json={}, headers=api.h("p-police"))).status_code == 404
    assert await AuditRow.filter(actor="p-police", action="view_alarms").count() >= 1
