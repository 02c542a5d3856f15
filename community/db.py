"""Database set-up for the community tables (until/besides the platform's migration runner)."""

from __future__ import annotations

import importlib
from pathlib import Path

from tortoise import Tortoise

from registry.migrate import MIGRATIONS_DIR

__all__ = ["MIGRATIONS_DIR", "apply_community_migrations", "init_db"]

_FILES = ("0002_community",)


def _sql_files(postgres: bool, migrations_dir: Path) -> list[Path]:
    out = []
    for stem in _FILES:
        pg = migrations_dir / f"{stem}.postgres.sql"
        out.append(pg if postgres and pg.exists() else migrations_dir / f"{stem}.sql")
    return out


async def apply_community_migrations(db_url: str, migrations_dir: Path = MIGRATIONS_DIR) -> None:
    """Run the community SQL files on the default Tortoise connection (they are idempotent)."""
    conn = Tortoise.get_connection("default")
    for path in _sql_files(db_url.startswith(("postgres", "asyncpg", "psycopg")), migrations_dir):
        await conn.execute_script(path.read_text(encoding="utf-8"))


async def init_db(db_url: str, *, with_registry: bool = False, global_fallback: bool = False) -> None:
    """Initialise Tortoise for the community models and make sure the schema exists.

    Uses the platform runner ``registry.migrate.apply_migrations`` when it is installed, else the
    community migration files alone. ``global_fallback`` makes the connection visible to all tasks
    (needed when it is opened in an ASGI lifespan task).
    """
    runner = None
    try:
        runner = importlib.import_module("registry.migrate")
    except ImportError:
        runner = None
    modules = ["community.models"]
    if with_registry:
        modules.insert(0, "registry.models")
    if runner is not None and hasattr(runner, "apply_migrations"):
        # The runner opens its own connection and does not understand Tortoise's URL options.
        await runner.apply_migrations(db_url.split("?", 1)[0], MIGRATIONS_DIR)
        await Tortoise.init(db_url=db_url, modules={"models": modules}, _enable_global_fallback=global_fallback)
        return
    await Tortoise.init(db_url=db_url, modules={"models": modules}, _enable_global_fallback=global_fallback)
    await apply_community_migrations(db_url)
