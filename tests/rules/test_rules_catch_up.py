"""The engine's input mark and the catch-up at start (issue 17 item 3): the stored events after the mark
are fed again, in order, on SQLite and PostgreSQL; the mark covers exactly what was processed; a
replayed event that had fired a rule neither bumps its alarm nor runs its actions again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_kit import fresh_postgres_database
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.app import MODELS
from registry.alarms import InMemoryAlarmStore
from registry.db import open_database
from registry.records import StoredEvent
from registry.store import TwinStore
from rules.catch_up import InputMark
from rules.db_events import events_after
from rules.engine import RulesEngine
from rules.loader import Rule, load_rule_docs
from rules.recording import RecordingActions
from rules.site import SitePlan
from rules.timers import InMemoryTimerStore
from rules.yamlmarks import load_marked
from twins.hooks import DeviceEvent

SITE = SitePlan.from_mapping({"site": "s", "devices": [{"id": "door-1", "kind": "door_lock", "position": [0, 0]}]})
RULES = """
rules:
  - id: forced
    when: [{event: {type: door_forced, kind: door_lock}}]
    then:
      - raise_alarm: {kind: forced, severity: high, subject: "{{ device.id }}", message: forced}
      - publish: {topic: "anfang/s/notify/guards", payload: {text: forced}}
  - id: three-exits
    when: [{event: {type: door_opened, kind: door_lock, count: 3, within: 10m}}]
    then: [{raise_alarm: {kind: busy, severity: low, subject: "{{ device.id }}", message: busy}}]
"""
T0 = 1_800_000_000.0


def rules() -> list[Rule]:
    result = load_rule_docs(load_marked(RULES, "t.yaml"), "t.yaml", SITE)
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    return result.rules


def stored(etype: str, eid: str, received: float) -> DeviceEvent:
    return DeviceEvent("s", "door-1", "door_lock", etype, eid, received - 0.05, {}, received)


def crash_copy(store: InMemoryTimerStore) -> InMemoryTimerStore:
    """What the registry held at the last flush (the copy is taken right after a tick)."""
    copy = InMemoryTimerStore()
    copy.timers = dict(store.timers)
    return copy


async def test_a_replayed_event_neither_bumps_its_alarm_nor_notifies_again() -> None:
    alarms, timers = InMemoryAlarmStore(), InMemoryTimerStore()
    first = RulesEngine(rules(), SITE, alarm_store=alarms, timer_store=timers)
    acts = RecordingActions(clock=T0)
    await first.tick(T0, acts)
    await first.on_event(stored("door_opened", "o1", T0 + 0.1), acts)
    await first.tick(T0 + 0.2, acts)
    flushed = crash_copy(timers)  # the mark covers o1
    acts.clock = T0 + 0.5
    await first.on_event(stored("door_opened", "o2", T0 + 0.4), acts)
    await first.on_event(stored("door_forced", "f1", T0 + 0.45), acts)  # fires: alarm and notification
    assert [p[1] for p in acts.published if p[0].endswith("/notify/guards")] == [{"text": "forced"}]
    # SIGKILL before the next tick; the restarted engine gets the events after the mark from the registry
    second = RulesEngine(rules(), SITE, alarm_store=alarms, timer_store=flushed)
    again = RecordingActions(clock=T0 + 5)
    second.start(again.now())
    assert second.input_mark.covers(T0 + 0.1, "door-1", "o1")
    assert not second.input_mark.covers(T0 + 0.4, "door-1", "o2")
    fed = await second.catch_up([stored("door_opened", "o2", T0 + 0.4), stored("door_forced", "f1", T0 + 0.45)], again)
    assert fed == 2
    forced = [a for a in await alarms.list() if a.rule_id == "forced"]
    assert [(a.count, a.raised_at) for a in forced] == [(1, T0 + 0.5)], "the replay bumped the alarm"
    assert not again.published, "the replayed firing notified again"
    # the same events arriving live afterwards are skipped; the count window holds o1 and o2: a third fires
    await second.on_event(stored("door_forced", "f1", T0 + 0.45), again)
    await second.on_event(stored("door_opened", "o3", T0 + 6), again)
    assert [a.rule_id for a in await alarms.list()].count("three-exits") == 1
    assert [a.count for a in await alarms.list() if a.rule_id == "forced"] == [1]


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=12), st.data())
def test_the_mark_covers_exactly_the_events_processed(batches: list[int], data: st.DataObject) -> None:
    """Batches share their ``received_at``; whatever prefix was processed, the mark leaves the rest."""
    events = [(float(b), f"e{b}-{i}") for b, size in enumerate(batches) for i in range(size)]
    done = data.draw(st.integers(min_value=0, max_value=len(events)))
    mark = InputMark()
    for received, eid in events[:done]:
        mark.advance(DeviceEvent("s", "d", "k", "t", eid, received, {}, received))
    mark = InputMark.decode(mark.encode())  # through the registry's JSON
    assert [e for e in events if not mark.covers(e[0], "d", e[1])] == (events[done:] if done else events)
    assert mark.at is not None or done == 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def conn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseDBAsyncClient]:
    if request.param == "sqlite":
        async with open_database(f"sqlite://{tmp_path / 'registry.db'}", MODELS) as db:
            yield db
        return
    async with fresh_postgres_database("anfang_catchup") as url, open_database(url, MODELS) as db:
        yield db


async def test_the_events_after_the_mark_come_in_the_order_they_were_stored(conn: BaseDBAsyncClient) -> None:
    postgres = conn.capabilities.dialect == "postgres"
    sql = "INSERT INTO sites(id, name, created_at) VALUES ('s', 's', 0)"
    await conn.execute_query(sql)
    for dev, site in (("door-1", "s"), ("door-x", "s")):
        await conn.execute_query(
            "INSERT INTO devices(id, site_id, kind, name, created_at, updated_at) "
            f"VALUES ('{dev}', '{site}', 'door_lock', '{dev}', 0, 0)"
        )
    store = TwinStore(conn, postgres=postgres)
    batches = [
        [("door-1", "a", T0 + 0.9)],
        [("door-1", "b", T0 + 1.2), ("door-x", "c", T0 + 1.1)],
        [("door-1", "d", None)],
    ]
    for i, batch in enumerate(batches):
        received = T0 + 1 + i
        await store.commit([], [StoredEvent(dev, eid, "door_opened", ts, received, {"n": i}) for dev, eid, ts in batch])
    mark = InputMark()
    assert await events_after(conn, "s", mark, T0 + 10) == []  # no mark yet: the engine starts from now
    mark = InputMark(T0 + 2, {("door-x", "c")})  # c of the second batch was processed, b not
    found = await events_after(conn, "s", mark, T0 + 10)
    assert [(e.device_id, e.id, e.received_at) for e in found] == [("door-1", "b", T0 + 2), ("door-1", "d", T0 + 3)]
    assert found[0].ts == T0 + 1.2 and found[0].data == {"n": 1} and found[1].ts == T0 + 3  # no device time
    assert await events_after(conn, "s", mark, T0 + 2.5) == found[:1]
