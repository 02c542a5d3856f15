"""Reading and bounding the twins' version history (``twin_history``, migration 0040).

The twin store writes the rows, in the same transaction as the twins (:meth:`registry.store.TwinStore.commit`);
this module reads them (the console's device view, ``GET /devices/{id}/history``, ``anfang rules replay``)
and prunes them: a periodic job (:func:`prune_periodically`), never a cost of the write path, keeps
the newest ``keep_versions`` rows of each device and none older than ``keep_days``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from registry.sql import DB_ERRORS, Sql
from twins import jsoncodec
from twins.history import HistoryEntry

__all__ = ["HistoryPolicy", "HistoryStore", "SiteHistoryEntry", "prune_periodically"]

log = logging.getLogger(__name__)

DAY = 86_400.0
_COLUMNS = "h.device_id, h.version, h.ts, h.source, h.actor, h.changed"


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """How much history is kept: the newest ``keep_versions`` per device (0: no count bound), and
    nothing older than ``keep_days``."""

    keep_versions: int = 2000
    keep_days: float = 30.0


@dataclass(frozen=True, slots=True)
class SiteHistoryEntry:
    """A history entry with the device's kind, for replaying a site's changes."""

    kind: str
    entry: HistoryEntry


def _entry(row: dict[str, object]) -> HistoryEntry:
    changed = jsoncodec.loads(str(row["changed"]))
    return HistoryEntry(
        str(row["device_id"]),
        int(str(row["version"])),
        float(str(row["ts"])),
        str(row["source"]),
        str(row["actor"]),
        changed if isinstance(changed, dict) else {},
    )


class HistoryStore:
    """The version history of a site's twins on the registry database."""

    def __init__(self, conn: BaseDBAsyncClient, site: str) -> None:
        self._sql, self.site = Sql(conn), site

    async def recent(self, device_id: str, limit: int = 50) -> list[HistoryEntry]:
        """A device of this site's newest entries, newest first."""
        rows = await self._sql.rows(
            f"SELECT {_COLUMNS} FROM twin_history h JOIN devices d ON d.id = h.device_id "
            "WHERE d.site_id = ? AND h.device_id = ? ORDER BY h.version DESC LIMIT ?",
            [self.site, device_id, limit],
        )
        return [_entry(r) for r in rows]

    async def changes_before(self, until: float) -> list[SiteHistoryEntry]:
        """Every kept entry of the site's devices before ``until``, oldest first (a replay folds the ones
        before its start into the state it starts from)."""
        rows = await self._sql.rows(
            f"SELECT {_COLUMNS}, d.kind FROM twin_history h JOIN devices d ON d.id = h.device_id "
            "WHERE d.site_id = ? AND h.ts < ? ORDER BY h.ts, h.device_id, h.version",
            [self.site, until],
        )
        return [SiteHistoryEntry(str(r["kind"]), _entry(r)) for r in rows]

    async def prune(self, policy: HistoryPolicy, now: float) -> int:
        """Delete the site's entries beyond ``policy``; returns how many."""
        removed = 0
        devices = "device_id IN (SELECT id FROM devices WHERE site_id = ?)"
        async with in_transaction(self._sql.conn.connection_name) as tx:
            count, _ = await tx.execute_query(
                self._sql.q(f"DELETE FROM twin_history WHERE ts < ? AND {devices}"),
                [now - policy.keep_days * DAY, self.site],
            )
            removed += int(count)
            if policy.keep_versions > 0:
                # only the devices past the bound (counted on the primary key's index), then each one's
                # versions older than its newest keep_versions: index seeks, no sort of the whole table
                over = await tx.execute_query_dict(
                    self._sql.q(
                        f"SELECT device_id FROM twin_history WHERE {devices} GROUP BY device_id HAVING COUNT(*) > ?"
                    ),
                    [self.site, policy.keep_versions],
                )
                for row in over:
                    count, _ = await tx.execute_query(
                        self._sql.q(
                            "DELETE FROM twin_history WHERE device_id = ? AND version <= (SELECT version FROM "
                            "twin_history WHERE device_id = ? ORDER BY version DESC LIMIT 1 OFFSET ?)"
                        ),
                        [row["device_id"], row["device_id"], policy.keep_versions],
                    )
                    removed += int(count)
        return removed


async def prune_periodically(store: HistoryStore, policy: HistoryPolicy, interval: float) -> None:
    """Prune the history every ``interval`` seconds, first at once; a failed pass is logged and retried."""
    while True:
        try:
            removed = await store.prune(policy, time.time())
            if removed:
                log.info("twin history: pruned %d entries of site %s", removed, store.site)
        except DB_ERRORS as exc:
            log.warning("twin history: prune failed, retrying in %.0f s: %s", interval, exc)
        await asyncio.sleep(interval)  # the period of a maintenance job, not synchronisation
