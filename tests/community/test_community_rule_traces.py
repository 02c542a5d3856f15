"""``GET /rules/{id}/traces``: the engine's newest trace entries per rule, read from the database by staff."""

from __future__ import annotations

from pathlib import Path

import httpx
from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from tortoise import Tortoise

import anfang.rules_api
from community.api import CommunityServices, create_app
from community.models import AuditRow
from rules.db_traces import DatabaseTraceStore
from rules.engine import RulesEngine
from rules.loader import load_rule_docs
from rules.recording import RecordingActions
from rules.site import load_site_plan
from rules.yamlmarks import load_marked
from twins.hooks import DeviceEvent

PLAN = load_site_plan(Path(__file__).parents[2] / "rules" / "builtin" / "tests" / "site.yaml")
RULES = """
rules:
  - id: forced
    when: {event: {type: door_forced}}
    if: "device.id != 'door-b1-u2'"
    then: {audit: {message: "forced {{ device.id }}"}}
"""


async def test_staff_read_why_a_rule_fired_or_not_from_the_database(community: Community) -> None:
    conn = Tortoise.get_connection("default")
    rules = load_rule_docs(load_marked(RULES), "r.yaml", PLAN).rules
    acts = RecordingActions(clock=NOW)
    engine = RulesEngine(rules, PLAN, actions=acts, trace_store=DatabaseTraceStore(conn, SITE))
    for i, door in enumerate(("door-b1-u1", "door-b1-u2")):
        await engine.on_event(DeviceEvent(SITE, door, "door_lock", "door_forced", f"e{i}", NOW, {}), acts)
    await engine.tick(NOW + 1, acts)  # the tick writes the traces

    app = create_app(CommunityServices(community.store, community.records, clock=lambda: NOW))
    anfang.rules_api.install(app, DatabaseTraceStore(conn, SITE))  # as another process would read them
    tokens = {p: await community.records.create_token(p, label="t", now=NOW) for p in ("p-staff", "p-owner")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/rules/forced/traces", headers={"Authorization": f"Bearer {tokens['p-owner']}"})
        assert r.status_code == 403
        staff = {"Authorization": f"Bearer {tokens['p-staff']}"}
        r = await client.get("/rules/forced/traces", headers=staff)
        assert r.status_code == 200, r.text
        outcomes = [(t["outcome"], t["input"]) for t in r.json()]
        assert outcomes[0][0] == "fired" and "door-b1-u1" in outcomes[0][1]
        assert outcomes[1][0] == "condition_false" and "door-b1-u2" in outcomes[1][1]
        r = await client.get("/rules/forced/traces", headers=staff, params={"outcome": "fired"})
        assert [t["outcome"] for t in r.json()] == ["fired"]
        assert (await client.get("/rules/traces", headers=staff)).json() == ["forced"]
        r = await client.get("/rules/nonesuch/traces", headers=staff)
        assert r.status_code == 404 and r.json()["code"] == "unknown_rule"
    assert await AuditRow.filter(action="rule_traces", target="forced").count() == 2  # each read
