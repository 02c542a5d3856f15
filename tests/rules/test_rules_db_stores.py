"""Rule timers and alarms in the registry database, on SQLite and on PostgreSQL (127.0.0.1:5432).

A worker that takes over a site opens the stores again on the same database: it must find the timers
and alarms where the previous worker left them, and only its own site's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from process_kit import fresh_postgres_database
from tortoise.backends.base.client import BaseDBAsyncClient

from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import Alarm, AlarmStoreError
from registry.db import open_database
from rules.db_timers import DatabaseTimerStore
from rules.engine import RulesEngine
from rules.loader import Rule, load_rule_docs
from rules.recording import RecordingActions
from rules.site import SitePlan, load_site_plan
from rules.timers import Timer, TimerStoreError
from rules.yamlmarks import load_marked
from twins.hooks import TwinChange

SITE_FILE = Path(__file__).parents[2] / "rules" / "builtin" / "tests" / "site.yaml"
T0 = datetime.fromisoformat("2026-11-02T10:00:00+08:00").timestamp()

HELD = """
rules:
  - id: held
    when: [{twin: {kind: door_lock, field: door, to: open}}]
    for: 3m
    then: [{raise_alarm: {kind: held, subject: "{{ device.id }}", message: "门开着"}}]
"""


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def conn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseDBAsyncClient]:
    if request.param == "sqlite":
        async with open_database(f"sqlite://{tmp_path / 'registry.db'}") as db:
            yield db
        return
    async with fresh_postgres_database("anfang_rules") as url, open_database(url) as db:
        yield db


@pytest.fixture(scope="module")
def site() -> SitePlan:
    return load_site_plan(SITE_FILE)


def held_rules(site: SitePlan, text: str = HELD) -> list[Rule]:
    result = load_rule_docs(load_marked(text, "t.yaml"), "t.yaml", site)
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    return result.rules


def door_opened(ts: float) -> TwinChange:
    prev = {"door": "closed"}
    return TwinChange("testsite", "door-b1-u1", "door_lock", 2, ts, {"door": "open"}, prev, {}, {"door": "open"})


def a_timer(key: str, due: float, **context: Any) -> Timer:
    return Timer(key, "held", "h1", "for", due, "door-b1-u1", context={"idx": 0, **context})


async def rename(conn: BaseDBAsyncClient, old: str, new: str) -> None:
    await conn.execute_script(f"ALTER TABLE {old} RENAME TO {new}")


# --- timers ---------------------------------------------------------------------------------------


async def test_timers_round_trip_per_site(conn: BaseDBAsyncClient) -> None:
    store = await DatabaseTimerStore.open(conn, "youzheng")
    assert store.load() == []
    kept = a_timer("for|held|door-b1-u1", T0 + 180, names={"subject_id": "门-1", "device": {"x": 1.5}})
    store.save(kept)
    store.save(a_timer("for|held|door-b2-u1", T0 + 200))
    store.save(Timer("silence|quiet|0|cam-1", "quiet", "q1", "silence", T0 + 60, "cam-1", state="fired"))
    store.delete("for|held|door-b2-u1")
    store.delete("never-saved")
    await store.flush()
    other = await DatabaseTimerStore.open(conn, "another-site")
    other.save(a_timer("for|held|door-b1-u1", T0 + 1))
    await other.flush()

    again = await DatabaseTimerStore.open(conn, "youzheng")
    loaded = {t.key: t for t in again.load()}
    assert sorted(loaded) == ["for|held|door-b1-u1", "silence|quiet|0|cam-1"]
    assert loaded["for|held|door-b1-u1"] == kept
    assert loaded["silence|quiet|0|cam-1"].state == "fired"
    rows = await conn.execute_query_dict("SELECT site, key, due FROM rule_timers ORDER BY site, key")
    assert [(r["site"], r["key"], r["due"]) for r in rows] == [
        ("another-site", "for|held|door-b1-u1", T0 + 1),
        ("youzheng", "for|held|door-b1-u1", T0 + 180),
        ("youzheng", "silence|quiet|0|cam-1", T0 + 60),
    ]
    again.delete("for|held|door-b1-u1")
    await again.flush()
    assert [t.key for t in (await DatabaseTimerStore.open(conn, "youzheng")).load()] == ["silence|quiet|0|cam-1"]


async def test_the_store_keeps_its_own_copy_of_a_saved_timer(conn: BaseDBAsyncClient) -> None:
    store = await DatabaseTimerStore.open(conn, "youzheng")
    timer = a_timer("k", T0 + 10)
    store.save(timer)
    timer.due, timer.state = T0 + 99, "fired"  # the engine changes timers in place and saves them again
    await store.flush()
    (stored,) = (await DatabaseTimerStore.open(conn, "youzheng")).load()
    assert (stored.due, stored.state) == (T0 + 10, "armed")


async def test_a_store_that_was_not_read_refuses_to_load(conn: BaseDBAsyncClient) -> None:
    with pytest.raises(TimerStoreError, match="not read yet"):
        DatabaseTimerStore(conn, "youzheng").load()


async def test_a_failed_flush_keeps_the_changes_for_the_next_one(conn: BaseDBAsyncClient) -> None:
    store = await DatabaseTimerStore.open(conn, "youzheng")
    store.save(a_timer("k1", T0 + 10))
    await rename(conn, "rule_timers", "rule_timers_away")
    with pytest.raises(TimerStoreError) as err:
        await store.flush()
    assert "rule_timers" in err.value.path
    await rename(conn, "rule_timers_away", "rule_timers")
    store.save(a_timer("k2", T0 + 20))
    await store.flush()
    assert sorted(t.key for t in (await DatabaseTimerStore.open(conn, "youzheng")).load()) == ["k1", "k2"]


async def test_the_engine_retries_a_failed_timer_flush_at_the_next_tick(
    conn: BaseDBAsyncClient, site: SitePlan, caplog: pytest.LogCaptureFixture
) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(held_rules(site), site, actions=acts, timer_store=await DatabaseTimerStore.open(conn, "s"))
    await engine.on_twin_change(door_opened(T0), acts)
    await rename(conn, "rule_timers", "rule_timers_away")
    with caplog.at_level(logging.ERROR, logger="rules.engine"):
        await engine.tick(T0 + 1, acts)
    assert "rule timers not saved" in caplog.text
    await rename(conn, "rule_timers_away", "rule_timers")
    await engine.tick(T0 + 2, acts)
    assert [t.kind for t in (await DatabaseTimerStore.open(conn, "s")).load()] == ["for"]


# --- alarms ---------------------------------------------------------------------------------------


def an_alarm(
    alarm_id: str, raised_at: float, *, rule_id: str = "held", subject: str = "door-b1-u1", state: str = "raised"
) -> Alarm:
    return Alarm(
        alarm_id,
        "youzheng",
        rule_id,
        subject,
        "held",
        "major",
        "门开着",
        state,
        raised_at,
        raised_at,
        data={"door": "1栋"},
    )


async def test_alarms_round_trip_per_site(conn: BaseDBAsyncClient) -> None:
    store = DatabaseAlarmStore(conn, "youzheng")
    first = an_alarm("a1", T0)
    await store.put(first)
    await store.put(an_alarm("a2", T0 + 1, subject="door-b2-u1", state="cleared"))
    await store.put(an_alarm("a3", T0 + 2, subject="door-b3-u1"))
    await DatabaseAlarmStore(conn, "another-site").put(an_alarm("a9", T0 + 3))

    again = DatabaseAlarmStore(conn, "youzheng")  # a worker taking over
    assert await again.get("a1") == first
    assert await again.get("a9") is None
    assert [a.id for a in await again.list()] == ["a1", "a2", "a3"]
    assert [a.id for a in await again.list(active_only=True)] == ["a1", "a3"]
    assert [a.id for a in await again.list(limit=2)] == ["a2", "a3"]
    assert await again.find_active("held", "door-b2-u1") is None
    found = await again.find_active("held", "door-b1-u1")
    assert found is not None and found.data == {"door": "1栋"}


async def test_an_acknowledgement_and_a_count_are_seen_by_the_next_worker(
    conn: BaseDBAsyncClient, site: SitePlan
) -> None:
    forced = """
rules:
  - id: forced
    when: [{event: {type: door_forced, kind: door_lock}}]
    then: [{raise_alarm: {kind: door_forced, severity: critical}}]
"""
    acts = RecordingActions(clock=T0)
    a = RulesEngine(held_rules(site, forced), site, actions=acts, alarm_store=DatabaseAlarmStore(conn, "youzheng"))
    alarm, created = await a.alarms.raise_alarm(
        acts, rule_id="forced", subject="door-b1-u1", kind="door_forced", severity="critical", message="", now=T0
    )
    assert created
    await a.acknowledge(alarm.id, "guard-li")

    acts.clock = T0 + 60
    b = RulesEngine(held_rules(site, forced), site, actions=acts, alarm_store=DatabaseAlarmStore(conn, "youzheng"))
    seen = await b.alarms.store.get(alarm.id)
    assert seen is not None and (seen.state, seen.acked_by, seen.acked_at) == ("acknowledged", "guard-li", T0)
    again, created = await b.alarms.raise_alarm(
        acts, rule_id="forced", subject="door-b1-u1", kind="door_forced", severity="critical", message="", now=T0 + 60
    )
    assert not created and again.id == alarm.id and again.count == 2 and again.state == "acknowledged"
    cleared = await b.clear_alarm(alarm.id, "guard-wang")
    assert cleared.state == "cleared"
    assert await DatabaseAlarmStore(conn, "youzheng").list(active_only=True) == []


async def test_an_alarm_that_cannot_be_stored_is_recorded_on_the_firing_and_the_rule_stays_enabled(
    conn: BaseDBAsyncClient, site: SitePlan
) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(held_rules(site), site, actions=acts, alarm_store=DatabaseAlarmStore(conn, "youzheng"))
    await engine.on_twin_change(door_opened(T0), acts)
    await rename(conn, "alarms", "alarms_away")
    try:
        with pytest.raises(AlarmStoreError):
            await engine.alarms.store.list()
        await engine.tick(T0 + 180, acts)
    finally:
        await rename(conn, "alarms_away", "alarms")
    assert engine.faults == {}
    fired = engine.explain("held")[-1]
    assert fired.outcome == "fired" and "raise_alarm" in fired.detail


# --- takeover: two engines ("workers") on one database -------------------------------------------


async def test_a_for_timer_armed_by_one_engine_fires_in_the_engine_that_takes_over(
    conn: BaseDBAsyncClient, site: SitePlan
) -> None:
    acts_a = RecordingActions(clock=T0)
    a = RulesEngine(
        held_rules(site),
        site,
        actions=acts_a,
        alarm_store=DatabaseAlarmStore(conn, "youzheng"),
        timer_store=await DatabaseTimerStore.open(conn, "youzheng"),
    )
    await a.on_twin_change(door_opened(T0), acts_a)
    await a.tick(T0 + 1, acts_a)  # the tick writes the pending timer; then worker A dies

    # worker B takes over 10 minutes later: the timer is overdue and fires at its first tick
    acts_b = RecordingActions(clock=T0 + 600)
    b = RulesEngine(
        held_rules(site),
        site,
        actions=acts_b,
        alarm_store=DatabaseAlarmStore(conn, "youzheng"),
        timer_store=await DatabaseTimerStore.open(conn, "youzheng"),
    )
    await b.tick(T0 + 600, acts_b)
    active = await DatabaseAlarmStore(conn, "youzheng").find_active("held", "door-b1-u1")
    assert active is not None and active.raised_at == T0 + 600 and active.message == "门开着"
    assert [topic for topic, _, _ in acts_b.published] == [f"anfang/testsite/alarms/{active.id}"]
    assert acts_a.published == []
    # the fired timer stays only as "done" (never due again) while the door is open: a restart does not
    # re-derive it from the stored twin and fire it twice
    assert [(t.kind, t.state) for t in (await DatabaseTimerStore.open(conn, "youzheng")).load()] == [("for", "done")]


async def test_a_timer_not_yet_due_at_takeover_fires_at_its_due_time(conn: BaseDBAsyncClient, site: SitePlan) -> None:
    acts_a = RecordingActions(clock=T0)
    a = RulesEngine(held_rules(site), site, actions=acts_a, timer_store=await DatabaseTimerStore.open(conn, "y"))
    await a.on_twin_change(door_opened(T0), acts_a)
    await a.tick(T0 + 1, acts_a)

    acts_b = RecordingActions(clock=T0 + 60)
    alarms = DatabaseAlarmStore(conn, "y")
    b = RulesEngine(
        held_rules(site), site, actions=acts_b, alarm_store=alarms, timer_store=await DatabaseTimerStore.open(conn, "y")
    )
    await b.tick(T0 + 60, acts_b)
    assert await alarms.list() == [] and b.next_due() == T0 + 180
    acts_b.clock = T0 + 180
    await b.tick(T0 + 180, acts_b)
    active = await alarms.find_active("held", "door-b1-u1")
    assert active is not None and active.raised_at == T0 + 180


async def test_timers_of_a_rule_changed_before_takeover_are_dropped_from_the_database(
    conn: BaseDBAsyncClient, site: SitePlan
) -> None:
    acts = RecordingActions(clock=T0)
    a = RulesEngine(held_rules(site), site, actions=acts, timer_store=await DatabaseTimerStore.open(conn, "y"))
    await a.on_twin_change(door_opened(T0), acts)
    await a.tick(T0 + 1, acts)
    changed = held_rules(site, HELD.replace("for: 3m", "for: 5m"))
    b = RulesEngine(changed, site, actions=acts, timer_store=await DatabaseTimerStore.open(conn, "y"))
    await b.tick(T0 + 600, acts)
    assert await b.alarms.store.list() == []
    assert (await DatabaseTimerStore.open(conn, "y")).load() == []
