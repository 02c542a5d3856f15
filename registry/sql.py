"""Raw SQL on the registry database's Tortoise connection, written once for SQLite and PostgreSQL.

The twin store and the rules engine's timers and alarms write to the database the platform opened
with :func:`registry.db.open_database`. Statements use ``?`` placeholders; on PostgreSQL they
become ``$1, $2, …``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import asyncpg
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import BaseORMException
from tortoise.transactions import in_transaction

#: What a failing statement raises: Tortoise translates only some driver errors (syntax, constraint);
#: a lost connection surfaces as the driver's own error or an ``OSError``.
DB_ERRORS: tuple[type[BaseException], ...] = (
    BaseORMException,
    OSError,
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def with_placeholders(sql: str, postgres: bool) -> str:
    """``sql`` with the dialect's placeholders: ``?`` for SQLite, ``$1, $2, …`` for PostgreSQL."""
    if not postgres:
        return sql
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


#: SQLSTATEs of failures that abort a statement only because of what ran beside it: the same statement
#: succeeds when tried again (deadlock detected, serialization failure).
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})


def is_transient(exc: BaseException) -> bool:
    """Did the database abort this statement for a reason that trying again resolves? Tortoise wraps the
    driver's error, so the causes are looked at too."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain is short; the bound guards against a cycle
        if seen is None:
            break
        if getattr(seen, "sqlstate", None) in TRANSIENT_SQLSTATES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Sql:
    """A Tortoise connection with the dialect's placeholders; every method may raise one of :data:`DB_ERRORS`."""

    def __init__(self, conn: BaseDBAsyncClient) -> None:
        self.conn = conn
        self.postgres = conn.capabilities.dialect == "postgres"

    def q(self, sql: str) -> str:
        """``sql`` with the dialect's placeholders."""
        return with_placeholders(sql, self.postgres)

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """The rows a query returns."""
        return list(await self.conn.execute_query_dict(self.q(sql), list(params)))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement (autocommit)."""
        await self.conn.execute_query(self.q(sql), list(params))

    async def batch(self, statements: Sequence[tuple[str, Sequence[Sequence[Any]]]]) -> None:
        """Run each statement for each of its parameter rows, all in one transaction."""
        async with in_transaction(self.conn.connection_name) as tx:
            for sql, rows in statements:
                if rows:
                    await tx.execute_many(self.q(sql), [list(r) for r in rows])
