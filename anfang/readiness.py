"""What ``/readyz`` reports: is this process able to do its work right now?

Ready means: the database answers, every migration shipped with this version is applied, and each
platform worker in this process is connected to its broker and subscribed (a link that reconnected
to a broker which lost its session is connected but deaf until its subscriptions are granted again).
A process that serves no worker yet (standing by for a site's lease, or still starting) is alive but
not ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.migrate import MIGRATIONS_DIR, migration_files

if TYPE_CHECKING:
    from anfang.service import Platform

log = logging.getLogger(__name__)

DB_TIMEOUT_S = 2.0


class Readiness:
    """Tracks this process's workers and checks the database on demand."""

    def __init__(self, connection: BaseDBAsyncClient, postgres: bool) -> None:
        self._conn, self._postgres = connection, postgres
        self._workers: list[Platform] = []
        self.standing_by = False
        self._checks: dict[str, Callable[[], str]] = {}

    @property
    def workers(self) -> list[Platform]:
        """The platform workers this process runs now."""
        return list(self._workers)

    @contextlib.contextmanager
    def extra_check(self, name: str, check: Callable[[], str]) -> Iterator[None]:
        """While the context is open, ``check()`` (``ok`` or what is wrong) is one more component of readiness."""
        self._checks[name] = check
        try:
            yield
        finally:
            self._checks.pop(name, None)

    @contextlib.contextmanager
    def serving(self, worker: Platform) -> Iterator[None]:
        """While the context is open, ``worker`` counts towards readiness."""
        self._workers.append(worker)
        try:
            yield
        finally:
            self._workers.remove(worker)

    async def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, a reason per component: ``ok`` or what is wrong)."""
        report = {"database": await self._database(), "migrations": "ok", "broker": self._broker()}
        if report["database"] == "ok":
            report["migrations"] = await self._migrations()
        for name, check in list(self._checks.items()):
            report[name] = check()
        return all(v == "ok" for v in report.values()), report

    def _broker(self) -> str:
        if not self._workers:
            return "standing by: another worker holds the site's lease" if self.standing_by else "starting"
        if not all(w.ready.is_set() for w in self._workers):
            return "starting"
        down = sum(1 for w in self._workers if not w.link.connected)
        if down:
            return f"not connected to the broker ({down} of {len(self._workers)} links)"
        deaf = [state for w in self._workers if (state := w.link.state()) != "ok"]
        if deaf:
            return f"{deaf[0]} ({len(deaf)} of {len(self._workers)} links)"
        return "ok"

    async def _database(self) -> str:
        try:
            async with asyncio.timeout(DB_TIMEOUT_S):
                await self._conn.execute_query("SELECT 1")
        except TimeoutError:
            return f"no answer within {DB_TIMEOUT_S:g} s"
        except Exception as exc:  # any driver error means "not reachable"; the reason is reported
            return f"unreachable: {type(exc).__name__}: {exc}"
        return "ok"

    async def _migrations(self) -> str:
        try:
            _, rows = await self._conn.execute_query("SELECT name FROM schema_migrations")
        except Exception as exc:  # no table yet: nothing applied
            return f"cannot read schema_migrations: {exc}"
        applied = {str(row["name"]) for row in rows}
        pending = [name for name, _ in migration_files(MIGRATIONS_DIR, self._postgres) if name not in applied]
        return f"pending: {', '.join(pending)}" if pending else "ok"
