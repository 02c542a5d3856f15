"""Alarms in the registry database (table ``rule_alarms``), shared by a site's workers.

Every transition is written at once (autocommit): a worker that takes over the site sees the open
alarms, their acknowledgements and counts, and goes on deduplicating against them.
"""

from __future__ import annotations

import json
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.sql import DB_ERRORS, Sql
from rules.alarms import Alarm, AlarmStoreError

_UPSERT = (
    "INSERT INTO rule_alarms(site, id, rule_id, subject, state, raised_at, updated_at, doc) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(site, id) DO UPDATE SET rule_id = excluded.rule_id, "
    "subject = excluded.subject, state = excluded.state, raised_at = excluded.raised_at, "
    "updated_at = excluded.updated_at, doc = excluded.doc"
)


def _alarm(row: dict[str, Any]) -> Alarm:
    return Alarm(**json.loads(row["doc"]))


class DatabaseAlarmStore:
    """A site's alarms in ``rule_alarms``."""

    def __init__(self, conn: BaseDBAsyncClient, site: str) -> None:
        self._sql = Sql(conn)
        self.site = site

    def _error(self, doing: str, exc: BaseException) -> AlarmStoreError:
        return AlarmStoreError(f"table rule_alarms, site {self.site}", f"cannot {doing}: {exc}")

    async def put(self, alarm: Alarm) -> None:
        doc = json.dumps(alarm.to_json(), ensure_ascii=False, default=str)
        a = alarm
        params = [self.site, a.id, a.rule_id, a.subject, a.state, a.raised_at, a.updated_at, doc]
        try:
            await self._sql.execute(_UPSERT, params)
        except DB_ERRORS as exc:
            raise self._error(f"store alarm {alarm.id}", exc) from exc

    async def _rows(self, doing: str, sql: str, params: list[Any]) -> list[Alarm]:
        try:
            rows = await self._sql.rows(sql, params)
        except DB_ERRORS as exc:
            raise self._error(doing, exc) from exc
        try:
            return [_alarm(r) for r in rows]
        except (ValueError, TypeError) as exc:
            raise self._error(f"{doing} (unreadable row)", exc) from exc

    async def get(self, alarm_id: str) -> Alarm | None:
        found = await self._rows(
            f"read alarm {alarm_id}", "SELECT doc FROM rule_alarms WHERE site = ? AND id = ?", [self.site, alarm_id]
        )
        return found[0] if found else None

    async def find_active(self, rule_id: str, subject: str) -> Alarm | None:
        found = await self._rows(
            f"look up the active alarm of {rule_id} for {subject}",
            "SELECT doc FROM rule_alarms WHERE site = ? AND rule_id = ? AND subject = ? AND state <> 'cleared' "
            "ORDER BY raised_at DESC LIMIT 1",
            [self.site, rule_id, subject],
        )
        return found[0] if found else None

    async def list(self, *, active_only: bool = False, limit: int = 1000) -> list[Alarm]:
        """The latest ``limit`` alarms, oldest first."""
        where = " AND state <> 'cleared'" if active_only else ""
        found = await self._rows(
            "list alarms",
            f"SELECT doc FROM rule_alarms WHERE site = ?{where} ORDER BY raised_at DESC, id DESC LIMIT ?",
            [self.site, limit],
        )
        return found[::-1]
