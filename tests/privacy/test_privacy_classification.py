"""docs/privacy.md classifies every table and column the migrations create (issue 15).

The schema is the one ``anfang db upgrade`` leaves behind (every migration in ``migrations/``, SQLite);
a column without a row in the classification table, or a row for a column that no longer exists,
fails here, so the data story stays true as the schema grows.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from registry.migrate import MIGRATIONS_DIR, apply_migrations

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "privacy.md"
CLASSES = {"credential", "biometric", "identity", "location", "operational"}
_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)\.([a-z0-9_]+)`\s*\|\s*([a-z]+)\s*\|(.*)\|\s*$")


def classified() -> dict[tuple[str, str], tuple[str, list[str]]]:
    """(table, column) -> (class, the other cells) from the doc's tables."""
    out: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            key = (m.group(1), m.group(2))
            assert key not in out, f"{key[0]}.{key[1]} is classified twice"
            out[key] = (m.group(3), [c.strip() for c in m.group(4).split("|")])
    return out


async def schema(tmp_path: Path) -> set[tuple[str, str]]:
    db = tmp_path / "schema.db"
    await apply_migrations(f"sqlite://{db}", MIGRATIONS_DIR)
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            (t, str(c[1]))
            for t in tables
            if not t.startswith("sqlite_")
            for c in conn.execute(f'PRAGMA table_info("{t}")')
        }


async def test_every_column_has_a_class(tmp_path: Path) -> None:
    columns = await schema(tmp_path)
    rows = classified()
    missing = sorted(f"{t}.{c}" for t, c in columns - rows.keys())
    assert not missing, f"add these columns to the classification table in docs/privacy.md: {missing}"
    stale = sorted(f"{t}.{c}" for t, c in rows.keys() - columns)
    assert not stale, f"docs/privacy.md classifies columns the schema does not have: {stale}"


def test_every_row_names_class_protection_retention_and_readers() -> None:
    for (table, column), (cls, rest) in classified().items():
        assert cls in CLASSES, f"{table}.{column}: unknown class {cls!r}"
        assert len(rest) == 3 and all(rest), f"{table}.{column}: protection, retention and readers are required"


def test_encrypted_and_hashed_columns_say_how() -> None:
    """``*_enc`` columns are AES-GCM encrypted, ``*_hash`` columns keyed or salted hashes."""
    for (table, column), (_cls, (protection, _retention, _readers)) in classified().items():
        if column.endswith("_enc"):
            assert protection.startswith("AES-GCM"), f"{table}.{column}: {protection}"
        if column.endswith("_hash"):
            assert protection.split()[0] in ("HMAC", "PBKDF2", "SHA-256", "scrypt"), f"{table}.{column}: {protection}"
