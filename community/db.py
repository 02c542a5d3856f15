"""Database set-up for the community tables (until/besides the platform's migration runner)."""

from __future__ import annotations

from pathlib import Path

from tortoise import Tortoise

from registry.migrate import MIGRATIONS_DIR, apply_migrations

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


async def init_db(db_url: str, *, global_fallback: bool = False) -> None:
    """Initialise Tortoise for the community models and the registry's (access control reads the site
    model, ``site_models``, for its buildings and device placements) and migrate the schema.

    ``global_fallback`` makes the connection visible to all tasks (needed when it is opened in an ASGI
    lifespan task).
    """
    # The runner opens its own connection and does not understand Tortoise's URL options.
    await apply_migrations(db_url.split("?", 1)[0], MIGRATIONS_DIR)
    modules = ["registry.models", "community.models"]
    await Tortoise.init(db_url=db_url, modules={"models": modules}, _enable_global_fallback=global_fallback)
