"""Opening the database: migrations first, then Tortoise on the same URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url

from registry.migrate import apply_migrations, is_postgres

CORE_MODELS = ("registry.models",)


def connection_name(db_url: str) -> str:
    """Tortoise caches generated SQL per connection name: the one connection is named after the dialect."""
    return "postgres" if is_postgres(db_url) else "sqlite"


def open_connection(db_url: str) -> BaseDBAsyncClient:
    """The connection :func:`open_database` opened for ``db_url`` (while it is open)."""
    conn: BaseDBAsyncClient = connections.get(connection_name(db_url))
    return conn


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Returning a connection to the pool costs no round trip: asyncpg has already rolled back an open
    transaction, and the platform leaves no session state on pooled connections (its advisory locks,
    the leases and the migration lock, hold connections of their own). asyncpg's default reset
    (``RESET ALL``, ``UNLISTEN *``, ... ) would be one more round trip after every statement."""


@asynccontextmanager
async def open_database(
    db_url: str, models: Sequence[str] = CORE_MODELS, *, migrate: bool = True
) -> AsyncIterator[BaseDBAsyncClient]:
    """Apply pending migrations, init Tortoise, yield the default connection, close at exit."""
    if migrate:
        await apply_migrations(db_url)
    url = db_url
    if is_postgres(db_url) and db_url.startswith("postgresql://"):
        url = "postgres://" + db_url.split("://", 1)[1]
    if not is_postgres(db_url) and "synchronous" not in url:
        # WAL + synchronous=NORMAL: a commit survives a crash of the process (what "acknowledged means
        # committed" needs) without an fsync per commit; power-loss durability needs PostgreSQL
        url += ("&" if "?" in url else "?") + "synchronous=NORMAL"
    name = connection_name(db_url)
    connection: str | dict[str, Any] = url
    if is_postgres(db_url):
        connection = expand_db_url(url)
        connection["credentials"]["reset"] = _keep_session
    await Tortoise.init(
        config={
            "connections": {name: connection},
            "apps": {"models": {"models": list(models), "default_connection": name}},
        }
    )
    try:
        yield connections.get(name)
    finally:
        await Tortoise.close_connections()
        await Tortoise._reset_apps()  # a later init (another database, as in tests) must rebind the models
