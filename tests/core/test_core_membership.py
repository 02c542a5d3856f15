"""The live workers of a site and the partition assignment in PostgreSQL (anfang.membership): workers
that join get their share, one that leaves or falls silent gives its partitions back, and a device
announced on the channel is confirmed once its owner records it as served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from process_kit import fresh_postgres_database

from anfang.membership import Membership, announce_device, connect, wait_served
from registry.db import open_database

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_members") as url, open_database(url):  # migrated
        yield url


async def _beat_until(member: Membership, mine: int, timeout: float = 30) -> dict[int, str]:
    """Heartbeat until ``member`` is assigned ``mine`` partitions (others' rows expire on the database's clock)."""
    async with asyncio.timeout(timeout):
        while True:
            assignment = await member.beat()
            if sum(1 for owner in assignment.values() if owner == member.worker) == mine:
                return assignment
            await asyncio.sleep(0.1)  # a heartbeat period: the other worker's row has not expired yet


async def test_workers_share_the_partitions_and_take_back_those_of_one_that_leaves_or_falls_silent(
    pg_url: str,
) -> None:
    async with Membership(pg_url, "youzheng", "a", 6, expiry_s=30) as a:
        assert set((await a.beat()).values()) == {"a"}
        async with Membership(pg_url, "youzheng", "b", 6, expiry_s=30) as b:
            shared = await b.beat()
            assert sorted(shared.values()).count("b") == 3 and sorted(shared.values()).count("a") == 3
            assert await a.beat() == shared  # recomputing moves nothing
        assert set((await a.beat()).values()) == {"a"}  # b left on purpose: no wait for its row to expire
        silent = Membership(pg_url, "youzheng", "c", 6, expiry_s=0.5)
        await silent.__aenter__()
        try:
            await silent.beat()
            assert sum(1 for o in (await a.beat()).values() if o == "c") == 3
            await _beat_until(a, 6)  # c stopped heartbeating (as a SIGKILLed worker does)
        finally:
            await silent.conn.close()  # gone without leaving


async def test_a_device_is_confirmed_once_its_owner_has_recorded_it_as_served(pg_url: str) -> None:
    conn = await connect(pg_url)
    try:
        assert await wait_served(conn, "youzheng", ["door-1"], timeout=30) == {}  # no worker alive: no wait
        async with Membership(pg_url, "youzheng", "a", 2, expiry_s=30) as owner:
            await owner.beat()
            heard = asyncio.Event()
            await owner.listen(heard.set)

            async def serve_when_announced() -> None:
                await heard.wait()
                await owner.record_served(1, ["door-1"])

            serving = asyncio.create_task(serve_when_announced())
            await announce_device(conn, "youzheng")
            assert await wait_served(conn, "youzheng", ["door-1"], timeout=30) == {"door-1": 1}
            await serving
    finally:
        await conn.close()
