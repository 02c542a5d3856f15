"""Registry and twin store on SQLite and on the PostgreSQL server (127.0.0.1:5432, trust auth)."""

from __future__ import annotations

import time

import pytest

from broker.acl import Role
from registry.db import open_database
from registry.migrate import apply_migrations
from registry.records import CommandRecord, StoredEvent
from registry.store import Registry, TwinStore
from twins.document import TwinDocument, apply_reported
from twins.errors import BadRequest, NotFound

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def test_migrations_apply_once(db_url: str) -> None:
    first = await apply_migrations(db_url)
    assert first[0] == "0001_core"
    assert await apply_migrations(db_url) == []


async def test_devices_secrets_and_accounts(db_url: str) -> None:
    async with open_database(db_url):
        registry = Registry(hash_iterations=1000)
        secret = await registry.add_device("youzheng", "door-b1-u1", "door_lock", "1栋1单元", (10.0, 20.5))
        assert secret and len(secret) >= 24
        assert await registry.add_device("youzheng", "tag-e001", "rfid_tag") is None  # virtual: no secret
        with pytest.raises(BadRequest, match="already exists"):
            await registry.add_device("youzheng", "door-b1-u1", "door_lock")
        with pytest.raises(BadRequest, match="unknown device kind"):
            await registry.add_device("youzheng", "x1", "toaster")
        with pytest.raises(BadRequest, match="invalid device id"):
            await registry.add_device("youzheng", "Door 1", "door_lock")
        info = await registry.get_device("door-b1-u1")
        assert info is not None and info.position == (10.0, 20.5) and info.name == "1栋1单元"
        identity = await registry.authenticate("door-b1-u1", secret)
        assert identity is not None and identity.role is Role.DEVICE and identity.site == "youzheng"
        assert await registry.authenticate("door-b1-u1", "wrong") is None
        assert await registry.authenticate("tag-e001", "") is None
        rotated = await registry.rotate_secret("door-b1-u1")
        assert await registry.authenticate("door-b1-u1", secret) is None
        assert await registry.authenticate("door-b1-u1", rotated) is not None
        with pytest.raises(NotFound):
            await registry.rotate_secret("nope")
        await registry.ensure_service_account("svc", Role.OPERATOR, "pw")
        op = await registry.authenticate("svc", "pw")
        assert op is not None and op.role is Role.OPERATOR
        assert [d.id for d in await registry.list_devices("youzheng")] == ["door-b1-u1", "tag-e001"]
        hashes = dict((i.username, h) for i, h in await registry.credential_hashes())
        assert rotated not in str(hashes) and hashes["door-b1-u1"].startswith("$7$")


async def test_stored_events_are_found_in_a_batch_of_any_size(db_url: str) -> None:
    async with open_database(db_url) as conn:
        store = TwinStore(conn, postgres=db_url.startswith("postgres"))
        now = time.time()  # on PostgreSQL the look-up searches the last days' partitions (DEDUP_DAYS)
        stored = [StoredEvent(f"reader-{i % 7}", f"seen-{i}", "tag_seen", now, now, {}) for i in range(0, 1200, 3)]
        await store.commit([], stored)
        # 1,200 lookups (several queries), with the same event ids on other devices, which are not stored
        crossed = [("reader-1", "seen-0"), ("reader-0", "seen-3")]
        keys = [(f"reader-{i % 7}", f"seen-{i}") for i in range(1200)] + crossed
        assert await store.seen_events(keys) == {(e.device_id, e.event_id) for e in stored}
        assert await store.seen_events([]) == set()


async def test_twin_store_group_commit_and_stale_guard(db_url: str) -> None:
    async with open_database(db_url) as conn:
        store = TwinStore(conn, postgres=db_url.startswith("postgres"))
        doc = TwinDocument(device_id="door-1", kind="door_lock", site="youzheng")
        v1 = apply_reported(doc, {"lock": "locked"}, now=1, seq=1).document
        v2 = apply_reported(v1, {"lock": "unlocked"}, now=2, seq=2).document
        now = time.time()
        events = [
            StoredEvent("door-1", "e1", "door_forced", now, now, {}),
            StoredEvent("door-1", "e1", "door_forced", now, now, {}),
        ]
        cmd = CommandRecord("c1", "door-1", "open", {"seconds": 5}, "sent", None, 1.0, None)
        await store.commit([v2], events, [cmd])
        await store.commit([v1])  # an older version never overwrites a newer one
        loaded = await store.load("door-1")
        assert loaded == v2
        assert await store.seen_events([("door-1", "e1"), ("door-1", "e2")]) == {("door-1", "e1")}
        await store.commit([], commands=[CommandRecord("c1", "door-1", "open", {}, "ok", {"opened": True}, 1.0, 3.0)])
        stored = await store.command("c1")
        assert stored is not None and stored["status"] == "ok"
        assert [d.device_id for d in await store.load_all()] == ["door-1"]
