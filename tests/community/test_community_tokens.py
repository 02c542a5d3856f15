"""Issue 16 item 2: API tokens bound to a site and a role, with an expiry, hashed, listable and revocable."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from process_kit import cli

from community.api import CommunityServices, create_app
from community.models import PersonRow
from community.records import AccessRecords
from community.store import CommunityStore
from community.tokens import TokenPolicy

HOUR = 3600.0


@dataclass
class Sites:
    here: httpx.AsyncClient  # the API of the test community's site
    there: httpx.AsyncClient  # another site's API on the same database
    clock: list[float]


@pytest.fixture
async def sites(community: Community) -> AsyncIterator[Sites]:
    clock = [NOW]
    here = create_app(CommunityServices(community.store, community.records, clock=lambda: clock[0]))
    other = CommunityServices(
        CommunityStore(community.cipher, "site-b"), AccessRecords("site-b"), clock=lambda: clock[0]
    )
    there = create_app(other)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=here), base_url="http://a") as a,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=there), base_url="http://b") as b,
    ):
        yield Sites(a, b, clock)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_token_of_one_site_gets_403_wrong_site_at_another(community: Community, sites: Sites) -> None:
    token = await community.records.create_token("p-staff", label="t", now=NOW)
    assert (await sites.here.get("/me", headers=bearer(token))).status_code == 200
    r = await sites.there.get("/me", headers=bearer(token))
    assert r.status_code == 403 and r.json()["code"] == "wrong_site"
    r = await sites.there.get("/decisions", headers=bearer(token))
    assert r.status_code == 403 and r.json()["code"] == "wrong_site"


async def test_staff_and_police_tokens_expire_after_12_hours_residents_later(
    community: Community, sites: Sites
) -> None:
    staff = await community.records.create_token("p-staff", label="t", now=NOW)
    police, info = (await community.records.tokens.create("p-police", now=NOW))[::-1]
    resident = await community.records.create_token("p-owner", label="t", now=NOW)
    assert info.expires_at == NOW + 12 * HOUR
    sites.clock[0] = NOW + 12 * HOUR - 1
    for token in (staff, police, resident):
        assert (await sites.here.get("/me", headers=bearer(token))).status_code == 200
    sites.clock[0] = NOW + 12 * HOUR
    for token in (staff, police):
        r = await sites.here.get("/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["code"] == "token_expired"
    assert (await sites.here.get("/me", headers=bearer(resident))).status_code == 200
    # the lifetime is configurable, and a requested one is capped at the role's
    short = AccessRecords(SITE, TokenPolicy(staff_ttl_s=HOUR))
    assert (await short.tokens.create("p-staff", now=NOW, ttl_s=48 * HOUR))[0].expires_at == NOW + HOUR
    assert (await short.tokens.create("p-staff", now=NOW, ttl_s=600))[0].expires_at == NOW + 600


async def test_a_revoked_token_is_refused_at_the_next_request(community: Community, sites: Sites) -> None:
    staff = await community.records.create_token("p-staff", label="desk", now=NOW)
    owner = await community.records.create_token("p-owner", label="phone", now=NOW)
    r = await sites.here.get("/tokens", headers=bearer(owner))
    assert r.status_code == 200 and [t["person_id"] for t in r.json()] == ["p-owner"]
    owner_id = r.json()[0]["id"]
    assert "token" not in r.json()[0] and owner not in r.text
    listed = (await sites.here.get("/tokens", headers=bearer(staff))).json()
    assert {t["person_id"] for t in listed} == {"p-staff", "p-owner"}, "staff see the site's tokens"
    assert (await sites.here.delete(f"/tokens/{owner_id}", headers=bearer(staff))).status_code == 204
    r = await sites.here.get("/me", headers=bearer(owner))
    assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    # a resident issues a token for themselves and revokes it; not one for anybody else
    r = await sites.here.post("/tokens", json={"label": "new phone"}, headers=bearer(staff))
    assert r.status_code == 201
    mine = await sites.here.post("/tokens", json={"person_id": "p-owner"}, headers=bearer(staff))
    assert mine.status_code == 201 and mine.json()["role"] == "owner"
    token, token_id = mine.json()["token"], mine.json()["id"]
    r = await sites.here.post("/tokens", json={"person_id": "p-b2"}, headers=bearer(token))
    assert r.status_code == 403
    r = await sites.here.post("/tokens", json={"person_id": "p-police"}, headers=bearer(staff))
    assert r.status_code == 403 and r.json()["code"] == "residents_only", "police tokens come from the operator"
    assert (await sites.here.delete(f"/tokens/{token_id}", headers=bearer(token))).status_code == 204
    assert (await sites.here.get("/me", headers=bearer(token))).status_code == 401


async def test_a_token_is_bound_to_the_role_it_was_issued_for(community: Community, sites: Sites) -> None:
    token = await community.records.create_token("p-owner", label="t", now=NOW)
    await PersonRow.filter(id="p-owner").update(role="staff")
    r = await sites.here.get("/decisions", headers=bearer(token))
    assert r.status_code == 401 and r.json()["code"] == "role_changed"


async def test_only_the_hash_is_stored(community: Community) -> None:
    token = await community.records.create_token("p-owner", label="t", now=NOW)
    with sqlite3.connect(community.db_path) as db:
        dump = "\n".join(db.iterdump())
    assert token not in dump and token[4:] not in dump


def test_cli_creates_lists_and_revokes_tokens(tmp_path: Path) -> None:
    env = {"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_SITE": "youzheng", "PATH": "/usr/bin:/bin"}
    cli(env, tmp_path, "community", "person", "add", "staff", "--id", "p-desk")
    created = json.loads(cli(env, tmp_path, "community", "token", "create", "p-desk", "--hours", "2"))
    assert created["role"] == "staff" and created["token"].startswith("afc_")
    listed = json.loads(cli(env, tmp_path, "community", "token", "list"))
    assert [(t["id"], t["person_id"]) for t in listed] == [(created["id"], "p-desk")]
    assert abs(listed[0]["expires_at"] - listed[0]["created_at"] - 2 * HOUR) < 1
    assert created["token"] not in json.dumps(listed)
    revoked = json.loads(cli(env, tmp_path, "community", "token", "revoke", created["id"]))
    assert revoked["revoked"] is True
    assert json.loads(cli(env, tmp_path, "community", "token", "list")) == []
    assert len(json.loads(cli(env, tmp_path, "community", "token", "list", "--ended"))) == 1
