"""Workers join and leave a running site (Mosquitto + PostgreSQL, real processes): three workers split
six partitions, a fourth joins and takes its share, then partition 0's holder is SIGKILLed, all while
the devices keep reporting; each partition's owner runs the rules of its doors. Every report is
applied exactly once in per-device order, every event is stored once, each door's alarm is raised
exactly once, by the owner of the door's partition, although the door opens again after the takeover
(the rule's ``cooldown`` is honoured by the partition's new owner), and a device registered during
the test is served from its first message."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from process_kit import (
    PlatformProcess,
    cli,
    document_when,
    fresh_postgres_database,
    partitions_served,
    site_env,
    until,
)
from testkit import Device, Mosquitto, free_port

from anfang.partitions import partition_of
from registry.records import DeviceInfo

PARTITIONS = 6
N = 90  # reports (and events) per device
OPEN_AT = (5, N // 2, N - 5)  # the door opens three times; the alarm is raised once
DOORS = [f"door-b{b}-u{u}" for b in range(1, 4) for u in range(1, 5)]
NEW = "door-b9-u9"
RULE = """
rules:
  - id: door-opened
    description: A unit door opened; tell the police room, once an hour per door.
    when:
      - twin: {kind: door_lock, field: door, to: open}
    cooldown: 1h
    then:
      - raise_alarm: {kind: door_opened, severity: low, subject: "{{ device.id }}", message: "{{ device.id }} open"}
"""

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_rebalance") as url:
        yield url


def _part(device_id: str) -> int:
    return partition_of(DeviceInfo(device_id, "door_lock", name=device_id, site="youzheng"), PARTITIONS)


def _add(env: dict[str, str], cwd: Path, device_id: str) -> tuple[str, str]:
    out = cli(env, cwd, "devices", "add", device_id, "--kind", "door_lock")
    secret = re.search(r"secret: (\S+)", out)
    assert secret, out
    return secret.group(1), out


def _mosquitto_files(env: dict[str, str], cwd: Path) -> None:
    cli(env, cwd, "broker", "mosquitto-config", "--out", str(cwd / "mq"), "--service-listener", "none")


async def test_a_worker_joins_and_the_leader_is_killed_under_load(tmp_path: Path, pg_url: str) -> None:
    assert {_part(d) for d in DOORS} == set(range(PARTITIONS)), "the test needs devices in every partition"
    port = free_port()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "doors.yaml").write_text(RULE)
    env = site_env(
        port,
        pg_url,
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_PARTITIONS": str(PARTITIONS),
            "ANFANG_RULES_DIR": str(tmp_path / "rules"),
        },
    )
    secrets = {door: _add(env, tmp_path, door)[0] for door in DOORS}  # no worker runs yet: no wait
    _mosquitto_files(env, tmp_path)
    broker = Mosquitto(tmp_path / "mq", port=port)
    broker.start()
    workers = [PlatformProcess({**env, "ANFANG_WORKER_INDEX": str(i)}, tmp_path) for i in range(4)]
    devices = [Device("127.0.0.1", port, d, secrets[d], site="youzheng", client_id=d) for d in DOORS]
    conn = await asyncpg.connect("postgresql://" + pg_url.split("://", 1)[1])

    async def fetchval(sql: str, *args: object) -> int:
        return int(await conn.fetchval(sql, *args))

    async def served() -> int:
        return await fetchval("SELECT COUNT(*) FROM served_devices")

    async def cooldowns() -> int:
        return await fetchval("SELECT COUNT(*) FROM rule_timers WHERE key LIKE 'memo|cool|%'")

    async def until_db(count: Callable[[], Awaitable[int]], expected: int, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while True:
                if await count() == expected:
                    return
                await asyncio.sleep(0.1)  # polling the workers' progress through the database

    def shares(procs: list[PlatformProcess]) -> list[int]:
        return sorted(len(partitions_served(p)) for p in procs)

    try:
        for w in workers[:3]:
            w.start(wait_ready=False)
        await until(lambda: shares(workers[:3]) == [2, 2, 2], 180, "three workers serve two partitions each")
        await until_db(served, len(DOORS), 60)  # every session subscribed: the broker keeps messages
        leader = next(w for w in workers[:3] if 0 in partitions_served(w))
        for dev in devices:
            assert await dev.connect() == 0

        infos = []
        new_device: Device | None = None
        new_infos = []
        for i in range(1, N + 1):
            if i == N // 3:
                workers[3].start(wait_ready=False)  # joins while the fleet reports
            if i == N // 2:
                # registered during the test: `devices add` prints the secret once the owner subscribed
                secret, out = await asyncio.to_thread(_add, env, tmp_path, NEW)
                assert "served by partition" in out, out
                await asyncio.to_thread(_mosquitto_files, env, tmp_path)
                broker.reload()
                new_device = Device("127.0.0.1", port, NEW, secret, site="youzheng", client_id=NEW)
                async with asyncio.timeout(30):
                    while True:
                        if await new_device.connect() == 0:
                            break
                        await asyncio.sleep(0.2)  # Mosquitto re-reads its password file after the SIGHUP
                new_infos = [
                    new_device.publish("twin/reported", {"seq": s, "state": {"hold_seconds": s}}) for s in (1, 2, 3)
                ]
            if i == 2 * N // 3:
                await until(lambda: shares(workers) == [1, 1, 2, 2], 120, "the fourth worker took its share")
                leader = next(w for w in workers if 0 in partitions_served(w))
                assert leader is not workers[3]
                # the rule's cooldowns are in the database before the kill
                await until_db(cooldowns, len(DOORS), 60)
                leader.kill()
            for dev in devices:
                door = "open" if i in OPEN_AT else "closed"
                infos.append(dev.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i, "door": door}}))
                infos.append(dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}}))
            await asyncio.sleep(0.02)  # the fleet's pace: the changes of owner happen under load
        for info in [*infos, *new_infos]:
            await devices[0].published(info, timeout=60)  # the broker holds them for the partitions' sessions
        docs = {d: await document_when(port, env, d, N, timeout=180) for d in DOORS}
        new_doc = await document_when(port, env, NEW, 3, timeout=60)
        survivors = [w for w in workers if w is not leader]
        await until(lambda: shares(survivors) == [2, 2, 2], 120, "the survivors serve the leader's partitions")
        alarms = [
            json.loads(r["doc"]) for r in await conn.fetch("SELECT doc FROM alarms WHERE rule_id = 'door-opened'")
        ]
        events = await fetchval("SELECT COUNT(*) FROM device_events WHERE device_id <> $1", NEW)
        holders = await fetchval("SELECT COUNT(DISTINCT holder) FROM partition_owners WHERE holder IS NOT NULL")
    except BaseException:
        for i, w in enumerate(workers):  # what each worker did, for the failure report
            print(f"--- worker {i}\n" + "".join(line for line in w.log[-80:] if "GET /" not in line))
        raise
    finally:
        for dev in [*devices, *([new_device] if new_device else [])]:
            dev.close()
        for w in workers:
            w.stop()
        broker.stop()
        await conn.close()
    for door, doc in docs.items():
        # in order, exactly once: each of the N reports moved the twin one version forward
        assert doc["reported"] == {"hold_seconds": N, "door": "closed"}, door
        assert doc["version"] == N, (door, doc["version"])
    assert new_doc["version"] == 3 and new_doc["reported"] == {"hold_seconds": 3}  # its first message was served too
    stale = [line for w in workers for line in w.log if " 409 " in line]
    assert not stale, stale[:3]
    assert events == N * len(DOORS)
    assert sorted(a["subject"] for a in alarms) == sorted(DOORS)
    # each raised by the owner of its door's partition (most of them not partition 0), once: the rule
    # fired once per door although the doors opened again after the takeovers (the cooldown held)
    raised = [
        (m.group(1), int(m.group(2)))
        for w in workers
        for line in w.log
        if (m := re.search(r"rule door-opened raised an alarm for (\S+) in partition (\d+)", line))
    ]
    assert sorted(raised) == sorted((d, _part(d)) for d in DOORS), raised
    assert all(a["count"] == 1 for a in alarms), [(a["subject"], a["count"]) for a in alarms if a["count"] != 1]
    assert holders == 3
