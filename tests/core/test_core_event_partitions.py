"""device_events partitioned by day on PostgreSQL (issue 21 item 3): the migration moves stored events into
day partitions, the platform makes the coming days' partitions ahead, retention drops whole days, and an
event id is still stored once although the table's key now includes the day."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from process_kit import fresh_postgres_database

from anfang.app import MODELS
from privacy.purge import RetentionPolicy, purge
from registry import event_partitions as ep
from registry.db import open_database
from registry.migrate import MIGRATIONS_DIR, apply_migrations
from registry.records import StoredEvent
from registry.store import TwinStore

DAY = ep.DAY
SITE = "youzheng"


@given(st.integers(min_value=0, max_value=40_000), st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_a_day_partition_expires_only_when_its_whole_day_is_older(day: int, before: float) -> None:
    name = ep.partition_name(day)
    assert ep.day_of(day * DAY) == day and ep.day_of((day + 1) * DAY - 0.001) == day
    assert (ep.expired([name, "device_events_default"], before) == [name]) == ((day + 1) * DAY <= before)


def test_expired_partitions_come_oldest_first() -> None:
    names = [ep.partition_name(d) for d in (20_003, 20_001, 20_002)]
    assert ep.expired(names, 20_003 * DAY) == [ep.partition_name(20_001), ep.partition_name(20_002)]


async def _pg_rows(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_the_migration_moves_stored_events_into_day_partitions(tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0090":
            shutil.copy(path, before / path.name)
    now = time.time()
    async with fresh_postgres_database("anfang_parts") as url:
        await apply_migrations(url, before)
        for i, age in enumerate([40, 3, 0]):
            await _pg_rows(
                url,
                "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) "
                "VALUES ('door-1', $1, 'door_forced', $2, $2, '{}')",
                f"e{i}",
                now - age * DAY,
            )
        assert "0090_device_events_partitions" in await apply_migrations(url)
        rows = await _pg_rows(url, "SELECT tableoid::regclass::text AS part, event_id FROM device_events")
        where = {r["event_id"]: r["part"] for r in rows}
        assert where == {f"e{i}": ep.partition_name(ep.day_of(now - age * DAY)) for i, age in enumerate([40, 3, 0])}
        parts = {r["relname"] for r in await _pg_rows(url, "SELECT relname FROM pg_class WHERE relkind = 'r'")}
        today = ep.day_of(now)
        assert {ep.partition_name(d) for d in range(today, today + ep.AHEAD_DAYS + 1)} <= parts
        assert "device_events_unpartitioned" not in parts


@pytest.mark.postgres
async def test_partitions_ahead_retention_drops_days_and_events_stay_exactly_once() -> None:
    async with fresh_postgres_database("anfang_parts") as url, open_database(url, MODELS) as conn:
        store = TwinStore(conn, postgres=True)
        now = time.time()
        await conn.execute_query("INSERT INTO sites(id, name, created_at) VALUES ($1, $1, 0)", [SITE])
        await conn.execute_query(
            "INSERT INTO devices(id, site_id, kind, name, created_at, updated_at) VALUES ('door-1', $1, "
            "'door_lock', 'door-1', 0, 0)",
            [SITE],
        )
        # a day beyond the partitions made ahead lands in the default partition, and moves out when its
        # day's partition is made
        far = now + (ep.AHEAD_DAYS + 3) * DAY
        await store.commit([], [StoredEvent("door-1", "far", "door_forced", far, far, {})])
        assert [r["part"] for r in await _part_of(url, "far")] == ["device_events_default"]
        assert await ep.add_ahead(conn, far, ahead=0) == 1
        assert [r["part"] for r in await _part_of(url, "far")] == [ep.partition_name(ep.day_of(far))]

        # the same event id redelivered on a later day: found by the look-up, so not stored twice
        first = now - 2 * DAY
        assert await store.add_event_partitions(first) >= 1
        await store.commit([], [StoredEvent("door-1", "e1", "door_forced", first, first, {})])
        assert await store.seen_events([("door-1", "e1"), ("door-1", "e2")]) == {("door-1", "e1")}
        # a repeat in one commit with the same receipt time is refused by the key itself
        twice = StoredEvent("door-1", "e3", "door_forced", now, now, {})
        await store.commit([], [twice, twice])
        assert len(await _part_of(url, "e3")) == 1

        old = now - 400 * DAY
        await ep.add_ahead(conn, old, ahead=1)
        await store.commit([], [StoredEvent("door-1", "old", "door_forced", old, old, {})])
        old_parts = {ep.partition_name(ep.day_of(old)), ep.partition_name(ep.day_of(old) + 1)}
        assert old_parts <= set(await ep.partitions(conn))

        dry = await purge(conn, SITE, RetentionPolicy(), now, dry_run=True)
        assert dry.removed["event_partitions"] == 2
        assert old_parts <= set(await ep.partitions(conn)), "a dry run drops nothing"
        report = await purge(conn, SITE, RetentionPolicy(), now)
        assert report.removed["event_partitions"] == 2
        left = set(await ep.partitions(conn))
        assert not old_parts & left and ep.partition_name(ep.day_of(first)) in left
        stored = {r["event_id"] for r in await _pg_rows(url, "SELECT event_id FROM device_events")}
        assert stored == {"far", "e1", "e3"}


async def _part_of(url: str, event_id: str) -> list[asyncpg.Record]:
    return await _pg_rows(
        url, "SELECT tableoid::regclass::text AS part FROM device_events WHERE event_id = $1", event_id
    )


async def test_sqlite_retention_deletes_the_sites_old_events(tmp_path: Path) -> None:
    now = time.time()
    async with open_database(f"sqlite://{tmp_path / 'anfang.db'}", MODELS) as conn:
        store = TwinStore(conn, postgres=False)
        await conn.execute_query("INSERT INTO sites(id, name, created_at) VALUES (?, ?, 0)", [SITE, SITE])
        await conn.execute_query(
            "INSERT INTO devices(id, site_id, kind, name, created_at, updated_at) VALUES ('door-1', ?, "
            "'door_lock', 'door-1', 0, 0)",
            [SITE],
        )
        assert await store.add_event_partitions(now) == 0
        events = [
            StoredEvent("door-1", f"e{age}", "door_forced", now - age * DAY, now - age * DAY, {}) for age in (400, 1)
        ]
        await store.commit([], events)
        report = await purge(conn, SITE, RetentionPolicy(), now)
        assert report.removed["events"] == 1
        assert await store.seen_events([("door-1", "e400"), ("door-1", "e1")]) == {("door-1", "e1")}
