"""One alarm system: lifecycle, routing to webhooks, the outbox and its deliveries, escalation, upgrade.

The lifecycle and routing are pure; the store runs on SQLite and on the PostgreSQL server; webhook
receivers are real HTTP servers on loopback (one that is down at first); the dispatcher is driven
step by step on a test clock, so retries and escalations need no waiting.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from hypothesis import given
from hypothesis import strategies as st
from process_kit import PG_ADMIN
from testkit import free_port
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.alarm_dispatch import AlarmDispatcher, backoff, webhook_targets
from anfang.config import AlarmSettings, WebhookSettings
from anfang.http_server import ApiServer
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import SEVERITIES, Alarm, AlarmError, AlarmManager, InMemoryAlarmStore
from registry.db import open_database
from registry.migrate import MIGRATIONS_DIR, apply_migrations
from rules.recording import RecordingActions

T0 = 1_800_000_000.0
SITE = "youzheng"


def an_alarm(**kw: Any) -> Alarm:
    base: dict[str, Any] = {
        "id": "a1",
        "site": SITE,
        "rule_id": "door-forced",
        "subject": "door-b1-u1",
        "kind": "door_forced",
        "severity": "critical",
        "message": "forced",
        "state": "raised",
        "raised_at": T0,
        "updated_at": T0,
    }
    return Alarm(**{**base, **kw})


# --- lifecycle (pure) --------------------------------------------------------------------------------
async def test_lifecycle_dedupes_keeps_the_first_acknowledgement_and_clears_once() -> None:
    store, acts = InMemoryAlarmStore(), RecordingActions(clock=T0)
    alarms = AlarmManager(SITE, store, new_id=lambda: "a1")
    first, created = await alarms.raise_alarm(
        acts,
        rule_id="access",
        subject="京A99999",
        kind="watchlist_match",
        severity="critical",
        message="m",
        now=T0,
        audience="police",
        dedupe_key="access|watchlist|w1",
        evidence={"device": "gate-north"},
    )
    again, created_again = await alarms.raise_alarm(
        acts,
        rule_id="access",
        subject="京A99999",
        kind="watchlist_match",
        severity="critical",
        message="m",
        now=T0 + 5,
        dedupe_key="access|watchlist|w1",
    )
    assert created and not created_again and again.id == first.id and again.count == 2
    assert [t for t, _, _ in acts.published] == [f"anfang/{SITE}/alarms/a1"]  # a repeat only counts
    acked = await alarms.acknowledge(acts, "a1", by="p-police", now=T0 + 10, note="on my way")
    later = await alarms.acknowledge(acts, "a1", by="p-other", now=T0 + 20)
    assert later.acked_by == "p-police" and acked.ack_note == "on my way"
    cleared = await alarms.clear(acts, "a1", by="p-police", now=T0 + 30, reason="case closed")
    assert cleared.state == "cleared" and cleared.clear_reason == "case closed"
    assert acts.published[-1] == (f"anfang/{SITE}/alarms/a1", "", True)  # the retained copy is removed
    with pytest.raises(AlarmError) as refused:
        await alarms.clear(acts, "a1", by="p-police", now=T0 + 40)
    assert refused.value.code == "alarm_not_open"
    with pytest.raises(AlarmError) as unknown:
        await alarms.acknowledge(acts, "nope", by="x", now=T0)
    assert unknown.value.code == "alarm_not_found"
    with pytest.raises(ValueError, match="severity"):
        await alarms.raise_alarm(acts, rule_id="r", subject="s", kind="k", severity="urgent", message="", now=T0)
    # raised again after the clear: a new alarm
    fresh, created_fresh = await alarms.raise_alarm(
        None,
        rule_id="access",
        subject="京A99999",
        kind="watchlist_match",
        severity="critical",
        message="m",
        now=T0 + 50,
        dedupe_key="access|watchlist|w1",
    )
    assert created_fresh and fresh.state == "raised"


def test_documents_stored_before_the_unification_still_read() -> None:
    legacy = {
        "id": "r1",
        "site": SITE,
        "rule_id": "door-held",
        "subject": "door-b1-u1",
        "kind": "door_held_open",
        "severity": "high",
        "message": "open",
        "state": "active",
        "raised_at": T0,
        "updated_at": T0,
        "count": 3,
        "retired_field": 1,
    }
    alarm = Alarm.from_json(legacy)
    assert alarm.state == "raised" and alarm.active and alarm.count == 3
    assert alarm.dedupe_key == "door-held|door-b1-u1"


hooks = AlarmSettings(
    webhooks=[
        WebhookSettings(name="desk", url="http://h/desk", min_severity="high"),
        WebhookSettings(
            name="fence",
            url="http://h/fence",
            min_severity="info",
            kinds=["geofence_exit"],
            events=["raised", "cleared"],
        ),
        WebhookSettings(name="duty", url="http://h/duty", min_severity="critical", events=[]),
    ],
    escalation_contacts=["duty", "desk"],
)


@given(
    severity=st.sampled_from(SEVERITIES),
    kind=st.sampled_from(["door_forced", "geofence_exit"]),
    event=st.sampled_from(["raised", "repeated", "acknowledged", "cleared"]),
)
def test_a_transition_goes_to_exactly_the_webhooks_that_asked_for_it(severity: str, kind: str, event: str) -> None:
    targets = webhook_targets(event, an_alarm(severity=severity, kind=kind), hooks)
    want = []
    if event == "raised" and SEVERITIES.index(severity) >= SEVERITIES.index("high"):
        want.append("desk")
    if kind == "geofence_exit" and event in ("raised", "cleared"):
        want.append("fence")
    assert targets == want


@given(level=st.integers(min_value=0, max_value=5))
def test_an_escalation_goes_to_the_contact_of_its_level(level: int) -> None:
    targets = webhook_targets("escalated", an_alarm(escalation_level=level), hooks)
    assert targets == ([hooks.escalation_contacts[level - 1]] if 1 <= level <= 2 else [])


@given(attempts=st.integers(min_value=0, max_value=100))
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    assert 1.0 <= backoff(attempts) <= 30.0
    assert backoff(attempts + 1) >= backoff(attempts)


# --- the database store and the dispatcher ------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
async def conn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseDBAsyncClient]:
    if request.param == "sqlite":
        async with open_database(f"sqlite://{tmp_path / 'a.db'}") as c:
            yield c
        return
    name = f"alarms_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at 127.0.0.1:5432 ({exc})")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        async with open_database(f"postgres://postgres@127.0.0.1:5432/{name}") as c:
            yield c
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


class Receiver:
    """A webhook receiver on loopback that can be down."""

    def __init__(self, port: int) -> None:
        self.port, self.calls = port, []  # type: ignore[var-annotated]
        self.app = FastAPI()
        self.server: ApiServer | None = None

        @self.app.post("/hook")
        async def hook(request: Request) -> dict[str, str]:
            self.calls.append(await request.json())
            return {"ok": "yes"}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self.server = ApiServer(self.app, f"127.0.0.1:{self.port}")
        await self.server.__aenter__()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.__aexit__(None, None, None)


async def test_a_webhook_that_is_down_gets_the_alarm_when_it_is_back_and_nothing_twice(
    conn: BaseDBAsyncClient,
) -> None:
    receiver = Receiver(free_port())
    settings = AlarmSettings(webhooks=[WebhookSettings(name="desk", url=receiver.url, min_severity="high")])
    store = DatabaseAlarmStore(conn, SITE)
    alarms = AlarmManager(SITE, store)
    acts = RecordingActions(clock=T0)
    async with httpx.AsyncClient() as http:
        dispatcher = AlarmDispatcher(store, alarms, settings, http)
        raised, _ = await alarms.raise_alarm(
            acts,
            rule_id="door-forced",
            subject="door-b1-u1",
            kind="door_forced",
            severity="critical",
            message="forced",
            now=T0,
        )
        await alarms.raise_alarm(
            acts, rule_id="low-battery", subject="tag-1", kind="low_battery", severity="low", message="battery", now=T0
        )
        await dispatcher.step(acts)  # receiver down: one failed attempt, retried later
        assert receiver.calls == [] and await store.pending() == 1
        await receiver.start()
        try:
            acts.clock = T0 + 0.5
            await dispatcher.step(acts)  # not due yet
            assert receiver.calls == []
            acts.clock = T0 + backoff(1) + 0.1
            await dispatcher.step(acts)
            [call] = receiver.calls
            assert call["event"] == "raised" and call["alarm"]["id"] == raised.id and call["site"] == SITE
            acts.clock += 100
            await dispatcher.step(acts)
            assert len(receiver.calls) == 1 and await store.pending() == 0
            # an acknowledgement made elsewhere (API, CLI: no platform actions) is published from the outbox
            await alarms.acknowledge(None, raised.id, by="p-staff", now=acts.clock)
            published_before = len(acts.published)
            await dispatcher.step(acts)
            topic, doc, retain = acts.published[published_before]
            assert topic.endswith(f"/alarms/{raised.id}") and retain and isinstance(doc, dict)
            assert doc["state"] == "acknowledged" and len(receiver.calls) == 1  # desk wants "raised" only
        finally:
            await receiver.stop()


async def test_an_undeliverable_webhook_is_given_up_after_its_age_and_logged(conn: BaseDBAsyncClient) -> None:
    settings = AlarmSettings(
        webhooks=[WebhookSettings(name="gone", url=f"http://127.0.0.1:{free_port()}/x")], delivery_max_age_s=60
    )
    store = DatabaseAlarmStore(conn, SITE)
    alarms = AlarmManager(SITE, store)
    acts = RecordingActions(clock=T0)
    async with httpx.AsyncClient() as http:
        dispatcher = AlarmDispatcher(store, alarms, settings, http)
        await alarms.raise_alarm(acts, rule_id="r", subject="s", kind="k", severity="critical", message="", now=T0)
        await dispatcher.step(acts)
        assert await store.pending() == 1
        acts.clock = T0 + 61
        await dispatcher.step(acts)
        assert await store.pending() == 0 and dispatcher.failed == 1


async def test_an_unacknowledged_critical_alarm_escalates_contact_by_contact(conn: BaseDBAsyncClient) -> None:
    duty, desk = Receiver(free_port()), Receiver(free_port())
    settings = AlarmSettings(
        webhooks=[
            WebhookSettings(name="duty", url=duty.url, events=[]),
            WebhookSettings(name="desk", url=desk.url, events=[]),
        ],
        escalation_contacts=["duty", "desk"],
        escalate_after_s=300,
    )
    store = DatabaseAlarmStore(conn, SITE)
    alarms = AlarmManager(SITE, store)
    acts = RecordingActions(clock=T0)
    await duty.start()
    await desk.start()
    try:
        async with httpx.AsyncClient() as http:
            dispatcher = AlarmDispatcher(store, alarms, settings, http)
            forced, _ = await alarms.raise_alarm(
                acts, rule_id="door-forced", subject="d1", kind="door_forced", severity="critical", message="", now=T0
            )
            quiet, _ = await alarms.raise_alarm(
                acts, rule_id="door-forced", subject="d2", kind="door_forced", severity="critical", message="", now=T0
            )
            await alarms.acknowledge(acts, quiet.id, by="guard", now=T0 + 10)
            acts.clock = T0 + 299
            await dispatcher.step(acts)
            assert duty.calls == [] and desk.calls == []
            acts.clock = T0 + 301
            await dispatcher.step(acts)  # escalates; the delivery is made in the next round
            await dispatcher.step(acts)
            assert [c["alarm"]["id"] for c in duty.calls] == [forced.id] and desk.calls == []
            assert duty.calls[0]["event"] == "escalated" and duty.calls[0]["alarm"]["escalation_level"] == 1
            acts.clock = T0 + 601
            await dispatcher.step(acts)
            await dispatcher.step(acts)
            assert [c["alarm"]["id"] for c in desk.calls] == [forced.id]
            acts.clock = T0 + 5000  # no contact left
            await dispatcher.step(acts)
            await dispatcher.step(acts)
            assert len(duty.calls) == 1 and len(desk.calls) == 1
            assert (await store.get(forced.id)).escalation_level == 2  # type: ignore[union-attr]
    finally:
        await duty.stop()
        await desk.stop()


async def test_open_alarms_are_published_again_when_the_dispatcher_starts(conn: BaseDBAsyncClient) -> None:
    store = DatabaseAlarmStore(conn, SITE)
    alarms = AlarmManager(SITE, store)
    open_one, _ = await alarms.raise_alarm(
        None, rule_id="r", subject="a", kind="k", severity="high", message="", now=T0
    )
    closed, _ = await alarms.raise_alarm(None, rule_id="r", subject="b", kind="k", severity="high", message="", now=T0)
    await alarms.clear(None, closed.id, by="x", now=T0 + 1)
    acts = RecordingActions(clock=T0 + 2)
    seen = asyncio.Event()
    record = acts.publish

    async def publish(topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        await record(topic, payload, retain=retain, qos=qos)
        if topic.endswith(open_one.id):
            seen.set()

    acts.publish = publish  # type: ignore[method-assign]
    async with httpx.AsyncClient() as http:
        dispatcher = AlarmDispatcher(store, alarms, AlarmSettings(), http)
        task = asyncio.create_task(dispatcher.run(acts))
        try:
            await asyncio.wait_for(seen.wait(), 30)
        finally:
            task.cancel()
    retained = {t for t, doc, retain in acts.published if retain and doc}
    assert f"anfang/{SITE}/alarms/{open_one.id}" in retained
    assert f"anfang/{SITE}/alarms/{closed.id}" not in retained


async def test_cleared_alarms_past_retention_are_removed_open_ones_kept(conn: BaseDBAsyncClient) -> None:
    store = DatabaseAlarmStore(conn, SITE)
    alarms = AlarmManager(SITE, store)
    old_open, _ = await alarms.raise_alarm(
        None, rule_id="r", subject="a", kind="k", severity="high", message="", now=T0
    )
    old_closed, _ = await alarms.raise_alarm(
        None, rule_id="r", subject="b", kind="k", severity="high", message="", now=T0
    )
    await alarms.clear(None, old_closed.id, by="x", now=T0)
    assert await store.purge_cleared(T0 + 10) == 1
    assert await store.get(old_closed.id) is None and await store.get(old_open.id) is not None


# --- upgrade ------------------------------------------------------------------------------------------
async def _upgrade_keeps(url: str, tmp: Path, execute: Any, fetch: Any) -> None:
    before = tmp / "before"
    before.mkdir()
    for f in MIGRATIONS_DIR.glob("000[1-4]_*.sql"):
        shutil.copy(f, before)
    await apply_migrations(url, before)
    doc = json.dumps(
        {
            "id": "r1",
            "site": SITE,
            "rule_id": "door-held",
            "subject": "door-b1-u1",
            "kind": "door_held_open",
            "severity": "high",
            "message": "open",
            "state": "active",
            "raised_at": T0,
            "updated_at": T0,
        }
    )
    await execute(
        f"INSERT INTO rule_alarms VALUES ('youzheng', 'r1', 'door-held', 'door-b1-u1', 'active', {T0}, {T0}, '{doc}')"
    )
    await execute(
        "INSERT INTO community_alarms(id, site, ts, kind, device_id, camera, watch_id, subject, reason) "
        f"VALUES ('w1', 'youzheng', {T0}, 'watchlist_match', 'gate-north', 'cam', 'wl1', '京A99999', "
        "'stolen')"
    )
    await apply_migrations(url)
    rows = {r["id"]: r for r in await fetch("SELECT id, state, audience, dedupe_key, doc FROM alarms")}
    held = Alarm.from_json(json.loads(rows["r1"]["doc"]))
    hit = Alarm.from_json(json.loads(rows["w1"]["doc"]))
    assert (held.state, held.kind, held.dedupe_key) == ("raised", "door_held_open", "door-held|door-b1-u1")
    assert (hit.state, hit.audience, hit.subject) == ("raised", "police", "京A99999")
    assert hit.evidence["watch_id"] == "wl1" and rows["w1"]["dedupe_key"] == "access|watchlist|wl1"


async def test_an_upgrade_moves_rule_and_watchlist_alarms_into_the_one_table_on_sqlite(tmp_path: Path) -> None:
    import aiosqlite

    path = tmp_path / "up.db"

    async def execute(sql: str) -> None:
        async with aiosqlite.connect(path) as db:
            await db.execute(sql)
            await db.commit()

    async def fetch(sql: str) -> list[Any]:
        async with aiosqlite.connect(path) as db:
            db.row_factory = aiosqlite.Row
            async with db.execute(sql) as cur:
                return list(await cur.fetchall())

    await _upgrade_keeps(f"sqlite://{path}", tmp_path, execute, fetch)


async def test_an_upgrade_moves_rule_and_watchlist_alarms_into_the_one_table_on_postgres(tmp_path: Path) -> None:
    name = f"alarmup_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at 127.0.0.1:5432 ({exc})")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:

        async def execute(sql: str) -> None:
            c = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
            try:
                await c.execute(sql)
            finally:
                await c.close()

        async def fetch(sql: str) -> list[Any]:
            c = await asyncpg.connect("postgresql://" + url.split("://", 1)[1])
            try:
                return list(await c.fetch(sql))
            finally:
                await c.close()

        await _upgrade_keeps(url, tmp_path, execute, fetch)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
