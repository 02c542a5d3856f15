"""Issue 16 item 1, end to end: two active workers (``anfang run`` processes) on Mosquitto and PostgreSQL.

The site's devices are split between the workers; the leader (partition 0) runs access control. A
visitor pass is revoked through the *other* worker's HTTP API: the very next capture at every door,
whichever worker's partition it is in, is refused. A plate put on the watchlist through the other
worker's API raises the watchlist alarm at the next capture, sent as soon as the add returned.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from process_kit import (
    PlatformProcess,
    add_device,
    cli,
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

# a site of its own: the workers' leases are PostgreSQL advisory locks, shared by every database on the server
SITE = "rv" + uuid.uuid4().hex[:8]
DOORS = ["door-b1-u1", "door-b3-u1"]  # partition 1 and partition 0 of 2
GATE = "gate-north"
COMMUNITY = {
    "site": SITE,
    "buildings": [{"id": "b1", "units": 1}, {"id": "b3", "units": 1}],
    "households": [{"id": "h1", "building": "b1", "unit": 1, "room": "101"}],
    "devices": [
        {"id": "door-b1-u1", "kind": "door_lock", "building": "b1", "unit": 1},
        {"id": "door-b3-u1", "kind": "door_lock", "building": "b3", "unit": 1},
        {"id": GATE, "kind": "vehicle_gate"},
    ],
    "people": [
        {"id": "p-owner", "household": "h1", "role": "owner", "face_consent": False, "card": "C0001"},
        {"id": "p-staff", "household": None, "role": "staff", "face_consent": False, "card": "S0001"},
        {"id": "p-police", "household": None, "role": "police", "face_consent": False, "card": "P0001"},
    ],
}


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_revoke") as url:
        yield url


def _event(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "ts": time.time(), "data": data}


def _token(env: dict[str, str], cwd: Path, person: str) -> str:
    return str(json.loads(cli(env, cwd, "community", "token", "create", person))["token"])


async def _decisions(api: httpx.AsyncClient, token: str, door: str, count: int) -> list[dict[str, Any]]:
    """The door's decisions, oldest first, once there are ``count`` of them."""
    async with asyncio.timeout(30):
        while True:
            r = await api.get("/decisions", params={"device": door}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
            if len(rows := r.json()) >= count:
                return list(reversed(rows))
            await asyncio.sleep(0.1)  # the leader records the decision after its open command is answered


@pytest.mark.postgres
@pytest.mark.timeout(300)  # two workers start one after the other and balance on a shared 2-core machine
async def test_pass_revoked_through_another_worker_is_refused_at_the_next_capture_on_every_door(
    tmp_path: Path, pg_url: str
) -> None:
    parts = {partition_of(DeviceInfo(d, "door_lock", name=d, site=SITE), 2) for d in DOORS}
    assert parts == {0, 1}, "the test needs a door in each partition"
    port = free_port()
    env = site_env(
        port,
        pg_url,
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_PARTITIONS": "2",
            "ANFANG_WORKERS": "2",
            "ANFANG_SITE": SITE,
        },
    )
    secrets = {d: add_device(env, tmp_path, d, "door_lock") for d in DOORS}
    secrets[GATE] = add_device(env, tmp_path, GATE, "vehicle_gate")
    (tmp_path / "community.yaml").write_text(yaml.safe_dump(COMMUNITY, allow_unicode=True), encoding="utf-8")
    cli(env, tmp_path, "community", "import", str(tmp_path / "community.yaml"))
    staff, police = _token(env, tmp_path, "p-staff"), _token(env, tmp_path, "p-police")
    broker = start_mosquitto(env, tmp_path, port)
    first = PlatformProcess({**env, "ANFANG_WORKER_INDEX": "0"}, tmp_path)
    second = PlatformProcess({**env, "ANFANG_WORKER_INDEX": "1"}, tmp_path)
    other = first
    devices = {d: Device("127.0.0.1", port, d, s, site=SITE, client_id=d) for d, s in secrets.items()}
    watcher = Device("127.0.0.1", port, *operator_credentials(env), site=SITE, client_id="watcher", will=False)
    try:
        first.start()
        second.start()
        # the first worker took both partitions; the assignment gives the second one of them
        await until(lambda: len(partitions_served(first)) == len(partitions_served(second)) == 1, 60, "balanced")
        other = second if partitions_served(first) == {0} else first  # not the leader: no access control
        assert other.api_port is not None
        assert await watcher.connect() == 0
        await watcher.subscribe(f"anfang/{SITE}/alarms/#")
        for dev in devices.values():
            assert await dev.connect() == 0
            await dev.subscribe(dev.topic("cmd/#"))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{other.api_port}", timeout=10) as api:
            now = time.time()
            r = await api.post(
                "/passes",
                json={"valid_from": now - 60, "valid_until": now + 3600, "doors": DOORS, "max_uses": 50},
                headers={"Authorization": f"Bearer {staff}"},
            )
            assert r.status_code == 201, r.text
            visitor = r.json()
            for door in DOORS:  # the pass opens both doors ...
                dev = devices[door]
                dev.publish("events/qr_scanned", _event({"payload": visitor["payload"]}))
                _, cmd = await dev.expect(r"/cmd/open$", timeout=30)
                dev.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {}, "error": None})
            for door in DOORS:
                assert [d["allowed"] for d in await _decisions(api, staff, door, 1)] == [True]

            # ... is revoked through the worker that does not run access control ...
            r = await api.delete(f"/passes/{visitor['id']}", headers={"Authorization": f"Bearer {staff}"})
            assert r.status_code == 204, r.text
            for door in DOORS:  # ... and the very next capture at every door is refused
                await devices[door].published(
                    devices[door].publish("events/qr_scanned", _event({"payload": visitor["payload"]}))
                )
            for door in DOORS:
                after = (await _decisions(api, staff, door, 2))[1:]
                assert [(d["allowed"], d["reason"]) for d in after] == [(False, "revoked")], door

            # a plate put on the watchlist through the other worker: the next sighting raises the alarm
            r = await api.post(
                "/watchlist",
                json={"kind": "plate", "plate": "赣G88888", "reason": "stolen vehicle"},
                headers={"Authorization": f"Bearer {police}"},
            )
            assert r.status_code == 201, r.text
            gate = devices[GATE]
            gate.publish("events/plate_captured", _event({"plate": "赣G88888", "confidence": 0.96}))
            async with asyncio.timeout(30):
                while True:
                    _, alarm = await watcher.expect(r"/alarms/", timeout=30)
                    if alarm.get("kind") == "watchlist_match":
                        break
        assert alarm["data"]["list_reason"] == "stolen vehicle" and alarm["evidence"]["device"] == GATE
        opened_after_revoke = [t for t in (devices[d].seen for d in DOORS) for t in t if t.endswith("/cmd/open")]
        assert len(opened_after_revoke) == len(DOORS), "one open per door, before the revocation only"
    finally:
        for dev in [*devices.values(), watcher]:
            dev.close()
        first.stop()
        second.stop()
        broker.stop()
