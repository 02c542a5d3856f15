"""A site's alarms and their outbox in the registry database (tables ``alarms``, ``alarm_outbox``,
``alarm_deliveries``), shared by every process of the site.

Each transition is written with its outbox entry in one transaction, so a transition is delivered
exactly when it is stored. The dispatcher turns an outbox entry into one delivery per matching
webhook (again in one transaction) and retries each delivery until it succeeds or expires.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from registry.alarms import Alarm, AlarmStoreError, OutboxEntry, StoredAlarm, default_dedupe_key
from registry.sql import DB_ERRORS, Sql

__all__ = ["DatabaseAlarmStore", "Delivery"]

_UPSERT = (
    "INSERT INTO alarms(site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, "
    "updated_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(site, id) DO UPDATE SET "
    "rule_id = excluded.rule_id, subject = excluded.subject, dedupe_key = excluded.dedupe_key, "
    "kind = excluded.kind, severity = excluded.severity, state = excluded.state, audience = excluded.audience, "
    "raised_at = excluded.raised_at, updated_at = excluded.updated_at, doc = excluded.doc"
)
_SET = (
    "rule_id = ?, subject = ?, dedupe_key = ?, kind = ?, severity = ?, state = ?, audience = ?, raised_at = ?, "
    "updated_at = ?, doc = ?"
)
_NO_OPEN = "NOT EXISTS (SELECT 1 FROM alarms WHERE site = ? AND dedupe_key = ? AND state <> 'cleared')"
# Conditional writes (AlarmStore.write): a new alarm only if no alarm of its key is open, a transition
# only if the stored document is still the one the decision was made on. On PostgreSQL one statement
# with its outbox entry (one round trip, atomic); on SQLite the write then the entry, in a transaction.
_INSERT_IF_NONE_OPEN = (
    "INSERT INTO alarms(site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, "
    f"updated_at, doc) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {_NO_OPEN} RETURNING id"
)
_UPDATE_IF_UNCHANGED = f"UPDATE alarms SET {_SET} WHERE site = ? AND id = ? AND doc = ? RETURNING id"
# A transition a worker makes (a rule's or access control's) commits without waiting for its WAL flush:
# each one waited ~4.5 ms for the disk (10x the query), and a thousand devices reconnecting at once
# make a thousand of them in a row on the rules' one queue. It is still atomic, and durable as soon
# as any later commit of the server is (WAL is flushed in order: the ingest's next batch, the rule
# engine's tick that writes its input mark); only a crash of the PostgreSQL server itself within
# wal_writer_delay (200 ms) can lose it, and the input it came from is then replayed (rules.catch_up).
# A transition made by a person (the HTTP API, the CLI) waits for the flush as before.
_COMMIT_MODE = ", set_config('synchronous_commit', CASE WHEN ${}::boolean THEN 'on' ELSE 'off' END, true)"
_PG_INSERT_IF_NONE_OPEN = (
    "WITH w AS (INSERT INTO alarms(site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, "
    "raised_at, updated_at, doc) SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, "
    "$8::text, $9::text, $10::float8, $11::float8, $12::text WHERE NOT EXISTS (SELECT 1 FROM alarms "
    "WHERE site = $1 AND dedupe_key = $5 AND state <> 'cleared') RETURNING id), "
    "o AS (INSERT INTO alarm_outbox(id, site, alarm_id, event, publish, created_at) "
    "SELECT $13::text, $1, id, $14::text, $15::integer, $11 FROM w) SELECT count(*) AS n FROM w"
    + _COMMIT_MODE.format(16)
)
_PG_UPDATE_IF_UNCHANGED = (
    "WITH w AS (UPDATE alarms SET rule_id = $3::text, subject = $4::text, dedupe_key = $5::text, kind = $6::text, "
    "severity = $7::text, state = $8::text, audience = $9::text, raised_at = $10::float8, "
    "updated_at = $11::float8, doc = $12::text WHERE site = $1::text AND id = $2::text AND doc = $16::text "
    "RETURNING id), "
    "o AS (INSERT INTO alarm_outbox(id, site, alarm_id, event, publish, created_at) "
    "SELECT $13::text, $1, id, $14::text, $15::integer, $11 FROM w) SELECT count(*) AS n FROM w"
    + _COMMIT_MODE.format(17)
)
_OUTBOX = "INSERT INTO alarm_outbox(id, site, alarm_id, event, publish, created_at) VALUES (?, ?, ?, ?, ?, ?)"
_DELIVERY = (
    "INSERT INTO alarm_deliveries(id, site, alarm_id, event, target, attempts, next_at, created_at) "
    "VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One transition of one alarm to one webhook, until it is delivered or given up."""

    id: str
    alarm_id: str
    event: str
    target: str
    attempts: int
    created_at: float


def _doc(alarm: Alarm) -> str:
    return json.dumps(alarm.to_json(), ensure_ascii=False, default=str)


class DatabaseAlarmStore:
    """A site's alarms, their outbox and webhook deliveries."""

    def __init__(self, conn: BaseDBAsyncClient, site: str) -> None:
        self._sql = Sql(conn)
        self.site = site

    def _error(self, doing: str, exc: BaseException) -> AlarmStoreError:
        return AlarmStoreError(f"alarms of site {self.site}", f"cannot {doing}: {exc}")

    # --- alarms ------------------------------------------------------------------------------------
    async def put(self, alarm: Alarm, event: str = "raised", *, publish: bool = False) -> None:
        row = self._row(alarm, _doc(alarm))
        entry = [uuid.uuid4().hex, self.site, alarm.id, event, 1 if publish else 0, alarm.updated_at]
        try:
            await self._sql.batch([(_UPSERT, [row]), (_OUTBOX, [entry])])
        except DB_ERRORS as exc:
            raise self._error(f"store alarm {alarm.id}", exc) from exc

    async def write(
        self, alarm: Alarm, event: str, *, publish: bool, previous: StoredAlarm | None, durable: bool = True
    ) -> StoredAlarm | None:
        """Store ``alarm`` and its outbox entry only if the decision still holds: with ``previous`` None,
        if no alarm of its dedupe key is open; else if the stored alarm is still ``previous`` (same
        document). Returns what was stored, or ``None`` when another process got there first.

        ``durable=False`` (a worker's own transition): on PostgreSQL the commit does not wait for its WAL
        flush (see ``_COMMIT_MODE``)."""
        doc = _doc(alarm)
        row = self._row(alarm, doc)
        entry = [uuid.uuid4().hex, event, 1 if publish else 0]
        try:
            if self._sql.postgres:
                if previous is None:
                    sql, params = _PG_INSERT_IF_NONE_OPEN, [*row, *entry, durable]
                else:
                    sql, params = _PG_UPDATE_IF_UNCHANGED, [*row, *entry, previous.doc, durable]
                rows = await self._sql.conn.execute_query_dict(sql, params)
                written = int(rows[0]["n"]) == 1
            else:
                if previous is None:
                    sql, params = _INSERT_IF_NONE_OPEN, [*row, self.site, alarm.dedupe_key]
                else:
                    sql, params = _UPDATE_IF_UNCHANGED, [*row[2:], self.site, alarm.id, previous.doc]
                async with in_transaction(self._sql.conn.connection_name) as tx:
                    written = bool(await tx.execute_query_dict(sql, params))
                    if written:
                        outbox = [entry[0], self.site, alarm.id, event, entry[2], alarm.updated_at]
                        await tx.execute_query(_OUTBOX, outbox)
        except DB_ERRORS as exc:
            raise self._error(f"store alarm {alarm.id}", exc) from exc
        return StoredAlarm(alarm, doc) if written else None

    def _row(self, a: Alarm, doc: str) -> list[Any]:
        return [
            self.site,
            a.id,
            a.rule_id,
            a.subject,
            a.dedupe_key,
            a.kind,
            a.severity,
            a.state,
            a.audience,
            a.raised_at,
            a.updated_at,
            doc,
        ]

    async def _alarms(self, doing: str, sql: str, params: list[Any]) -> list[Alarm]:
        return [s.alarm for s in await self._stored(doing, sql, params)]

    async def _stored(self, doing: str, sql: str, params: list[Any]) -> list[StoredAlarm]:
        try:
            rows = await self._sql.rows(sql, params)
        except DB_ERRORS as exc:
            raise self._error(doing, exc) from exc
        try:
            return [StoredAlarm(Alarm.from_json(json.loads(r["doc"])), str(r["doc"])) for r in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise self._error(f"{doing} (unreadable row)", exc) from exc

    async def get(self, alarm_id: str) -> Alarm | None:
        found = await self._alarms(
            f"read alarm {alarm_id}", "SELECT doc FROM alarms WHERE site = ? AND id = ?", [self.site, alarm_id]
        )
        return found[0] if found else None

    async def get_stored(self, alarm_id: str) -> StoredAlarm | None:
        found = await self._stored(
            f"read alarm {alarm_id}", "SELECT doc FROM alarms WHERE site = ? AND id = ?", [self.site, alarm_id]
        )
        return found[0] if found else None

    async def find_open(self, dedupe_key: str) -> Alarm | None:
        found = await self.find_open_stored(dedupe_key)
        return found.alarm if found else None

    async def find_open_stored(self, dedupe_key: str) -> StoredAlarm | None:
        found = await self._stored(
            f"look up the open alarm {dedupe_key}",
            "SELECT doc FROM alarms WHERE site = ? AND dedupe_key = ? AND state <> 'cleared' "
            "ORDER BY raised_at DESC LIMIT 1",
            [self.site, dedupe_key],
        )
        return found[0] if found else None

    async def open_keys(self) -> set[str]:
        """The dedupe keys of the site's open alarms (an index-only scan of ``ix_alarms_open``)."""
        try:
            rows = await self._sql.rows(
                "SELECT DISTINCT dedupe_key FROM alarms WHERE site = ? AND state <> 'cleared'", [self.site]
            )
        except DB_ERRORS as exc:
            raise self._error("list the open alarm keys", exc) from exc
        return {str(r["dedupe_key"]) for r in rows}

    async def find_active(self, rule_id: str, subject: str) -> Alarm | None:
        """The open alarm of a rule for a subject."""
        return await self.find_open(default_dedupe_key(rule_id, subject))

    async def list(
        self,
        *,
        active_only: bool = False,
        limit: int = 1000,
        states: Sequence[str] = (),
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        audiences: Sequence[str] = (),
    ) -> list[Alarm]:
        """The latest ``limit`` alarms that match, oldest first."""
        where: list[str] = ["site = ?"]
        params: list[Any] = [self.site]
        if active_only:
            where.append("state <> 'cleared'")
        for column, values in (("state", states), ("audience", audiences)):
            if values:
                where.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(values)
        for clause, value in (("kind = ?", kind), ("raised_at >= ?", since), ("raised_at <= ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        found = await self._alarms(
            "list alarms",
            f"SELECT doc FROM alarms WHERE {' AND '.join(where)} ORDER BY raised_at DESC, id DESC LIMIT ?",
            [*params, limit],
        )
        return found[::-1]

    async def unacknowledged(self, severity: str) -> builtins.list[Alarm]:
        """Open alarms of ``severity`` nobody has acknowledged (candidates for escalation)."""
        return await self._alarms(
            "list unacknowledged alarms",
            "SELECT doc FROM alarms WHERE site = ? AND state = 'raised' AND severity = ? ORDER BY raised_at",
            [self.site, severity],
        )

    # --- outbox and deliveries ---------------------------------------------------------------------
    async def outbox(self, limit: int = 200) -> builtins.list[tuple[OutboxEntry, Alarm | None]]:
        """Transitions not yet handed to the dispatcher, oldest first, each with its alarm as it is now
        (``None`` if it was removed): one query for a page of them."""
        try:
            rows = await self._sql.rows(
                "SELECT o.id, o.alarm_id, o.event, o.publish, o.created_at, a.doc FROM alarm_outbox o "
                "LEFT JOIN alarms a ON a.site = o.site AND a.id = o.alarm_id WHERE o.site = ? "
                "ORDER BY o.created_at, o.id LIMIT ?",
                [self.site, limit],
            )
        except DB_ERRORS as exc:
            raise self._error("read the alarm outbox", exc) from exc
        try:
            return [
                (
                    OutboxEntry(r["id"], self.site, r["alarm_id"], r["event"], bool(r["publish"]), r["created_at"]),
                    None if r["doc"] is None else Alarm.from_json(json.loads(r["doc"])),
                )
                for r in rows
            ]
        except (ValueError, TypeError, KeyError) as exc:
            raise self._error("read the alarm outbox (unreadable row)", exc) from exc

    async def expand(self, handed: Sequence[tuple[OutboxEntry, Sequence[str]]], now: float) -> None:
        """Replace outbox entries with one delivery per webhook target each (one transaction for all:
        a thousand devices reconnecting at once clear a thousand alarms)."""
        rows = [
            [uuid.uuid4().hex, self.site, entry.alarm_id, entry.event, t, now, entry.created_at]
            for entry, targets in handed
            for t in targets
        ]
        try:
            await self._sql.batch(
                [
                    (_DELIVERY, rows),
                    ("DELETE FROM alarm_outbox WHERE id = ?", [[entry.id] for entry, _ in handed]),
                ]
            )
        except DB_ERRORS as exc:
            raise self._error(f"hand over {len(handed)} outbox entries", exc) from exc

    async def due(self, now: float, limit: int = 100) -> builtins.list[Delivery]:
        """Deliveries whose next attempt is due, oldest first."""
        try:
            rows = await self._sql.rows(
                "SELECT id, alarm_id, event, target, attempts, created_at FROM alarm_deliveries "
                "WHERE site = ? AND delivered_at IS NULL AND failed_at IS NULL AND next_at <= ? "
                "ORDER BY next_at, created_at LIMIT ?",
                [self.site, now, limit],
            )
        except DB_ERRORS as exc:
            raise self._error("read due alarm deliveries", exc) from exc
        return [
            Delivery(r["id"], r["alarm_id"], r["event"], r["target"], int(r["attempts"]), r["created_at"]) for r in rows
        ]

    async def delivered(self, delivery_id: str, now: float) -> None:
        await self._update(
            "UPDATE alarm_deliveries SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
            [now, delivery_id],
            delivery_id,
        )

    async def retry_at(self, delivery_id: str, next_at: float, error: str) -> None:
        await self._update(
            "UPDATE alarm_deliveries SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
            [next_at, error[:500], delivery_id],
            delivery_id,
        )

    async def failed(self, delivery_id: str, now: float, error: str) -> None:
        await self._update(
            "UPDATE alarm_deliveries SET attempts = attempts + 1, failed_at = ?, last_error = ? WHERE id = ?",
            [now, error[:500], delivery_id],
            delivery_id,
        )

    async def pending(self) -> int:
        """Deliveries still to make (for health)."""
        try:
            rows = await self._sql.rows(
                "SELECT COUNT(*) AS n FROM alarm_deliveries WHERE site = ? AND delivered_at IS NULL "
                "AND failed_at IS NULL",
                [self.site],
            )
        except DB_ERRORS as exc:
            raise self._error("count pending alarm deliveries", exc) from exc
        return int(rows[0]["n"])

    async def forget_deliveries(self, before: float) -> None:
        """Drop finished delivery records older than ``before``."""
        await self._update(
            "DELETE FROM alarm_deliveries WHERE site = ? AND created_at < ? "
            "AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL)",
            [self.site, before],
            "old deliveries",
        )

    async def purge_cleared(self, before: float) -> int:
        """Remove alarms cleared before ``before`` (open ones are kept whatever their age); returns how many."""
        params = [self.site, before]
        try:
            rows = await self._sql.rows(
                "SELECT COUNT(*) AS n FROM alarms WHERE site = ? AND state = 'cleared' AND updated_at < ?", params
            )
            await self._sql.execute(
                "DELETE FROM alarms WHERE site = ? AND state = 'cleared' AND updated_at < ?", params
            )
        except DB_ERRORS as exc:
            raise self._error("remove old cleared alarms", exc) from exc
        return int(rows[0]["n"])

    async def _update(self, sql: str, params: builtins.list[Any], what: str) -> None:
        try:
            await self._sql.execute(sql, params)
        except DB_ERRORS as exc:
            raise self._error(f"update alarm delivery {what}", exc) from exc
