"""Attempt limits per credential across a partitioned site: counted and locked in the database
(community/credential_limits.py, migration 0088), whichever partition owns the door."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from community_testkit import KEY, NOW, SITE, Community, community_data
from process_kit import fresh_postgres_database
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE

from community.allowlist import EdgeLimits
from community.credential_limits import CredentialLimitStore
from community.crypto import FieldCipher
from community.db import init_db
from community.decisions import Capture
from community.handler import AccessConfig, AccessHandler
from community.importer import import_community
from community.records import AccessRecords
from community.store import CommunityStore
from registry.sql import Sql
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent

LIMITS = EdgeLimits(max_failures=3, window_s=300.0, lockout_s=300.0)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database (SQLite or PostgreSQL), Tortoise initialised on it."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path / 't.db'}"
        await init_db(url)
        yield url
        await Tortoise.close_connections()
        return
    # Tortoise caches compiled INSERTs per (connection name, table), not per dialect (see test_community_postgres)
    EXECUTOR_CACHE.clear()
    async with fresh_postgres_database("anfang_lockout") as url:
        await init_db(url)
        yield url
        await Tortoise.close_connections()
    EXECUTOR_CACHE.clear()


def _store(site: str = SITE) -> CredentialLimitStore:
    return CredentialLimitStore(Sql(Tortoise.get_connection("default")), site, LIMITS)


async def test_refusals_lock_at_max_failures_within_the_window(db_url: str) -> None:
    a, b = _store(), _store()  # two owners of the same site
    assert await a.refused("door-1", "card", "k1", NOW) is None
    assert await b.refused("door-2", "card", "k1", NOW + 1) is None
    assert not await a.locked("card", "k1", NOW + 1)
    lock = await a.refused("door-3", "card", "k1", NOW + 2)
    assert lock is not None and (lock.scope, lock.failures, lock.until) == ("credential", 3, NOW + 302)
    assert lock.credential_key == "k1" and lock.door == "door-3"
    assert await b.locked("card", "k1", NOW + 3) and not await b.locked("card", "k1", NOW + 303)
    assert not await b.locked("pin", "k1", NOW + 3), "per kind"
    assert not await _store("other").locked("card", "k1", NOW + 3), "per site"


async def test_old_refusals_fall_out_a_grant_resets_and_prune_removes(db_url: str) -> None:
    s = _store()
    assert await s.refused("door-1", "pin", "k2", NOW) is None
    assert await s.refused("door-1", "pin", "k2", NOW + 1) is None
    assert await s.refused("door-2", "pin", "k2", NOW + 400) is None, "the first two are outside the window"
    await s.granted("pin", "k2")
    assert await s.refused("door-2", "pin", "k2", NOW + 401) is None
    assert await s.refused("door-2", "pin", "k2", NOW + 402) is None, "the grant reset the count"
    assert await s.refused("door-2", "pin", "k2", NOW + 403) is not None
    assert await s.refused("door-1", "qr", "k3", NOW + 403) is None
    assert await s.prune(NOW + 800) == 2  # the lock that ended and the qr refusal that aged out
    rows = await s.sql.rows("SELECT COUNT(*) AS n FROM access_credential_failures")
    assert int(rows[0]["n"]) == 0


@pytest.mark.postgres
async def test_two_partitions_lock_one_card_site_wide_with_one_alarm(tmp_path: Path) -> None:
    EXECUTOR_CACHE.clear()
    async with fresh_postgres_database("anfang_lockout") as url:
        await init_db(url)
        try:
            await _two_partitions(url)
        finally:
            await Tortoise.close_connections()
            EXECUTOR_CACHE.clear()


async def _two_partitions(url: str) -> None:
    cipher = FieldCipher(KEY)
    store = CommunityStore(cipher, SITE)
    report = await import_community(community_data(), store, now=NOW)
    community = Community(store, AccessRecords(SITE), cipher, report, Path(url), [])

    async def sink(ev: DeviceEvent) -> None:
        community.platform_events.append(ev)

    def owner() -> AccessHandler:  # each partition's owner, with the site-wide credential counts
        return AccessHandler(
            store, community.records, AccessConfig(site=SITE, limits=LIMITS), on_platform_event=sink,
            alarms=community.alarms, credential_limits=_store(),
        )  # fmt: skip

    p0, p1 = owner(), owner()
    actions = RecordingActions(clock=NOW, command_results={"open": {}})

    async def attempt(handler: AccessHandler, door: str, card: str) -> str:
        kind = "vehicle_gate" if door.startswith("gate") else "door_lock"
        decision = await handler.handle_capture(Capture(door, kind, "card", credential=card), actions)
        return "granted" if decision.allowed else decision.reason

    # one wrong card, tried at doors of two partitions: 2 + 1 refusals, under max_failures at each
    assert await attempt(p0, "door-b1-u1", "X9999") == "unknown_card"
    assert await attempt(p1, "door-b2-u1", "X9999") == "unknown_card"
    assert await community.alarms.store.list(kind="access_lockout") == []
    assert await attempt(p0, "gate-north", "X9999") == "unknown_card"
    assert await attempt(p1, "gate-south", "X9999") == "locked_out"
    assert await attempt(p0, "door-b1-u1", "X9999") == "locked_out"
    assert await attempt(p1, "gate-south", "C0001") == "granted", "the doors themselves are not locked"
    [alarm] = await community.alarms.store.list(kind="access_lockout")
    assert alarm.evidence["scope"] == "credential" and "X9999" not in str(alarm.to_json())
    rows = await Sql(Tortoise.get_connection("default")).rows("SELECT key FROM access_credential_locks")
    assert len(rows) == 1 and "X9999" not in rows[0]["key"]
