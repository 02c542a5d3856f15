"""Opening the database: migrations first, then Tortoise on the same URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient

from registry.migrate import apply_migrations, is_postgres

CORE_MODELS = ("registry.models",)


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
    # tortoise caches generated SQL per connection name: name it after the dialect
    name = "postgres" if is_postgres(db_url) else "sqlite"
    await Tortoise.init(config={
        "connections": {name: url},
        "apps": {"models": {"models": list(models), "default_connection": name}},
    })
    try:
        yield connections.get(name)
    finally:
        await Tortoise.close_connections()
        await Tortoise._reset_apps()  # a later init (another database, as in tests) must rebind the models
