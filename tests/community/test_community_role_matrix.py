"""Every route of the OpenAPI document, called as each role, against the role matrix in docs/access.md.

The matrix is parsed from the document, so the document and the code cannot drift apart: a route
missing from the table, a row without a route, or a cell the code does not honour fails here.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from community_testkit import NOW, Community, community_fixture, template  # noqa: F401 (pytest fixtures)

from anfang.alarm_dispatch import PlatformAlarmDesk
from anfang.app import MODELS
from anfang.lifecycle import DeviceLifecycle
from anfang.web import create_platform_app
from community.api import CommunityServices
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_database
from registry.store import Registry
from rules.db_traces import DatabaseTraceStore
from telemetry.metrics import PlatformMetrics

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"
ROLES = {"resident": "p-owner", "staff": "p-staff", "police": "p-police"}
_ROW = re.compile(r"^\|\s*`(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`\s*\|(.*)\|\s*$")
CELLS = {"yes", "no", "own", "public"}


def matrix() -> dict[tuple[str, str], dict[str, str]]:
    """(method, path) -> {role: cell} from the role matrix table of docs/access.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Role matrix") :]
    header = next(line for line in section.splitlines() if line.startswith("| route |"))
    roles = [c.strip() for c in header.strip("|").split("|")][1:]
    assert roles == list(ROLES), f"the matrix's columns are {roles}"
    out: dict[tuple[str, str], dict[str, str]] = {}
    for line in section.splitlines():
        if m := _ROW.match(line):
            cells = [c.strip() for c in m.group(3).split("|")]
            assert set(cells) <= CELLS, line
            key = (m.group(1), m.group(2))
            assert key not in out, f"{key} twice in the matrix"
            out[key] = dict(zip(roles, cells, strict=True))
    return out


@dataclass
class World:
    """The requests' ids: passes and spare tokens of each caller, and things of somebody else."""

    client: httpx.AsyncClient
    tokens: dict[str, str]  # role -> bearer token
    spare: dict[str, str] = field(default_factory=dict)  # role -> id of another token of the caller
    own_pass: dict[str, str] = field(default_factory=dict)  # role -> id of a pass the caller issued
    other_pass: str = ""  # issued by p-b2
    other_token: str = ""  # p-b2's

    def h(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}


PASS_BODY = {"valid_from": NOW, "valid_until": NOW + 3600, "doors": ["door-b1-u1"], "max_uses": 1}
EMBEDDING = template(9)
# route -> (path ids, query, body) for the caller's own things, and for somebody else's ("own" cells)
Probe = Callable[[World, str], tuple[dict[str, str], dict[str, Any], Any]]
OWN: dict[str, Probe] = {
    "GET /households/{household_id}": lambda w, r: ({"household_id": "h1"}, {}, None),
    "GET /people/{person_id}": lambda w, r: ({"person_id": ROLES[r]}, {}, None),
    "POST /passes": lambda w, r: ({}, {}, PASS_BODY),
    "DELETE /passes/{pass_id}": lambda w, r: ({"pass_id": w.own_pass.get(r, w.other_pass)}, {}, None),
    "POST /people": lambda w, r: ({}, {}, {"role": "family", "household_id": "h1"}),
    "POST /tenants": lambda w, r: (
        {},
        {},
        {"household_id": "h1", "lease_start": "2026-11-01", "lease_end": "2027-10-31"},
    ),
    "POST /people/{person_id}/enrolment": lambda w, r: (
        {"person_id": "p-owner"},
        {},
        {"id_photo_embedding": EMBEDDING, "live_embedding": EMBEDDING},
    ),
    "DELETE /me/face-consent": lambda w, r: ({}, {}, None),
    "DELETE /people/{person_id}/face-consent": lambda w, r: ({"person_id": "p-b2"}, {}, None),
    "POST /people/{person_id}/deactivate": lambda w, r: ({"person_id": "p-tenant"}, {}, None),
    "DELETE /people/{person_id}": lambda w, r: ({"person_id": "p-noface"}, {}, None),
    "GET /devices/{device_id}": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "GET /devices/{device_id}/history": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "POST /devices/{device_id}/disable": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "POST /devices/{device_id}/enable": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "POST /devices/{device_id}/secret": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "DELETE /devices/{device_id}": lambda w, r: ({"device_id": "door-z"}, {}, None),
    "GET /rules/{rule_id}/traces": lambda w, r: ({"rule_id": "elderly-leaves-fence"}, {}, None),
    "POST /vehicles": lambda w, r: ({}, {}, {"plate": "赣G54321", "owner_id": "p-owner"}),
    "POST /watchlist": lambda w, r: ({}, {}, {"kind": "plate", "reason": "test", "plate": "赣G99999"}),
    "DELETE /watchlist/{watch_id}": lambda w, r: ({"watch_id": "w-none"}, {}, None),
    "GET /alarms/{alarm_id}": lambda w, r: ({"alarm_id": "a-none"}, {}, None),
    "POST /alarms/{alarm_id}/ack": lambda w, r: ({"alarm_id": "a-none"}, {}, {"note": ""}),
    "POST /alarms/{alarm_id}/clear": lambda w, r: ({"alarm_id": "a-none"}, {}, {"note": ""}),
    "POST /tokens": lambda w, r: ({}, {}, {"label": "matrix"}),
    "DELETE /tokens/{token_id}": lambda w, r: ({"token_id": w.spare[r]}, {}, None),
}
OTHER: dict[str, Probe] = {
    "GET /households/{household_id}": lambda w, r: ({"household_id": "h2"}, {}, None),
    "GET /people/{person_id}": lambda w, r: ({"person_id": "p-b2"}, {}, None),
    "POST /passes": lambda w, r: ({}, {}, dict(PASS_BODY, doors=["door-b2-u1"])),
    "DELETE /passes/{pass_id}": lambda w, r: ({"pass_id": w.other_pass}, {}, None),
    "GET /tokens": lambda w, r: ({}, {"person": "p-b2"}, None),
    "POST /tokens": lambda w, r: ({}, {}, {"person_id": "p-b2"}),
    "DELETE /tokens/{token_id}": lambda w, r: ({"token_id": w.other_token}, {}, None),
}
# "own" list routes without an "other" probe: everything listed must be the caller's
OWN_LISTS: dict[str, Callable[[World, str, list[dict[str, Any]]], bool]] = {
    "GET /passes": lambda w, r, rows: {p["id"] for p in rows} <= {w.own_pass.get(r, "")},
    "GET /tokens": lambda w, r, rows: {t["person_id"] for t in rows} == {ROLES[r]},
}


CONN: list[Any] = []  # the database connection the ``db`` fixture opened


@dataclass
class _Cuts:
    async def cut_off(self, site: str, device_id: str, *, forget: bool = False) -> None:
        pass


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Path]:
    """The platform's whole schema, as ``anfang run`` opens it (the device routes need the registry's)."""
    path = tmp_path / "t.db"
    async with open_database(f"sqlite://{path}", MODELS) as conn:
        CONN.append(conn)
        yield path


@pytest.fixture
async def world(community: Community) -> AsyncIterator[World]:
    """The app ``anfang run`` serves, with every optional part (metrics, device routes, rule traces)."""
    alarms = AlarmManager(community.store.site, DatabaseAlarmStore(CONN[-1], community.store.site))
    desk = PlatformAlarmDesk(alarms, lambda: None)
    services = CommunityServices(community.store, community.records, clock=lambda: NOW)
    registry = Registry(hash_iterations=1000)
    await registry.add_device(community.store.site, "door-z", "door_lock")
    app = create_platform_app(
        services,
        None,
        desk,
        PlatformMetrics(lambda: []),
        lifecycle=DeviceLifecycle(community.store.site, registry, lambda: _Cuts()),
        rule_traces=DatabaseTraceStore(CONN[-1], community.store.site),
    )
    tokens = {role: await community.records.create_token(p, label="matrix", now=NOW) for role, p in ROLES.items()}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        w = World(client, tokens)
        for role, person in ROLES.items():
            w.spare[role] = (await community.records.tokens.create(person, now=NOW, label="spare"))[0].id
            if role != "police":
                row, _ = await community.store.passes.issue_pass(
                    person, valid_from=NOW, valid_until=NOW + 3600, doors=["door-b1-u1"], max_uses=1, now=NOW
                )
                w.own_pass[role] = row.id
        row, _ = await community.store.passes.issue_pass(
            "p-b2", valid_from=NOW, valid_until=NOW + 3600, doors=["door-b2-u1"], max_uses=1, now=NOW
        )
        w.other_pass = row.id
        w.other_token = (await community.records.tokens.create("p-b2", now=NOW))[0].id
        yield w


async def _call(w: World, route: str, role: str | None, probe: Probe | None) -> httpx.Response:
    method, path = route.split(" ", 1)
    ids, query, body = probe(w, role or "resident") if probe else ({}, {}, None)
    for name in re.findall(r"{(\w+)}", path):
        assert name in ids, f"{route}: no probe gives {name}"
        path = path.replace("{" + name + "}", ids[name])
    return await w.client.request(method, path, params=query, json=body, headers=w.h(role))


async def test_every_route_answers_each_role_as_the_matrix_in_docs_says(world: World) -> None:
    rows = matrix()
    routes = {
        (method.upper(), path)
        for path, ops in (await world.client.get("/openapi.json")).json()["paths"].items()
        for method in ops
    }
    assert not (missing := sorted(routes - rows.keys())), f"add these routes to the matrix in docs/access.md: {missing}"
    assert not (stale := sorted(rows.keys() - routes)), (
        f"the matrix in docs/access.md names routes that do not exist: {stale}"
    )
    checked = 0
    for (method, path), cells in sorted(rows.items()):
        route = f"{method} {path}"
        for role, cell in cells.items():
            if cell == "public":
                r = await _call(world, route, None, OWN.get(route))
                assert r.status_code not in (401, 403), f"{route} without a token: {r.status_code}"
                continue
            r = await _call(world, route, role, OWN.get(route))
            where = f"{route} as {role} ({cell}): {r.status_code} {r.text[:200]}"
            if cell == "no":
                assert r.status_code == 403, where
            else:
                assert r.status_code not in (401, 403), where
                if cell == "own" and route in OWN_LISTS:
                    assert OWN_LISTS[route](world, role, r.json()), where
            if cell == "own" and route in OTHER:
                r = await _call(world, route, role, OTHER[route])
                assert r.status_code == 403, f"{route} as {role} on somebody else's: {r.status_code} {r.text[:200]}"
            if cell == "own":
                assert route in OTHER or route in OWN_LISTS, f"{route}: 'own' needs a probe of somebody else's"
            checked += 1
    assert checked >= 3 * 20
