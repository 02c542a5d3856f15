"""One active worker per site: a lease held for as long as the worker lives.

Several ``anfang run`` processes may serve the same site; the one holding the site's lease runs
the platform (same MQTT client id, so it resumes the persistent session and its queued messages),
the others wait. The lease is a PostgreSQL session advisory lock (released by the server the
moment the holder's connection dies, e.g. on SIGKILL) or, on SQLite, an ``flock`` on a file in the
data directory (released by the kernel when the process dies).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from pathlib import Path
from types import TracebackType

import asyncpg

from registry.migrate import is_postgres

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """The worker no longer holds its site's lease and must stop."""


def lease_name(site: str, partition: int = 0) -> str:
    """Partition 0 is the site's own lease, so a one-partition worker and a leader exclude each other."""
    return site if partition == 0 else f"{site}.p{partition}"


def lease_key(site: str, partition: int = 0) -> int:
    """A stable signed 64-bit advisory-lock key for a site (or one of its partitions)."""
    name = lease_name(site, partition)
    return int.from_bytes(hashlib.sha256(f"anfang-site:{name}".encode()).digest()[:8], "big", signed=True)


class SiteLease:
    """Waits for and holds the lease of a site (or of one partition of its devices); :meth:`watch`
    raises :class:`LeaseLost` if it is lost."""

    def __init__(self, site: str, db_url: str, data_dir: Path, poll: float = 0.5, partition: int = 0) -> None:
        self.site, self._db_url, self._data_dir, self._poll = site, db_url, data_dir, poll
        self.partition = partition
        self._name = lease_name(site, partition)
        self._conn: asyncpg.Connection | None = None
        self._fd: int | None = None

    async def __aenter__(self) -> SiteLease:
        announced = False
        try:
            while not await self._try():
                if not announced:
                    log.info("another worker holds the lease of %s; standing by", self._what)
                    announced = True
                await asyncio.sleep(self._poll)  # polling: neither flock nor advisory locks offer a wait we can cancel
        except BaseException:  # cancelled while waiting (the partition was assigned elsewhere): no lease, no connection
            await self.__aexit__(None, None, None)
            raise
        log.info("holding the lease of %s", self._what)
        return self

    @property
    def _what(self) -> str:
        return f"site {self.site}" if self.partition == 0 else f"partition {self.partition} of site {self.site}"

    async def _try(self) -> bool:
        if is_postgres(self._db_url):
            if self._conn is None:
                self._conn = await asyncpg.connect("postgresql://" + self._db_url.split("://", 1)[1])
            return bool(
                await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", lease_key(self.site, self.partition))
            )
        self._data_dir.mkdir(parents=True, exist_ok=True)
        if self._fd is None:
            self._fd = os.open(self._data_dir / f"{self._name}.lease", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def watch(self, interval: float = 2.0) -> None:
        """Run while the lease is held; raise :class:`LeaseLost` when the database connection is gone."""
        while True:
            await asyncio.sleep(interval)
            if self._conn is not None:
                try:
                    await self._conn.fetchval("SELECT 1")
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    raise LeaseLost(f"lost the lease of {self._what}: {exc}") from exc

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
