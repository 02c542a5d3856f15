"""Migration 0059: the access registry's copies of buildings and device placements go, on SQLite and
PostgreSQL; a site that had placements but no stored site model gets one made of them, and every door's
edge-key generation is kept."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import asyncpg
import pytest
from process_kit import fresh_postgres_database

from community.store.places import access_devices
from registry.migrate import MIGRATIONS_DIR, apply_migrations
from twins.site import SiteModel

OLD_ROWS = [
    "INSERT INTO community_buildings (id, site, name, units, floors) VALUES ('b1', 'old', '1栋', 2, 6)",
    "INSERT INTO community_buildings (id, site, name, units, floors) VALUES ('b2', 'old', NULL, 1, 1)",
    "INSERT INTO community_devices (id, site, kind, name, building_id, unit, gate_id, edge_key_epoch) "
    "VALUES ('door-b1-u1', 'old', 'door_lock', '1栋1单元门禁', 'b1', 1, NULL, 3)",
    "INSERT INTO community_devices (id, site, kind, name, building_id, unit, gate_id, edge_key_epoch) "
    "VALUES ('gate-north', 'old', 'vehicle_gate', NULL, NULL, NULL, NULL, 0)",
    "INSERT INTO community_devices (id, site, kind, name, building_id, unit, gate_id, edge_key_epoch) "
    "VALUES ('cam-north-1', 'old', 'camera', '北门抓拍1', NULL, NULL, 'gate-north', 0)",
    # a site whose model was stored keeps it, and its placement rows go
    "INSERT INTO site_models (site, document, version, source, loaded_at) "
    """VALUES ('kept', '{"site": "kept"}', 4, 'site.yaml', 1.0)""",
    "INSERT INTO community_devices (id, site, kind, edge_key_epoch) VALUES ('door-k', 'kept', 'door_lock', 1)",
]


def _before(tmp_path: Path) -> Path:
    before = tmp_path / "migrations"
    before.mkdir()
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0059":
            shutil.copy(path, before / path.name)
    return before


def _check(models: dict[str, tuple[str, int]], epochs: set[tuple[str, str, int]], tables: set[str]) -> None:
    assert models["kept"] == ('{"site": "kept"}', 4)
    document, version = models["old"]
    model = SiteModel.model_validate(json.loads(document))
    assert version == 1
    assert {(b.id, b.name, b.units, b.floors) for b in model.buildings} == {("b1", "1栋", 2, 6), ("b2", "", 1, 1)}
    devices = access_devices(model)
    assert devices["door-b1-u1"].building == "b1" and devices["door-b1-u1"].unit == 1
    assert devices["door-b1-u1"].name == "1栋1单元门禁"
    assert devices["cam-north-1"].gate == "gate-north" and devices["gate-north"].kind == "vehicle_gate"
    assert epochs == {("door-b1-u1", "old", 3), ("door-k", "kept", 1)}
    assert not tables & {"community_devices", "community_buildings"}


async def test_the_migration_keeps_placements_and_edge_keys_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "anfang.sqlite3"
    await apply_migrations(f"sqlite://{db}", _before(tmp_path))
    with sqlite3.connect(db) as conn:
        for sql in OLD_ROWS:
            conn.execute(sql)
    assert "0059_site_placements" in await apply_migrations(f"sqlite://{db}")
    with sqlite3.connect(db) as conn:
        models = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT site, document, version FROM site_models")}
        epochs = set(conn.execute("SELECT device_id, site, epoch FROM community_edge_keys"))
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        seq = dict(conn.execute("SELECT site, seq FROM community_changes"))
        conn.execute("UPDATE site_models SET version = 5 WHERE site = 'kept'")
        assert dict(conn.execute("SELECT site, seq FROM community_changes"))["kept"] > seq.get("kept", 0)
    _check(models, epochs, tables)


@pytest.mark.postgres
async def test_the_migration_keeps_placements_and_edge_keys_on_postgres(tmp_path: Path) -> None:
    async with fresh_postgres_database("anfang_placements") as url:
        await apply_migrations(url, _before(tmp_path))
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            for sql in OLD_ROWS:
                await conn.execute(sql)
            assert "0059_site_placements" in await apply_migrations(url)
            rows = await conn.fetch("SELECT site, document, version FROM site_models")
            models = {r["site"]: (r["document"], r["version"]) for r in rows}
            epochs = {tuple(r) for r in await conn.fetch("SELECT device_id, site, epoch FROM community_edge_keys")}
            tables = {r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables")}
            before = await conn.fetchval("SELECT seq FROM community_changes WHERE site = 'kept'") or 0
            await conn.execute("UPDATE site_models SET version = 5 WHERE site = 'kept'")
            assert await conn.fetchval("SELECT seq FROM community_changes WHERE site = 'kept'") > before
        finally:
            await conn.close()
    _check(models, epochs, tables)
