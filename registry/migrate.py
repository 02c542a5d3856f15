"""Apply the SQL migrations in ``migrations/`` in order, once each, on SQLite or PostgreSQL.

``NNNN_name.sql`` files are applied in name order and recorded in ``schema_migrations``; a file
``NNNN_name.postgres.sql`` replaces ``NNNN_name.sql`` on PostgreSQL.

In a checkout the files are the top-level ``migrations/`` folder; the wheel ships that folder as
``registry/migrations`` (pyproject's ``package-dir``), so an installed platform finds it beside this
module. A folder with no migration in it is an error, never "up to date".
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiosqlite
import asyncpg

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = _HERE / "migrations" if (_HERE / "migrations").is_dir() else _HERE.parent / "migrations"
_CREATE = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"


_MIGRATION_LOCK = 0x616E66616E67  # "anfang": the advisory lock held while migrating


class MigrationError(Exception):
    """A migration failed; the message names the file."""


def make_private(db_file: Path) -> None:
    """Create the SQLite file (and its directory) readable by its owner only, or make it so: it holds
    personal data. SQLite gives its -wal and -shm files the database file's mode."""
    db_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(db_file, os.O_RDWR | os.O_CREAT, 0o600))
    for path in (db_file, db_file.with_name(db_file.name + "-wal"), db_file.with_name(db_file.name + "-shm")):
        if path.exists() and path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)


def sqlite_path(db_url: str) -> str:
    return db_url.split("://", 1)[1]


def is_postgres(db_url: str) -> bool:
    return urlsplit(db_url).scheme in ("postgres", "postgresql", "asyncpg")


def migration_files(directory: Path, postgres: bool) -> list[tuple[str, Path]]:
    """(name, file) pairs in the order they apply."""
    chosen: dict[str, Path] = {}
    for path in sorted(directory.glob("[0-9][0-9][0-9][0-9]_*.sql")):
        if path.name.endswith(".postgres.sql"):
            if postgres:
                chosen[path.name.removesuffix(".postgres.sql")] = path
            continue
        chosen.setdefault(path.name.removesuffix(".sql"), path)
    return sorted(chosen.items())


def _pg_dsn(db_url: str) -> str:
    _scheme, rest = db_url.split("://", 1)
    return "postgresql://" + rest


async def apply_migrations(db_url: str, migrations_dir: Path | None = None) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    directory = migrations_dir or MIGRATIONS_DIR
    postgres = is_postgres(db_url)
    files = migration_files(directory, postgres)
    if not files:
        raise MigrationError(f"no migrations found in {directory} (a broken installation?)")
    applied: list[str] = []
    if postgres:
        conn = await asyncpg.connect(_pg_dsn(db_url))
        try:
            # workers starting together (anfang run --workers N) take turns; the lock ends with the connection
            await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
            await conn.execute(_CREATE)
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, path in files:
                if name in done:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(path.read_text(encoding="utf-8"))
                        await conn.execute(
                            "INSERT INTO schema_migrations(name, applied_at) VALUES ($1, $2)", name, time.time()
                        )
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"{path.name}: {exc}") from exc
                applied.append(name)
        finally:
            await conn.close()
    else:
        path_str = sqlite_path(db_url)
        if path_str != ":memory:":
            make_private(Path(path_str))
        async with aiosqlite.connect(path_str) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(_CREATE)
            async with db.execute("SELECT name FROM schema_migrations") as cur:
                done = {row[0] async for row in cur}
            for name, path in files:
                if name in done:
                    continue
                script = path.read_text(encoding="utf-8")
                record = f"INSERT INTO schema_migrations(name, applied_at) VALUES ('{name}', {time.time()});"
                try:
                    await db.executescript(f"BEGIN;\n{script}\n{record}\nCOMMIT;")
                except aiosqlite.Error as exc:
                    await db.rollback()
                    raise MigrationError(f"{path.name}: {exc}") from exc
                applied.append(name)
    for name in applied:
        log.info("applied migration %s", name)
    return applied
