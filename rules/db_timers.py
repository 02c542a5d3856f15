"""Pending rule timers in the registry database (table ``rule_timers``), shared by a site's workers.

The engine calls its :class:`~rules.timers.TimerStore` synchronously while it evaluates rules, so this
store works on an in-memory copy: :meth:`DatabaseTimerStore.open` reads the site's timers before the
engine starts, ``save``/``delete`` mark keys as changed, and the engine's once-per-tick ``flush``
writes the changed keys in one transaction. A worker that takes over the site (another host, another
data directory, the same database) opens the store again and gets the timers where they were left.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.sql import DB_ERRORS, Sql
from rules.timers import Timer, TimerStoreError

_UPSERT = (
    "INSERT INTO rule_timers(site, part, key, due, body, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(site, part, key) DO UPDATE SET due = excluded.due, body = excluded.body, "
    "updated_at = excluded.updated_at"
)
_DELETE = "DELETE FROM rule_timers WHERE site = ? AND part = ? AND key = ?"


class DatabaseTimerStore:
    """A site's timers in ``rule_timers``; create with :meth:`open` (reads them), flushed by the engine.
    ``part``: with several workers per site, the partition whose engine's state this is (its own rows only)."""

    def __init__(self, conn: BaseDBAsyncClient, site: str, part: int = 0) -> None:
        self._sql = Sql(conn)
        self.site, self.part = site, part
        self._timers: dict[str, Timer] = {}
        self._dirty: set[str] = set()
        self._lock = asyncio.Lock()
        self._loaded = False

    @property
    def _where(self) -> str:
        return f"table rule_timers, site {self.site}" + (f", partition {self.part}" if self.part else "")

    @classmethod
    async def open(cls, conn: BaseDBAsyncClient, site: str, part: int = 0) -> DatabaseTimerStore:
        """A store holding the site's (partition's) stored timers."""
        store = cls(conn, site, part)
        await store.preload()
        return store

    async def preload(self) -> None:
        """Read the site's timers; changes not yet flushed are lost (call before the engine starts)."""
        try:
            rows = await self._sql.rows(
                "SELECT key, body FROM rule_timers WHERE site = ? AND part = ?", [self.site, self.part]
            )
        except DB_ERRORS as exc:
            raise TimerStoreError(self._where, f"cannot load timers: {exc}") from exc
        timers: dict[str, Timer] = {}
        for row in rows:
            try:
                timers[str(row["key"])] = Timer.from_json(json.loads(row["body"]))
            except (ValueError, TypeError) as exc:
                raise TimerStoreError(self._where, f"timer {row['key']!r} is unreadable: {exc}") from exc
        self._timers, self._dirty, self._loaded = timers, set(), True

    def load(self) -> list[Timer]:
        if not self._loaded:
            raise TimerStoreError(self._where, "not read yet: open the store with DatabaseTimerStore.open()")
        return [replace(t, context=dict(t.context)) for t in self._timers.values()]

    def save(self, timer: Timer) -> None:
        # a copy: the engine changes its timers in place (state, due) and saves them again
        self._timers[timer.key] = replace(timer, context=dict(timer.context))
        self._dirty.add(timer.key)

    def delete(self, key: str) -> None:
        if self._timers.pop(key, None) is not None:
            self._dirty.add(key)

    async def flush(self) -> None:
        """Write the timers saved or deleted since the last flush, in one transaction."""
        async with self._lock:  # one flush at a time: an older snapshot must not overwrite a newer one
            if not self._dirty:
                return
            keys, self._dirty = self._dirty, set()
            now = time.time()
            upserts: list[list[object]] = []
            deletes: list[list[object]] = []
            for key in keys:
                timer = self._timers.get(key)
                if timer is None:
                    deletes.append([self.site, self.part, key])
                else:
                    body = json.dumps(timer.to_json(), ensure_ascii=False, default=str)
                    upserts.append([self.site, self.part, key, timer.due, body, now])
            try:
                await self._sql.batch([(_DELETE, deletes), (_UPSERT, upserts)])
            except DB_ERRORS as exc:
                self._dirty |= keys  # written at the next flush
                raise TimerStoreError(self._where, f"cannot write {len(keys)} timer(s): {exc}") from exc
