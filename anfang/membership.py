"""The live workers of a site and the assignment of its partitions, kept in PostgreSQL.

Each worker heartbeats (:meth:`Membership.beat`): it extends its row in ``site_workers`` and, under a
transaction-scoped advisory lock of the site (so one worker at a time), recomputes the target owner
of every partition with :func:`anfang.assignment.target` from the workers whose row has not expired,
writing only what changes (with a new ``epoch``). A worker killed outright stops heartbeating and its
row expires; its partitions are then assigned to the others, whose advisory locks PostgreSQL freed
when its connection died. Expiry uses the database's clock, so the workers' clocks may differ.

Provisioning (:func:`announce_device`, :func:`wait_served`): a new device is announced on the
``anfang_devices`` channel (LISTEN/NOTIFY); the owner of its partition subscribes to its topics
and, after the broker's SUBACK, records it in ``served_devices``
(:meth:`Membership.record_served`). Only then is its secret handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType

import asyncpg

from anfang.assignment import target

__all__ = ["CHANNEL", "Membership", "announce_device", "connect", "wait_served"]

log = logging.getLogger(__name__)

CHANNEL = "anfang_devices"  # NOTIFY payload: the site of a device just registered
_NOW = "extract(epoch from clock_timestamp())"


def connect(db_url: str) -> asyncpg.Connection:
    """An asyncpg connection (a coroutine) for a ``postgres://`` URL."""
    return asyncpg.connect("postgresql://" + db_url.split("://", 1)[1])


def _site_key(site: str) -> int:
    return int.from_bytes(hashlib.sha256(f"anfang-assign:{site}".encode()).digest()[:8], "big", signed=True)


class Membership:
    """One worker's membership of its site: heartbeat, the assignment, hand-off marks."""

    def __init__(self, db_url: str, site: str, worker: str, partitions: int, expiry_s: float) -> None:
        self.site, self.worker, self.partitions, self.expiry_s = site, worker, partitions, expiry_s
        self._db_url = db_url
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()  # one query at a time on the connection (tasks of several partitions share it)
        self.epoch = 0  # the highest partition epoch seen: grows whenever an owner changes

    async def __aenter__(self) -> Membership:
        self._conn = await connect(self._db_url)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is None:
            return
        try:
            # leaving on purpose (not killed): the others need not wait for the row to expire
            await asyncio.shield(self._conn.execute(
                "DELETE FROM site_workers WHERE site = $1 AND worker = $2", self.site, self.worker
            ))  # fmt: skip
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("could not leave site %s cleanly: %s", self.site, exc)
        finally:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> asyncpg.Connection:
        assert self._conn is not None, "use Membership as an async context manager"
        return self._conn

    async def beat(self) -> dict[int, str]:
        """Heartbeat, bring the assignment up to date with the live workers, and return it."""
        async with self._lock, self.conn.transaction():
            await self.conn.execute("SELECT pg_advisory_xact_lock($1)", _site_key(self.site))
            await self.conn.execute(
                f"""INSERT INTO site_workers(site, worker, joined_at, expires_at) VALUES ($1, $2, {_NOW}, {_NOW} + $3)
                ON CONFLICT (site, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at""",
                self.site,
                self.worker,
                self.expiry_s,
            )
            live = [r["worker"] for r in await self.conn.fetch(
                f"SELECT worker FROM site_workers WHERE site = $1 AND expires_at > {_NOW}", self.site
            )]  # fmt: skip
            rows = await self.conn.fetch("SELECT part, owner, epoch FROM partition_owners WHERE site = $1", self.site)
            current = {int(r["part"]): str(r["owner"]) for r in rows}
            epochs = {int(r["part"]): int(r["epoch"]) for r in rows}
            new = target(self.partitions, current, live)
            for part, owner in new.items():
                if current.get(part) != owner:
                    await self.conn.execute(
                        """INSERT INTO partition_owners(site, part, owner, epoch) VALUES ($1, $2, $3, $4)
                        ON CONFLICT (site, part) DO UPDATE SET owner = EXCLUDED.owner, epoch = EXCLUDED.epoch""",
                        self.site,
                        part,
                        owner,
                        epochs.get(part, 0) + 1,
                    )
                    epochs[part] = epochs.get(part, 0) + 1
                    was = current.get(part)
                    log.info("partition %d of site %s assigned to %s (was %s)", part, self.site, owner, was)
        self.epoch = max(epochs.values(), default=0)
        return new

    async def mark_holder(self, part: int, holding: bool) -> None:
        """Record that this worker now serves ``part`` (it holds its lease), or has handed it off."""
        async with self._lock:
            if holding:  # whoever held it before has released its lease, or died
                sql = "UPDATE partition_owners SET holder = $3 WHERE site = $1 AND part = $2"
            else:
                sql = "UPDATE partition_owners SET holder = NULL WHERE site = $1 AND part = $2 AND holder = $3"
            await self.conn.execute(sql, self.site, part, self.worker)

    async def record_served(self, part: int, device_ids: Sequence[str]) -> None:
        """The partition's session is subscribed to these devices' topics (the broker acknowledged it)."""
        async with self._lock:
            await self.conn.executemany(
                """INSERT INTO served_devices(site, device_id, part) VALUES ($1, $2, $3)
                ON CONFLICT (site, device_id) DO UPDATE SET part = EXCLUDED.part""",
                [(self.site, d, part) for d in device_ids],
            )

    async def listen(self, on_device: Callable[[], None]) -> None:
        """Call ``on_device`` whenever a device of this site is announced."""

        def heard(conn: object, pid: int, channel: str, payload: str) -> None:
            if payload == self.site:
                on_device()

        await self.conn.add_listener(CHANNEL, heard)


async def announce_device(conn: asyncpg.Connection, site: str) -> None:
    """Tell the site's workers that a device was registered (they subscribe to its topics)."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, site)


async def wait_served(conn: asyncpg.Connection, site: str, device_ids: Sequence[str], timeout: float) -> dict[str, int]:
    """The partition serving each of ``device_ids`` whose owner has subscribed to it, once all are or
    ``timeout`` has passed; at once when no worker of the site is alive (the first to start subscribes
    to every device)."""
    alive = await conn.fetchval(f"SELECT COUNT(*) FROM site_workers WHERE site = $1 AND expires_at > {_NOW}", site)
    served: dict[str, int] = {}
    if not alive:
        return served
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                rows = await conn.fetch(
                    "SELECT device_id, part FROM served_devices WHERE site = $1 AND device_id = ANY($2::text[])",
                    site,
                    list(device_ids),
                )
                served = {str(r["device_id"]): int(r["part"]) for r in rows}
                if len(served) == len(set(device_ids)):
                    return served
                await asyncio.sleep(0.1)  # polling another process's progress through the database
    return served
