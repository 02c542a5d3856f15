"""The registry, decisions and records on PostgreSQL (a throw-away database per run)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from community_testkit import KEY, NOW, SITE, community_data, noisy, template
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE

from community.crypto import FieldCipher
from community.db import init_db
from community.handler import AccessConfig, AccessHandler
from community.importer import import_community
from community.models import AccessDecisionRow, PersonRow
from community.records import AccessRecords
from community.store import CommunityStore
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent

pytestmark = pytest.mark.postgres
PG = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    # Tortoise caches compiled INSERT statements per (connection name, table), not per dialect: SQL
    # compiled for SQLite ("?" placeholders) by earlier tests would be reused on PostgreSQL and vice versa.
    EXECUTOR_CACHE.clear()
    name = f"anfang_community_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(f"{PG}/test", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{PG}/{name}"
        await init_db(url)
        yield url
        await Tortoise.close_connections()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        EXECUTOR_CACHE.clear()


async def test_registry_and_decisions_on_postgres(pg_url: str) -> None:
    await init_db(pg_url)  # the migration is idempotent
    store, records = CommunityStore(FieldCipher(KEY), SITE), AccessRecords(SITE)
    report = await import_community(community_data(), store, now=NOW)
    assert report.people == 6 and await PersonRow.all().count() == 6
    handler = AccessHandler(
        store,
        records,
        AccessConfig(site=SITE),
        alarms=AlarmManager(SITE, DatabaseAlarmStore(Tortoise.get_connection("default"), SITE)),
    )
    actions = RecordingActions(clock=NOW, command_results={"open": {}})

    def ev(device: str, kind: str, type_: str, data: dict[str, object]) -> DeviceEvent:
        return DeviceEvent(SITE, device, kind, type_, uuid.uuid4().hex, NOW, data)

    await handler.on_event(ev("gate-north", "vehicle_gate", "plate_captured", {"plate": "赣G12345"}), actions)
    await handler.on_event(
        ev("door-b1-u1", "door_lock", "face_captured", {"liveness": 0.9, "embedding": noisy(template(1), 2)}), actions
    )
    await handler.on_event(
        ev("door-b2-u1", "door_lock", "face_captured", {"liveness": 0.9, "embedding": noisy(template(1), 2)}), actions
    )
    _, payload = await store.passes.issue_pass(
        "p-owner", valid_from=NOW - 1, valid_until=NOW + 60, doors=["door-b1-u1"], max_uses=1, now=NOW
    )
    for _ in range(2):
        await handler.on_event(ev("door-b1-u1", "door_lock", "qr_scanned", {"payload": payload}), actions)
    assert [c[0] for c in actions.commands] == ["gate-north", "door-b1-u1", "door-b1-u1"]
    rows = await records.search_decisions(since=NOW - 1)
    assert sorted(r.reason for r in rows) == ["granted", "granted", "granted", "not_entitled_here", "uses_exhausted"]
    assert (await store.people.find_by_phone("13800000001"))[0].id == "p-owner"
    assert (await handler.purge(NOW + 400 * 86400))["decisions"] == 5
    assert await AccessDecisionRow.all().count() == 0
