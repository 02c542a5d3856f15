"""A partition handed off to another worker drains first (anfang.workers): the platform stops reading
from the broker and what it had read commits and is acknowledged before it disconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from platform_kit import make_settings, running_platform
from testkit import free_port

from anfang.service import Platform
from twins.document import TwinDocument

REPORTS = 300


def _hold_commits(platform: Platform) -> tuple[asyncio.Event, asyncio.Event]:
    """Make the platform's commits wait until the first event is set; the second is set once one waits
    (a batch is in flight and more messages wait behind it)."""
    database_free, read_some = asyncio.Event(), asyncio.Event()
    commit = platform.store.commit

    async def held_commit(twins: Iterable[TwinDocument], *args: Any) -> None:
        read_some.set()
        await database_free.wait()
        await commit(twins, *args)

    platform.store.commit = held_commit  # type: ignore[method-assign,assignment]
    return database_free, read_some


async def test_drain_commits_what_was_read_and_reads_nothing_more(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded=False, port=free_port())
    settings.limits.batch_max = 10
    async with running_platform(tmp_path, "mosquitto", settings=settings) as stack:
        platform = stack.platform
        secret = await stack.add_device("door-b1-u1", "door_lock")
        device = await stack.device("door-b1-u1", secret)
        database_free, read_some = _hold_commits(platform)
        infos = [
            device.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i}}) for i in range(1, REPORTS + 1)
        ]
        await asyncio.wait_for(read_some.wait(), 30)
        draining = asyncio.create_task(platform.drain(60))
        database_free.set()
        drained = await draining
        for info in infos:
            await device.published(info, timeout=30)
        doc = platform.cached_twin("door-b1-u1")
        assert doc is not None
        applied = doc.version
        assert drained >= 0 and 0 < applied <= REPORTS
        assert platform.counters.accepted == applied  # everything read was committed, in order
        assert doc.reported == {"hold_seconds": applied}


async def test_a_drain_that_times_out_still_waits_for_the_batch_being_committed(tmp_path: Path) -> None:
    """The next owner of a handed-off partition must not write the same twins while the old owner's last
    batch is still committing (two writers of the same rows: a deadlock on PostgreSQL)."""
    settings = make_settings(tmp_path, embedded=False, port=free_port())
    settings.limits.batch_max = 10
    async with running_platform(tmp_path, "mosquitto", settings=settings) as stack:
        platform = stack.platform
        secret = await stack.add_device("door-b1-u1", "door_lock")
        device = await stack.device("door-b1-u1", secret)
        database_free, read_some = _hold_commits(platform)
        for i in range(1, 50):
            device.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i}})
        await asyncio.wait_for(read_some.wait(), 30)
        draining = asyncio.create_task(platform.drain(0.01))
        done, _ = await asyncio.wait({draining}, timeout=1.0)
        assert not done, "the drain returned while a batch was still being committed"
        database_free.set()
        await asyncio.wait_for(draining, 30)
        assert platform.counters.accepted > 0  # the batch in flight committed before the drain returned
