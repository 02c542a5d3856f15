"""Two workers for one site on Mosquitto and PostgreSQL: the active one is killed mid-stream, the
standby takes the site's lease, resumes the MQTT session, and every report is applied exactly once,
in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from process_kit import PlatformProcess, add_device, document_when, fresh_postgres_database, site_env, start_mosquitto
from testkit import Device, free_port

N = 80


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_workers") as url:
        yield url


@pytest.mark.postgres
async def test_standby_worker_takes_over_and_applies_every_report_once_in_order(tmp_path: Path, pg_url: str) -> None:
    port = free_port()
    env = site_env(port, pg_url, {"ANFANG_DATA_DIR": str(tmp_path / "data")})
    secret = add_device(env, tmp_path, "door-b1-u1", "door_lock")
    broker = start_mosquitto(env, tmp_path, port)
    first, second = PlatformProcess(env, tmp_path), PlatformProcess(env, tmp_path)
    try:
        first.start()
        second.start(wait_ready=False)
        assert await asyncio.to_thread(second.standing_by.wait, 30), "the second worker did not stand by"
        assert not second.ready.is_set()

        dev = Device("127.0.0.1", port, "door-b1-u1", secret, site="youzheng", client_id="door-b1-u1")
        assert await dev.connect() == 0
        infos = []
        for i in range(1, N + 1):
            if i == N // 2:
                await dev.published(infos[-1])
                first.kill()
            infos.append(dev.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i}}))
            infos.append(dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}}))
        for info in infos:
            await dev.published(info, timeout=30)  # the broker holds them for the platform's session
        assert await asyncio.to_thread(second.ready.wait, 30), "the standby did not take over"

        doc = await document_when(port, env, "door-b1-u1", N)
        dev.close()
    finally:
        first.stop()
        second.stop()
        broker.stop()
    # in order and exactly once: each report moved the twin one version forward, none was stale (what the
    # killed worker committed but had not acknowledged comes back flagged DUP: a duplicate, not a 409)
    assert doc["reported"] == {"hold_seconds": N} and doc["version"] == N
    stale = [line for line in first.log + second.log if " 409 " in line]
    assert not stale, stale[:3]
    conn = await asyncpg.connect("postgresql://" + pg_url.split("://", 1)[1])
    try:
        events = await conn.fetchval("SELECT COUNT(*) FROM device_events WHERE device_id = 'door-b1-u1'")
    finally:
        await conn.close()
    assert events == N
