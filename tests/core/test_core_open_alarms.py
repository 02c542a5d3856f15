"""Open alarms known in memory (registry.alarms.OpenAlarms): no query to learn that nothing is open, and
still correct when another process (its own connection) acknowledges, clears or raises the same alarm.

"Another process" is a raw connection of its own (asyncpg or sqlite3) writing the row as the HTTP API
of another worker would, or a second manager with its own index on the same database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import Alarm, AlarmManager
from registry.db import open_database
from rules.recording import RecordingActions

T0 = 1_800_000_000.0
SITE = "youzheng"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[DatabaseAlarmStore]:
    async with open_database(db_url) as conn:
        yield DatabaseAlarmStore(conn, SITE)


def manager(store: DatabaseAlarmStore, clock: Clock | None = None) -> AlarmManager:
    alarms = AlarmManager(SITE, store)
    if clock is not None:
        alarms.open._clock = clock
    return alarms


async def write_elsewhere(db_url: str, alarm: Alarm) -> None:
    """Store ``alarm`` as another process would (its own connection, no index of ours)."""
    doc = json.dumps(alarm.to_json())
    sql = "UPDATE alarms SET state = {0}, updated_at = {1}, doc = {2} WHERE site = {3} AND id = {4}"
    params = [alarm.state, alarm.updated_at, doc, SITE, alarm.id]
    if db_url.startswith("sqlite://"):
        with sqlite3.connect(db_url.removeprefix("sqlite://")) as raw:
            raw.execute(sql.format(*["?"] * 5), params)
        return
    pg = await asyncpg.connect("postgresql://" + db_url.split("://", 1)[1])
    try:
        await pg.execute(sql.format(*[f"${i}" for i in range(1, 6)]), *params)
    finally:
        await pg.close()


async def raise_door(alarms: AlarmManager, acts: RecordingActions, subject: str, now: float) -> tuple[Alarm, bool]:
    return await alarms.raise_alarm(
        acts, rule_id="door-forced", subject=subject, kind="door_forced", severity="high", message="forced", now=now
    )


async def test_a_device_coming_online_with_nothing_open_costs_no_query(store: DatabaseAlarmStore) -> None:
    clock, acts = Clock(), RecordingActions(clock=T0)
    alarms = manager(store, clock)
    raised, created = await raise_door(alarms, acts, "door-1", T0)
    assert created
    reads = alarms.open.reads
    for i in range(50):  # what every status "online" asks the rules: is there an offline alarm to clear?
        assert await alarms.clear_for(acts, "door-forced", f"door-{i + 2}", by="rule", now=T0) is None
    assert alarms.open.reads == reads
    cleared = await alarms.clear_for(acts, "door-forced", "door-1", by="rule", now=T0 + 1)
    assert cleared is not None and cleared.id == raised.id and cleared.state == "cleared"
    assert (await store.get(raised.id)).state == "cleared"  # type: ignore[union-attr]
    clock.t += alarms.open.refresh_s  # the open keys are read again once they are older than that
    assert await alarms.clear_for(acts, "door-forced", "door-1", by="rule", now=T0 + 2) is None
    assert alarms.open.reads == reads + 1


async def test_a_clear_made_by_another_process_is_seen_by_the_next_decision(
    store: DatabaseAlarmStore, db_url: str
) -> None:
    acts = RecordingActions(clock=T0)
    alarms = manager(store, Clock())  # the index is never refreshed: only the conditional writes protect it
    first, _ = await raise_door(alarms, acts, "door-1", T0)
    await write_elsewhere(db_url, replace(first, state="cleared", cleared_by="op", updated_at=T0 + 1))
    # raising again opens a new alarm instead of bumping the cleared one
    second, created = await raise_door(alarms, acts, "door-1", T0 + 2)
    assert created and second.id != first.id and second.count == 1
    # acknowledged elsewhere: the rule's clear still clears it, and keeps who acknowledged
    await write_elsewhere(db_url, replace(second, state="acknowledged", acked_by="op", updated_at=T0 + 3))
    cleared = await alarms.clear_for(acts, "door-forced", "door-1", by="rule", now=T0 + 4)
    assert cleared is not None and cleared.id == second.id and cleared.acked_by == "op"
    # cleared elsewhere: the rule's clear finds nothing to clear (and writes nothing)
    third, _ = await raise_door(alarms, acts, "door-1", T0 + 5)
    await write_elsewhere(db_url, replace(third, state="cleared", cleared_by="op", updated_at=T0 + 6))
    assert await alarms.clear_for(acts, "door-forced", "door-1", by="rule", now=T0 + 7) is None
    assert (await store.get(third.id)).cleared_by == "op"  # type: ignore[union-attr]
    assert [a.id for a in await store.list(active_only=True)] == []


async def test_an_alarm_another_process_raised_is_bumped_not_doubled(store: DatabaseAlarmStore) -> None:
    acts = RecordingActions(clock=T0)
    here, there = manager(store, Clock()), manager(store, Clock())
    assert await here.clear_for(acts, "door-forced", "door-1", by="rule", now=T0) is None  # knows none is open
    theirs, created = await raise_door(there, acts, "door-1", T0 + 1)
    assert created
    ours, created = await raise_door(here, acts, "door-1", T0 + 2)
    assert not created and ours.id == theirs.id and ours.count == 2
    assert [(a.id, a.count) for a in await store.list(active_only=True)] == [(theirs.id, 2)]
    # and an acknowledgement by hand through the other manager is kept by this one's next bump
    await there.acknowledge(None, theirs.id, by="op", now=T0 + 3)
    bumped, _ = await raise_door(here, acts, "door-1", T0 + 4)
    assert bumped.count == 3 and bumped.state == "acknowledged" and bumped.acked_by == "op"


async def test_a_replayed_cause_is_confirmed_from_the_store(store: DatabaseAlarmStore, db_url: str) -> None:
    acts = RecordingActions(clock=T0)
    alarms = manager(store, Clock())
    raised, _ = await alarms.raise_alarm(
        acts, rule_id="r", subject="s", kind="k", severity="low", message="m", now=T0, cause="event:d/1"
    )
    assert (await alarms.raised_by("r|s", "event:d/1")) == raised
    await write_elsewhere(db_url, replace(raised, state="cleared", updated_at=T0 + 1))
    assert await alarms.raised_by("r|s", "event:d/1") is None  # not skipped on a cleared alarm's word
