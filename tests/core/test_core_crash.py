"""SIGKILL the platform mid-stream and restart it: the twin is intact, every report and event applied once."""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from process_kit import PlatformProcess, add_device, document_when, start_mosquitto
from testkit import Device, Mosquitto, free_port

ANFANG = str(Path(sys.executable).parent / "anfang")
N = 60


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    base.update({"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_SITE": "youzheng", "ANFANG_LOG_LEVEL": "INFO"})
    yield base


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
async def test_sigkill_and_restart_loses_nothing_and_applies_once(
    broker: str, env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    server: Mosquitto | None = None
    if broker == "amqtt":
        env["ANFANG_BROKER_BIND"] = f"127.0.0.1:{port}"
    else:
        env.update({"ANFANG_EMBEDDED_BROKER": "false", "ANFANG_MQTT_PORT": str(port)})
    secret = add_device(env, tmp_path, "door-b1-u1", "door_lock")
    if broker == "mosquitto":
        server = start_mosquitto(env, tmp_path, port)
    platform = PlatformProcess(env, tmp_path)
    try:
        platform.start()
        dev = Device("127.0.0.1", port, "door-b1-u1", secret, site="youzheng", client_id="door-b1-u1", clean=False)
        dev.client.reconnect_delay_set(0.05, 0.5)
        assert await dev.connect() == 0
        infos = []
        for i in range(1, N + 1):
            if i == N // 2:
                await dev.published(infos[-1])
                platform.kill()  # the embedded broker dies with it; the device queues what follows
            infos.append(dev.publish("twin/reported", {"seq": i, "state": {"hold_seconds": i}}))
            infos.append(dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}}))
        platform.start()
        for info in infos:
            await dev.published(info, timeout=30)
        # the device also re-sends a few events (as after a lost PUBACK): they must not count twice
        for i in range(1, 4):
            await dev.published(dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}}))
        doc = await document_when(port, env, "door-b1-u1", N)
        dev.close()
        assert doc["reported"] == {"hold_seconds": N}
        assert doc["version"] == N  # every report applied exactly once: one version step each
    finally:
        platform.stop()
        if server:
            server.stop()
    db = sqlite3.connect(tmp_path / "data" / "anfang.db")
    (count,) = db.execute("SELECT COUNT(*) FROM device_events WHERE device_id = 'door-b1-u1'").fetchone()
    (distinct,) = db.execute("SELECT COUNT(DISTINCT event_id) FROM device_events").fetchone()
    db.close()
    assert count == distinct == N
