"""One PostgreSQL statement for a group commit: twins, their history, events and feed rows as column arrays.

asyncpg's ``executemany`` sends a row at a time (bind, execute) and the server runs the statement once
per row; a batch of 500 reports then costs 500 executions. Here each table gets one
``INSERT ... SELECT FROM unnest($1::text[], ...)`` and the tables' inserts are data-modifying CTEs of
one statement: one round trip, one execution per table, and atomic without a transaction block (a
single statement is its own transaction). Statement texts depend only on which tables a batch
writes, so the server keeps a prepared statement for each (asyncpg's statement cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from registry.records import FeedRow, StoredEvent
from twins import jsoncodec
from twins.document import TwinDocument
from twins.history import HistoryEntry

__all__ = ["batch_statement"]

_TWINS = (
    "INSERT INTO twins(device_id, version, doc, updated_at) "
    "SELECT * FROM unnest(${0}::text[], ${1}::bigint[], ${2}::text[], ${3}::float8[]) "
    "ON CONFLICT(device_id) DO UPDATE SET version = excluded.version, doc = excluded.doc, "
    "updated_at = excluded.updated_at WHERE twins.version <= excluded.version"
)
_HISTORY = (  # a version is written once: a worker that re-commits it (a takeover) adds nothing
    "INSERT INTO twin_history(device_id, version, ts, source, actor, changed) "
    "SELECT * FROM unnest(${0}::text[], ${1}::bigint[], ${2}::float8[], ${3}::text[], ${4}::text[], ${5}::text[]) "
    "ON CONFLICT DO NOTHING"
)
_EVENTS = (
    "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) "
    "SELECT * FROM unnest(${0}::text[], ${1}::text[], ${2}::text[], ${3}::float8[], ${4}::float8[], ${5}::text[]) "
    "ON CONFLICT DO NOTHING"
)
_FEED = (
    "INSERT INTO twin_feed(site, part, target, seq, body) "
    "SELECT * FROM unnest(${0}::text[], ${1}::int[], ${2}::int[], ${3}::bigint[], ${4}::text[])"
)


def _twin_columns(twins: Iterable[TwinDocument], now: float) -> list[list[Any]]:
    # one row per device: ON CONFLICT DO UPDATE may not touch a row twice in one statement, so the
    # newest document of a device wins here, as the version guard would have it row by row
    newest: dict[str, TwinDocument] = {}
    for doc in twins:
        held = newest.get(doc.device_id)
        if held is None or doc.version >= held.version:
            newest[doc.device_id] = doc
    docs = newest.values()
    return [
        [d.device_id for d in docs],
        [d.version for d in docs],
        [jsoncodec.dumps(d.to_json()) for d in docs],
        [now] * len(docs),
    ]


def _event_columns(events: Sequence[StoredEvent]) -> list[list[Any]]:
    return [
        [e.device_id for e in events],
        [e.event_id for e in events],
        [e.type for e in events],
        [e.ts for e in events],
        [e.received_at for e in events],
        [jsoncodec.dumps(e.data) for e in events],
    ]


def _history_columns(history: Sequence[HistoryEntry]) -> list[list[Any]]:
    return [
        [h.device_id for h in history],
        [h.version for h in history],
        [float(h.ts) for h in history],
        [h.source for h in history],
        [h.actor for h in history],
        [jsoncodec.dumps(h.changed) for h in history],
    ]


def _feed_columns(feed: Sequence[FeedRow]) -> list[list[Any]]:
    return [[r[i] for r in feed] for i in range(5)]


def batch_statement(
    twins: Iterable[TwinDocument],
    events: Sequence[StoredEvent],
    feed: Sequence[FeedRow],
    now: float,
    history: Sequence[HistoryEntry] = (),
) -> tuple[str, list[Any]] | None:
    """The statement and its parameters (one array per column) writing a batch, or ``None`` when there
    is nothing to write. Twins keep the stale guard: a row is only replaced by the same or a newer version."""
    parts: list[tuple[str, list[list[Any]]]] = []
    twin_columns = _twin_columns(twins, now)
    if twin_columns[0]:
        parts.append((_TWINS, twin_columns))
    if history:
        parts.append((_HISTORY, _history_columns(history)))
    if events:
        parts.append((_EVENTS, _event_columns(events)))
    if feed:
        parts.append((_FEED, _feed_columns(feed)))
    if not parts:
        return None
    params: list[Any] = []
    sqls: list[str] = []
    for template, columns in parts:
        sqls.append(template.format(*range(len(params) + 1, len(params) + 1 + len(columns))))
        params.extend(columns)
    if len(sqls) == 1:
        return sqls[0], params
    ctes = ", ".join(f"w{i} AS ({sql})" for i, sql in enumerate(sqls[:-1]))
    return f"WITH {ctes} {sqls[-1]}", params
