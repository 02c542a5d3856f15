"""``device_events`` partitions on PostgreSQL: one per UTC day, made ahead, dropped whole by retention.

Migration ``0090`` partitions the table by ``received_at`` (epoch seconds; day ``d`` covers
``[d * 86400, (d + 1) * 86400)``, named ``device_events_YYYYMMDD``) with a default partition for rows
no day covers yet. The platform makes the coming :data:`AHEAD_DAYS` days' partitions at start and
every :data:`EVERY_S` (:func:`keep_ahead`); the retention purge drops the partitions whose whole day
is older than the retention (:func:`drop_before`). On SQLite the table is not partitioned and these
are no-ops (the purge deletes rows there).

The day arithmetic is pure (:func:`day_of`, :func:`partition_name`, :func:`expired`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
from collections.abc import Awaitable, Callable, Iterable

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.sql import DB_ERRORS

__all__ = [
    "AHEAD_DAYS",
    "DAY",
    "DEDUP_DAYS",
    "EVERY_S",
    "add_ahead",
    "day_of",
    "drop_before",
    "expired",
    "keep_ahead",
    "partition_name",
    "partitions",
]

log = logging.getLogger(__name__)

DAY = 86400
AHEAD_DAYS = 7  # a week of partitions ahead: a platform stopped for less than that never fills the default one
EVERY_S = 3600.0
#: How far back (days) a stored event id is looked for on PostgreSQL: the partitioned table's key includes
#: the day, so the look-up names the days it searches (a redelivery comes after an outage, not a week on).
DEDUP_DAYS = 7
_EPOCH = dt.date(1970, 1, 1)
_NAME = re.compile(r"^device_events_(\d{8})$")


def day_of(ts: float) -> int:
    """The UTC day (days since 1970-01-01) of an epoch time."""
    return int(ts // DAY)


def partition_name(day: int) -> str:
    """The name of a day's partition, ``device_events_YYYYMMDD``."""
    return f"device_events_{_EPOCH + dt.timedelta(days=day):%Y%m%d}"


def _day_of_name(name: str) -> int | None:
    match = _NAME.match(name)
    if match is None:
        return None
    return (dt.datetime.strptime(match.group(1), "%Y%m%d").date() - _EPOCH).days


def expired(names: Iterable[str], before: float) -> list[str]:
    """The day partitions among ``names`` whose whole day ends at or before ``before`` (oldest first);
    other names (the default partition) are never expired."""
    days = [(d, n) for n in names if (d := _day_of_name(n)) is not None and (d + 1) * DAY <= before]
    return [n for _, n in sorted(days)]


def _is_pg(conn: BaseDBAsyncClient) -> bool:
    return conn.capabilities.dialect == "postgres"


async def partitions(conn: BaseDBAsyncClient) -> list[str]:
    """The names of ``device_events``' partitions (the default one included); none on SQLite."""
    if not _is_pg(conn):
        return []
    rows = await conn.execute_query_dict(
        "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'device_events'::regclass ORDER BY c.relname"
    )
    return [str(r["name"]) for r in rows]


async def add_ahead(conn: BaseDBAsyncClient, now: float, ahead: int = AHEAD_DAYS) -> int:
    """Make the partitions of today and the ``ahead`` days after it that are missing; returns how many."""
    if not _is_pg(conn):
        return 0
    today = day_of(now)
    rows = await conn.execute_query_dict("SELECT device_events_add_partitions($1, $2) AS made", [today, today + ahead])
    return int(rows[0]["made"])


async def drop_before(tx: BaseDBAsyncClient, before: float) -> int:
    """Drop the day partitions older than ``before`` and delete the default partition's rows older than it
    (in the caller's transaction); returns the partitions dropped. No-op on SQLite."""
    if not _is_pg(tx):
        return 0
    old = expired(await partitions(tx), before)
    for name in old:
        await tx.execute_script(f'DROP TABLE "{name}"')  # a name of our own pattern, checked by expired()
    await tx.execute_query("DELETE FROM device_events_default WHERE received_at < $1", [before])
    return len(old)


async def keep_ahead(
    add: Callable[[float], Awaitable[int]], clock: Callable[[], float], every: float = EVERY_S
) -> None:
    """Make the coming days' partitions now and every ``every`` seconds, until cancelled. A failure is
    logged and retried at the next turn (rows meanwhile land in the default partition)."""
    while True:
        try:
            made = await add(clock())
            if made:
                log.info("made %d device_events partition(s) ahead", made)
        except DB_ERRORS:
            log.exception("device_events partitions not made ahead; retrying in %.0f s", every)
        await asyncio.sleep(every)
