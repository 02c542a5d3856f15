"""Console sign-in: every page refused without a session, CSRF on every form, idle timeout, roles."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from community_testkit import NOW, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)
from fastapi.routing import APIRoute
from hypothesis import given, settings
from hypothesis import strategies as st

from anfang.console import auth, routers
from anfang.console.routes_auth import PUBLIC_PATHS
from anfang.console.store import ConsoleUserError
from community.models import AuditRow, PersonRow


def _console_routes() -> list[APIRoute]:
    return [
        r
        for router in routers()
        for r in router.routes
        if isinstance(r, APIRoute) and r.path.startswith("/console") and r.path not in PUBLIC_PATHS
    ]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


async def test_every_console_page_and_action_is_refused_without_a_session(console: Console) -> None:
    routes = _console_routes()
    assert len(routes) >= 5
    async with console.client() as client:
        for route in routes:
            for method in route.methods:
                r = await client.request(method, _concrete(route.path), data={"note": "x"})
                if method == "GET":
                    assert r.status_code == 303, (method, route.path, r.status_code)
                    assert r.headers["location"].startswith("/console/login")
                else:
                    assert r.status_code == 401, (method, route.path, r.status_code)
                assert "alarm" not in r.text.lower() or r.status_code == 401


async def test_a_forged_or_stale_cookie_is_no_session(console: Console) -> None:
    async with console.client() as client:
        client.cookies.set("anfang_console", "not-a-session", path="/console")
        assert (await client.get("/console/alarms")).status_code == 303


async def test_sign_in_sets_an_httponly_samesite_cookie_and_wrong_passwords_are_refused(console: Console) -> None:
    async with console.client() as client:
        wrong = await client.post("/console/login", data={"username": "staff", "password": "nope-nope"})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        unknown = await client.post("/console/login", data={"username": "ghost", "password": "nope-nope"})
        assert unknown.status_code == 401 and "Wrong user name or password" in unknown.text
        ok = await client.post("/console/login", data={"username": "staff", "password": "staff-pass-1"})
        assert ok.status_code == 303 and ok.headers["location"] == "/console/alarms"
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie
        page = await client.get("/console/alarms")
        assert page.status_code == 200 and "Open alarms" in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_a_form_posted_without_the_csrf_token_is_refused(console: Console) -> None:
    alarm, _ = await console.community.alarms.raise_alarm(
        None, rule_id="r1", subject="door-b1-u1", kind="door_forced", severity="high", message="forced", now=NOW
    )
    client, csrf = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        missing = await client.post(f"/console/alarms/{alarm.id}/ack", data={"note": "on it"})
        assert missing.status_code == 403 and "CSRF" in missing.text
        wrong = await client.post(f"/console/alarms/{alarm.id}/ack", data={"note": "on it", "csrf": "0" * 64})
        assert wrong.status_code == 403
        assert (await console.community.alarms.store.get(alarm.id)).state == "raised"  # type: ignore[union-attr]
        ok = await client.post(f"/console/alarms/{alarm.id}/ack", data={"note": "on it", "csrf": csrf})
        assert ok.status_code == 303
        stored = await console.community.alarms.store.get(alarm.id)
        assert stored is not None and stored.state == "acknowledged" and stored.acked_by == "p-staff"
        sign_out = await client.post("/console/logout", data={})
        assert sign_out.status_code == 403  # signing out is a form too


async def test_a_session_ends_after_the_idle_timeout_and_on_sign_out(console: Console) -> None:
    client, csrf = await console.signed_in("police")
    async with contextlib.aclosing(client):
        console.clock[0] += 500
        assert (await client.get("/console/alarms")).status_code == 200  # touched: idle again from here
        console.clock[0] += 500
        assert (await client.get("/console/alarms")).status_code == 200
        console.clock[0] += 601
        assert (await client.get("/console/alarms")).status_code == 303
    client, csrf = await console.signed_in("police")
    async with contextlib.aclosing(client):
        assert (await client.post("/console/logout", data={"csrf": csrf})).status_code == 303
        client.cookies.set("anfang_console", "", path="/console")
        assert (await client.get("/console/alarms")).status_code == 303


async def test_reads_are_audited_and_residents_cannot_open_the_desk(console: Console) -> None:
    client, _ = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        await client.get("/console/alarms/history")
    assert await AuditRow.filter(actor="p-staff", action="console_search_alarms").exists()
    token = await console.services.store.issue_link("p-owner", created_by="p-staff", now=NOW)
    async with console.client() as resident:
        r = await resident.get(f"/console/r/{token}")
        assert r.status_code == 303 and r.headers["location"] == "/console/me"
        assert (await resident.get("/console/alarms")).status_code == 403
        again = console.client()
        assert (await again.get(f"/console/r/{token}")).headers["location"].startswith("/console/login")
        await again.aclose()


async def test_accounts_are_for_staff_and_police_with_real_passwords(console: Console) -> None:
    store = console.services.store
    with pytest.raises(ConsoleUserError):
        await store.add_user("owner", "p-owner", "long-enough-1", now=NOW)
    with pytest.raises(ConsoleUserError):
        await store.add_user("staff2", "p-staff", "short", now=NOW)
    rows = await store._sql.rows("SELECT password_hash FROM console_users WHERE username = 'staff'")
    assert rows[0]["password_hash"].startswith("scrypt$") and "staff-pass-1" not in rows[0]["password_hash"]


@settings(max_examples=5, deadline=None)  # scrypt is slow on purpose
@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_a_password_verifies_only_against_its_own_hash(a: str, b: str) -> None:
    stored = auth.hash_password(a, n=2**10)
    assert auth.verify_password(a, stored)
    assert auth.verify_password(b, stored) == (a == b)
    assert not auth.verify_password(a, stored.replace("scrypt", "bcrypt"))


@given(st.text(min_size=1, max_size=60), st.text(max_size=70))
def test_csrf_token_belongs_to_its_session(token: str, other: str) -> None:
    assert auth.verify_csrf(token, auth.csrf_token(token))
    assert auth.verify_csrf(token, other) == (other == auth.csrf_token(token))
    assert not auth.verify_csrf(token, None)


def test_the_screenshots_the_browser_tests_make_are_shown_in_the_docs() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "console.md").read_text(encoding="utf-8")
    for name in (
        "alarms.png",
        "history.png",
        "watchlist.png",
        "resident-phone.png",
        "sign-in.png",
        "map.png",
        "device.png",
    ):
        assert f"console/{name}" in text and (docs / "console" / name).is_file(), name


async def test_a_tenant_loses_the_phone_page_when_the_lease_ends(console: Console) -> None:
    tenant = await PersonRow.get(id="p-tenant")
    assert tenant.lease_end is not None
    console.services.store.idle_s = console.services.store.max_age_s = 10 * 365 * 86400.0
    token = await console.services.store.issue_link("p-tenant", created_by="p-staff", now=NOW)
    async with console.client() as phone:
        await phone.get(f"/console/r/{token}")
        assert (await phone.get("/console/me")).status_code == 200
        console.clock[0] = tenant.lease_end + 1
        assert (await phone.get("/console/me")).status_code == 303
