"""A batch commit writes rows in key order and retries what the database aborted only because of a concurrent
writer (deadlock, serialization failure): two workers of one site writing overlapping twins during a hand-off
wait for each other instead of one of them stopping with "deadlock detected"."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from tortoise.exceptions import OperationalError

from registry.db import open_database
from registry.sql import is_transient
from registry.store import Registry, TwinStore
from twins.document import TwinDocument, apply_reported

DEVICES = [f"door-{i:03d}" for i in range(120)]


def _wrapped(exc: BaseException) -> OperationalError:
    try:
        raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        return wrapped


def test_deadlocks_and_serialization_failures_are_transient_other_errors_are_not() -> None:
    assert is_transient(_wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected")))
    assert is_transient(asyncpg.exceptions.SerializationError("could not serialize access"))
    assert not is_transient(_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")))
    assert not is_transient(OSError("connection reset"))


def _docs(step: int, order: list[str]) -> list[TwinDocument]:
    return [
        apply_reported(
            TwinDocument(device_id=d, kind="door_lock", site="youzheng"), {"hold_seconds": step}, now=step, seq=step
        ).document
        for d in order
    ]


async def test_concurrent_commits_of_overlapping_twins_in_opposite_orders_both_land(db_url: str) -> None:
    async with open_database(db_url) as conn:
        store = TwinStore(conn, postgres=db_url.startswith("postgres"))
        registry = Registry(hash_iterations=1000)
        for dev in DEVICES:
            await registry.add_device("youzheng", dev, "door_lock")
        for step in range(1, 11):
            # the old owner's last batch and the new owner's first, touching the same rows in opposite orders
            await asyncio.gather(store.commit(_docs(step, DEVICES)), store.commit(_docs(step, list(reversed(DEVICES)))))
        stored = {t.device_id: t for t in await store.load_all()}
        assert all(stored[d].reported == {"hold_seconds": 10} for d in DEVICES)


async def test_a_batch_the_database_aborted_for_a_deadlock_is_committed_on_retry(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_database(db_url) as conn:
        store = TwinStore(conn, postgres=db_url.startswith("postgres"))
        await Registry(hash_iterations=1000).add_device("youzheng", "door-001", "door_lock")
        once = TwinStore._commit_once
        failures = [_wrapped(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))]

        async def flaky(self: TwinStore, *args: Any) -> None:
            if failures:
                raise failures.pop()
            await once(self, *args)

        monkeypatch.setattr(TwinStore, "_commit_once", flaky)
        await store.commit(_docs(3, ["door-001"]))
        assert [t.reported for t in await store.load_all()] == [{"hold_seconds": 3}]

        failures.append(_wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key")))
        with pytest.raises(OperationalError):  # not transient: the caller learns at once
            await store.commit(_docs(4, ["door-001"]))
