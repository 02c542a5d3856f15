"""A backlog stays with the broker, not in the platform's memory: when more than the inbox size
waits for the database, the platform stops reading from its socket until the backlog halves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from platform_kit import make_settings, running_platform
from testkit import free_port

from anfang.service import Platform
from twins.document import TwinDocument

INBOX = 50
REPORTS = 5000


async def test_a_held_database_leaves_the_backlog_with_the_broker_and_loses_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded=False, port=free_port())
    settings.limits.ingest_queue, settings.limits.batch_max = INBOX, 10
    async with running_platform(tmp_path, "mosquitto", settings=settings) as stack:
        secret = await stack.add_device("door-b1-u1", "door_lock")
        device = await stack.device("door-b1-u1", secret)
        database_free = asyncio.Event()
        commit = stack.platform.store.commit

        async def held_commit(twins: Iterable[TwinDocument], *args: Any) -> None:
            await database_free.wait()
            await commit(twins, *args)

        stack.platform.store.commit = held_commit  # type: ignore[method-assign]
        paused = asyncio.Event()
        pause_reading = stack.platform.link.pause_reading

        def watched_pause(flag: bool) -> None:
            if flag:
                paused.set()
            pause_reading(flag)

        stack.platform.link.pause_reading = watched_pause  # type: ignore[method-assign]
        infos = [
            device.publish("twin/reported", {"seq": i, "state": {"hold_seconds": 1 + i % 599}})
            for i in range(1, REPORTS + 1)
        ]
        for info in infos:
            await device.published(info, timeout=30)  # all with the broker now
        await asyncio.wait_for(paused.wait(), 10)
        database_free.set()

        def applied(platform: Platform) -> bool:
            doc = platform.cached_twin("door-b1-u1")
            return doc is not None and doc.version == REPORTS

        try:
            await stack.platform.wait_until(applied, timeout=60)
        except TimeoutError:
            doc = stack.platform.cached_twin("door-b1-u1")
            raise AssertionError(
                f"twin at version {doc and doc.version}; {stack.platform.counters.as_json()}"
            ) from None
        doc = await stack.platform.twin("door-b1-u1")
    assert doc.reported["hold_seconds"] == 1 + REPORTS % 599 and doc.version == REPORTS  # every report, in order
    # it read past the limit only what the broker had in flight to it (its receive maximum, or Mosquitto's
    # max_inflight_messages of 1,000 once a password-file reload re-applied the configuration to connected
    # clients) and what was already in its socket buffer, never the whole backlog
    assert stack.platform.counters.inbox_peak < REPORTS // 2, stack.platform.counters.inbox_peak
