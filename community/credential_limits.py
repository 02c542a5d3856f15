"""Site-wide attempt limits per credential, for a partitioned site: the IO seam beside the pure counts.

With ``workers.partitions`` > 1 each partition's owner decides for its own doors (a door's counts stay
in memory, :class:`community.lockout.AttemptLimits`), but one card, PIN or QR code may be tried at doors
of every partition. Its refusals are therefore written to ``access_credential_failures`` and its lock
to ``access_credential_locks`` (migration 0088), under the keyed hash the handler counts with
(``lookup_hash(value, "attempts-{kind}")``), never the credential. Whether a count starts a lock is
decided by the pure :func:`community.lockout.credential_lock`.

A refusal is counted in one transaction that, on PostgreSQL, first takes an advisory lock on the
credential, so two owners refusing the same credential at once count it in turn (SQLite serialises
writers anyway). Every method may raise one of :data:`registry.sql.DB_ERRORS`.
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from community.allowlist import EdgeLimits
from community.lockout import LockStarted, credential_lock
from registry.sql import Sql

__all__ = ["CredentialLimitStore"]


class CredentialLimitStore:
    """Refusal counts and locks of credentials across all the doors of one site (see module docstring)."""

    def __init__(self, sql: Sql, site: str, limits: EdgeLimits) -> None:
        self.sql = sql
        self.site = site
        self.limits = limits

    async def locked(self, kind: str, key: str, now: float) -> bool:
        """Whether the credential is locked at ``now``."""
        rows = await self.sql.rows(
            "SELECT 1 AS locked FROM access_credential_locks WHERE site = ? AND kind = ? AND key = ? AND until > ?",
            (self.site, kind, key, now),
        )
        return bool(rows)

    async def refused(self, door: str, kind: str, key: str, now: float) -> LockStarted | None:
        """Count one refusal of the credential at ``door``; returns the lock it starts, if any (the count
        then starts afresh, as in memory)."""
        since = now - self.limits.window_s
        where = "site = ? AND kind = ? AND key = ?"
        ident = (self.site, kind, key)
        sql = self.sql
        async with in_transaction(sql.conn.connection_name) as tx:
            if sql.postgres:
                await tx.execute_query(sql.q("SELECT pg_advisory_xact_lock(hashtext(?))"), ["|".join(ident)])
            # the credential's rows outside the window go now; rows of credentials never tried again go
            # with the retention purge (prune)
            await tx.execute_query(
                sql.q(f"DELETE FROM access_credential_failures WHERE {where} AND at <= ?"), [*ident, since]
            )
            await tx.execute_query(
                sql.q("INSERT INTO access_credential_failures (site, kind, key, at) VALUES (?, ?, ?, ?)"), [*ident, now]
            )
            _n, rows = await tx.execute_query(
                sql.q(f"SELECT COUNT(*) AS n FROM access_credential_failures WHERE {where} AND at > ?"), [*ident, since]
            )
            lock = credential_lock(self.limits, door, kind, key, int(rows[0]["n"]), now)
            if lock is not None:
                await tx.execute_query(sql.q(f"DELETE FROM access_credential_failures WHERE {where}"), list(ident))
                await tx.execute_query(sql.q(f"DELETE FROM access_credential_locks WHERE {where}"), list(ident))
                await tx.execute_query(
                    sql.q("INSERT INTO access_credential_locks (site, kind, key, until) VALUES (?, ?, ?, ?)"),
                    [*ident, lock.until],
                )
        return lock

    async def granted(self, kind: str, key: str) -> None:
        """A grant resets the credential's count (never a running lock: a locked credential is not looked up)."""
        await self.sql.execute(
            "DELETE FROM access_credential_failures WHERE site = ? AND kind = ? AND key = ?", (self.site, kind, key)
        )

    async def prune(self, now: float) -> int:
        """Delete failures older than the window and locks that have ended; returns how many rows went."""
        removed = 0
        for sql, bound in (
            ("DELETE FROM access_credential_failures WHERE site = ? AND at <= ?", now - self.limits.window_s),
            ("DELETE FROM access_credential_locks WHERE site = ? AND until <= ?", now),
        ):
            n, _rows = await self.sql.conn.execute_query(self.sql.q(sql), [self.site, bound])
            removed += n
        return removed
