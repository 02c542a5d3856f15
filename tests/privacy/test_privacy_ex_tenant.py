"""A tenant whose lease ended, or a resident who moved out, reads nobody's data (issue 15, must show)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from community_testkit import NOW, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)

from anfang.alarm_dispatch import PlatformAlarmDesk
from community.api import CommunityServices, create_app
from community.models import PersonRow

DAY = 86400.0


@pytest.fixture
async def client(community: Community) -> AsyncIterator[tuple[httpx.AsyncClient, list[float]]]:
    clock = [NOW]
    desk = PlatformAlarmDesk(community.alarms, lambda: None)
    app = create_app(CommunityServices(community.store, community.records, clock=lambda: clock[0]), desk)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, clock


def personal_routes(app_paths: dict[str, dict[str, object]]) -> list[tuple[str, str]]:
    """Every GET route of the API that is not health/docs, with ids filled in."""
    routes = []
    for path, methods in app_paths.items():
        if "get" not in methods or path in ("/healthz", "/readyz", "/metrics"):
            continue
        routes.append(("GET", path.replace("{household_id}", "h1").replace("{person_id}", "p-owner")))
    return routes


async def test_lease_ended_means_403_on_every_personal_data_route(
    client: tuple[httpx.AsyncClient, list[float]], community: Community
) -> None:
    c, clock = client
    tenant = await PersonRow.get(id="p-tenant")
    assert tenant.lease_end is not None
    clock[0] = tenant.lease_end - 3600  # a token issued in the lease's last hour is still valid after it
    token = await community.records.create_token("p-tenant", label="t", now=clock[0])
    h = {"Authorization": f"Bearer {token}"}
    assert (await c.get("/me", headers=h)).status_code == 200, "during the lease the tenant reads their own data"
    clock[0] = tenant.lease_end + 60
    paths = (await c.get("/openapi.json")).json()["paths"]
    routes = personal_routes(paths)
    assert len(routes) >= 8, routes
    for method, path in routes:
        r = await c.request(method, path.replace("{alarm_id}", "a1").replace("{watch_id}", "w1"), headers=h)
        assert r.status_code in (403, 404) and "13800" not in r.text, f"{path}: {r.status_code} {r.text[:200]}"
        assert r.status_code == 403, f"{path}: {r.status_code}"
    r = await c.post("/passes", json={"valid_from": clock[0], "valid_until": clock[0] + 3600, "max_uses": 1}, headers=h)
    assert r.status_code == 403


async def test_a_resident_who_moved_out_is_refused(
    client: tuple[httpx.AsyncClient, list[float]], community: Community
) -> None:
    c, _ = client
    token = await community.records.create_token("p-b2", label="t", now=NOW)
    h = {"Authorization": f"Bearer {token}"}
    assert (await c.get("/me", headers=h)).status_code == 200
    await PersonRow.filter(id="p-b2").update(active=False)
    for path in ("/me", "/households/h2", "/me/access", "/passes", "/people/p-b2"):
        assert (await c.get(path, headers=h)).status_code in (401, 403), path
