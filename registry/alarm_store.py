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

from registry.alarms import Alarm, AlarmStoreError, OutboxEntry, default_dedupe_key
from registry.sql import DB_ERRORS, Sql

__all__ = ["DatabaseAlarmStore", "Delivery"]

_UPSERT = (
    "INSERT INTO alarms(site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, "
    "updated_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(site, id) DO UPDATE SET "
    "rule_id = excluded.rule_id, subject = excluded.subject, dedupe_key = excluded.dedupe_key, "
    "kind = excluded.kind, severity = excluded.severity, state = excluded.state, audience = excluded.audience, "
    "raised_at = excluded.raised_at, updated_at = excluded.updated_at, doc = excluded.doc"
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


class DatabaseAlarmStore:
    """A site's alarms, their outbox and webhook deliveries."""

    def __init__(self, conn: BaseDBAsyncClient, site: str) -> None:
        self._sql = Sql(conn)
        self.site = site

    def _error(self, doing: str, exc: BaseException) -> AlarmStoreError:
        return AlarmStoreError(f"alarms of site {self.site}", f"cannot {doing}: {exc}")

    # --- alarms ------------------------------------------------------------------------------------
    async def put(self, alarm: Alarm, event: str = "raised", *, publish: bool = False) -> None:
        doc = json.dumps(alarm.to_json(), ensure_ascii=False, default=str)
        a = alarm
        row = [
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
        entry = [uuid.uuid4().hex, self.site, a.id, event, 1 if publish else 0, a.updated_at]
        try:
            await self._sql.batch([(_UPSERT, [row]), (_OUTBOX, [entry])])
        except DB_ERRORS as exc:
            raise self._error(f"store alarm {alarm.id}", exc) from exc

    async def _alarms(self, doing: str, sql: str, params: list[Any]) -> list[Alarm]:
        try:
            rows = await self._sql.rows(sql, params)
        except DB_ERRORS as exc:
            raise self._error(doing, exc) from exc
        try:
            return [Alarm.from_json(json.loads(r["doc"])) for r in rows]
        except (ValueError, TypeError, KeyError) as exc:
            raise self._error(f"{doing} (unreadable row)", exc) from exc

    async def get(self, alarm_id: str) -> Alarm | None:
        found = await self._alarms(
            f"read alarm {alarm_id}", "SELECT doc FROM alarms WHERE site = ? AND id = ?", [self.site, alarm_id]
        )
        return found[0] if found else None

    async def find_open(self, dedupe_key: str) -> Alarm | None:
        found = await self._alarms(
            f"look up the open alarm {dedupe_key}",
            "SELECT doc FROM alarms WHERE site = ? AND dedupe_key = ? AND state <> 'cleared' "
            "ORDER BY raised_at DESC LIMIT 1",
            [self.site, dedupe_key],
        )
        return found[0] if found else None

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
    async def outbox(self, limit: int = 200) -> builtins.list[OutboxEntry]:
        """Transitions not yet handed to the dispatcher, oldest first."""
        try:
            rows = await self._sql.rows(
                "SELECT id, alarm_id, event, publish, created_at FROM alarm_outbox WHERE site = ? "
                "ORDER BY created_at, id LIMIT ?",
                [self.site, limit],
            )
        except DB_ERRORS as exc:
            raise self._error("read the alarm outbox", exc) from exc
        return [
            OutboxEntry(r["id"], self.site, r["alarm_id"], r["event"], bool(r["publish"]), r["created_at"])
            for r in rows
        ]

    async def expand(self, entry: OutboxEntry, targets: Sequence[str], now: float) -> None:
        """Replace an outbox entry with one delivery per webhook target (one transaction)."""
        rows = [[uuid.uuid4().hex, self.site, entry.alarm_id, entry.event, t, now, entry.created_at] for t in targets]
        try:
            await self._sql.batch(
                [
                    (_DELIVERY, rows),
                    ("DELETE FROM alarm_outbox WHERE id = ?", [[entry.id]]),
                ]
            )
        except DB_ERRORS as exc:
            raise self._error(f"hand over outbox entry {entry.id}", exc) from exc

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
