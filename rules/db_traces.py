"""The last trace entries of each rule in the registry database (table ``rule_traces``).

The engine keeps the newest entries of each rule in memory (:class:`~rules.trace.Trace`, ``recent``)
and, once per tick, writes the rules whose entries changed: one row per rule holding its newest
entries as JSON. Any process of the site reads them (``GET /rules/{id}/traces``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.sql import DB_ERRORS, Sql
from rules.trace import TraceEntry

_UPSERT = (
    "INSERT INTO rule_traces(site, rule_id, updated_at, entries) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(site, rule_id) DO UPDATE SET updated_at = excluded.updated_at, entries = excluded.entries"
)


class TraceStoreError(Exception):
    """The traces could not be read or written."""


def _entry(doc: dict[str, object]) -> TraceEntry:
    return TraceEntry(
        float(str(doc["ts"])), str(doc["rule_id"]), str(doc["input"]), str(doc["outcome"]), str(doc["detail"])
    )


class DatabaseTraceStore:
    """A site's rule traces in ``rule_traces``."""

    def __init__(self, conn: BaseDBAsyncClient, site: str) -> None:
        self._sql = Sql(conn)
        self.site = site

    async def write(self, recent: Mapping[str, Sequence[TraceEntry]]) -> None:
        """Replace the stored entries of these rules, in one transaction."""
        if not recent:
            return
        now = time.time()
        rows: list[list[object]] = [
            [self.site, rid, now, json.dumps([_doc(e) for e in entries], ensure_ascii=False)]
            for rid, entries in recent.items()
        ]
        try:
            await self._sql.batch([(_UPSERT, rows)])
        except DB_ERRORS as exc:
            raise TraceStoreError(f"table rule_traces, site {self.site}: cannot write: {exc}") from exc

    async def read(self, rule_id: str) -> list[TraceEntry] | None:
        """The stored entries of a rule, oldest first; None when the rule has none stored."""
        try:
            rows = await self._sql.rows(
                "SELECT entries FROM rule_traces WHERE site = ? AND rule_id = ?", [self.site, rule_id]
            )
        except DB_ERRORS as exc:
            raise TraceStoreError(f"table rule_traces, site {self.site}: cannot read: {exc}") from exc
        if not rows:
            return None
        return [_entry(d) for d in json.loads(rows[0]["entries"])]

    async def rule_ids(self) -> list[str]:
        """Rules that have stored traces."""
        rows = await self._sql.rows("SELECT rule_id FROM rule_traces WHERE site = ? ORDER BY rule_id", [self.site])
        return [str(r["rule_id"]) for r in rows]


def _doc(e: TraceEntry) -> dict[str, object]:
    return {"ts": e.ts, "rule_id": e.rule_id, "input": e.input, "outcome": e.outcome, "detail": e.detail}
