"""Several *active* workers for one site (Mosquitto + PostgreSQL): the site's devices are split
into partitions, each served by one worker; partition 0's worker (the leader) runs the rules. One
worker is killed mid-stream; the other takes its partition over, and every report is applied
exactly once, in order, with the rules still seeing every twin change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from process_kit import (
    PlatformProcess,
    add_device,
    document_when,
    fresh_postgres_database,
    operator_credentials,
    partitions_served,
    site_env,
    start_mosquitto,
    until,
)
from testkit import Device, free_port

from anfang.partitions import partition_of
from registry.records import DeviceInfo

N = 60
DOORS = ["door-b1-u1", "door-b1-u2", "door-b2-u1", "door-b2-u2", "door-b3-u1", "door-b3-u2"]
RULE = """
rules:
  - id: door-opened
    description: A unit door opened; lock it again and tell the police room.
    when:
      - twin: {kind: door_lock, field: door, to: open}
    then:
      - raise_alarm: {kind: door_opened, severity: low, subject: "{{ device.id }}", message: "{{ device.id }} open"}
      - set_desired: {device: "{{ device.id }}", patch: {lock: locked}}
"""


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_parts") as url:
        yield url


async def served(pg_url: str, devices: list[str], timeout: float = 60) -> None:
    """Wait until the owners of these devices' partitions have subscribed to them (``served_devices``)."""
    conn = await asyncpg.connect("postgresql://" + pg_url.split("://", 1)[1])
    try:

        async def count() -> int:
            return int(await conn.fetchval("SELECT COUNT(*) FROM served_devices WHERE device_id = ANY($1)", devices))

        async with asyncio.timeout(timeout):
            while True:
                if await count() == len(devices):
                    return
                await asyncio.sleep(0.1)  # polling the workers' progress through the database
    finally:
        await conn.close()


def _partition(device_id: str) -> int:
    return partition_of(DeviceInfo(device_id, "door_lock", name=device_id, site="youzheng"), 2)


@pytest.mark.postgres
@pytest.mark.timeout(300)  # four processes start one after the other on a shared 2-core machine
async def test_two_active_workers_split_a_site_and_survive_one_of_them_dying(tmp_path: Path, pg_url: str) -> None:
    assert {_partition(d) for d in DOORS} == {0, 1}, "the test needs devices in both partitions"
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "doors.yaml").write_text(RULE)
    env = site_env(
        port,
        pg_url,
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_PARTITIONS": "2",
            "ANFANG_WORKERS": "2",
            "ANFANG_RULES_DIR": str(tmp_path / "rules"),
        },
    )
    secrets = {door: add_device(env, tmp_path, door, "door_lock") for door in DOORS}
    broker = start_mosquitto(env, tmp_path, port)
    first = PlatformProcess({**env, "ANFANG_WORKER_INDEX": "0"}, tmp_path)
    second = PlatformProcess({**env, "ANFANG_WORKER_INDEX": "1"}, tmp_path)
    leader = other = first
    devices = [Device("127.0.0.1", port, d, secrets[d], site="youzheng", client_id=d) for d in DOORS]
    police = Device("127.0.0.1", port, *operator_credentials(env), site="youzheng", client_id="police", will=False)
    try:
        first.start()
        second.start()
        # the first worker took both partitions; the assignment gives the second one of them
        await until(lambda: len(partitions_served(first)) == len(partitions_served(second)) == 1, 60, "balanced")
        leader, other = (first, second) if partitions_served(first) == {0} else (second, first)
        await served(pg_url, DOORS)  # both partitions' sessions subscribed: the broker keeps their messages
        assert await police.connect() == 0
        await police.subscribe("anfang/youzheng/alarms/#")
        for dev in devices:
            assert await dev.connect() == 0
        infos = []
        for i in range(1, N + 1):
            if i == N // 2:
                for info in infos[-len(devices) * 2 :]:
                    await devices[0].published(info)
                other.kill()
            for dev in devices:
                door = "open" if i == 5 else "closed"
                infos.append(dev.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i, "door": door}}))
                infos.append(dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}}))
        for info in infos:
            await devices[0].published(info, timeout=30)  # the broker holds them for the partitions' sessions
        docs = {
            d: await document_when(port, env, d, N, timeout=60, until=lambda doc: doc["desired"] == {"lock": "locked"})
            for d in DOORS
        }
        alarmed: set[str] = set()
        async with asyncio.timeout(30):
            while alarmed != set(DOORS):
                _, alarm = await police.expect(r"/alarms/")
                alarmed.add(alarm["subject"])
    finally:
        for dev in [*devices, police]:
            dev.close()
        first.stop()
        second.stop()
        broker.stop()
    assert partitions_served(leader) == {0, 1}, "the leader did not take partition 1 over"
    for door, doc in docs.items():
        # each of the N reports moved the twin one version forward, plus the rule's desired lock
        assert doc["reported"] == {"hold_seconds": N, "door": "closed"}, door
        assert doc["version"] == N + 1, (door, doc["version"])
    stale = [line for line in leader.log + other.log if " 409 " in line]
    assert not stale, stale[:3]
    conn = await asyncpg.connect("postgresql://" + pg_url.split("://", 1)[1])
    try:
        events = await conn.fetchval("SELECT COUNT(*) FROM device_events")
        left_in_feed = await conn.fetchval("SELECT COUNT(*) FROM twin_feed")
    finally:
        await conn.close()
    assert events == N * len(DOORS)
    assert left_in_feed == 0  # the leader took every change the other partition wrote
