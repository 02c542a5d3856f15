"""SIGKILL Mosquitto under QoS 1 load and restart it.

With the configuration ``anfang broker mosquitto-config`` generates (sessions saved every few seconds),
every report the restarted broker acknowledged is applied, also those the devices resent. Without any
saved session, the platform subscribes again by itself instead of staying connected and deaf.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from process_kit import PlatformProcess, add_device, cli, document_when
from testkit import Device, Mosquitto, free_port, mosquitto

from anfang.mqtt_link import MqttLink

DEVICES = ("door-c1", "door-c2", "door-c3")
N = 120  # events per device; the broker dies after a third of them


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_SITE": "youzheng",
            "ANFANG_LOG_LEVEL": "INFO",
            "ANFANG_EMBEDDED_BROKER": "false",
            "ANFANG_MQTT_PORT": str(port),
        }
    )
    return env


def _watch_disconnect(dev: Device) -> asyncio.Event:
    """Set once paho has read everything the dead broker sent and noticed the connection is gone."""
    gone = asyncio.Event()

    def on_disconnect(*_: Any) -> None:
        dev.loop.call_soon_threadsafe(gone.set)

    dev.client.on_disconnect = on_disconnect
    return gone


def _saved_after(db: Path, since: float) -> None:
    """Wait until Mosquitto's autosave has written its database after ``since``."""
    deadline = time.monotonic() + 60
    while not (db.exists() and db.stat().st_mtime > since + 0.01):
        assert time.monotonic() < deadline, "Mosquitto saved nothing within 60 s"
        time.sleep(0.2)  # Mosquitto announces no save; its file is all there is to watch


@pytest.mark.timeout(300)
async def test_mosquitto_crash_loses_no_report_the_restarted_broker_acknowledged(tmp_path: Path) -> None:
    port, device_port = free_port(), free_port()  # the platform's (service) listener, the devices'
    env = _env(tmp_path, port)
    secrets = {d: add_device(env, tmp_path, d, "door_lock") for d in DEVICES}
    listeners = ["--listener", f"{device_port} 127.0.0.1", "--service-listener", f"{port} 127.0.0.1"]
    cli(env, tmp_path, "broker", "mosquitto-config", "--out", str(tmp_path / "mq"), *listeners)
    server = Mosquitto(tmp_path / "mq", port=port)
    server.start(generated=True)
    platform = PlatformProcess(env, tmp_path)
    devices: dict[str, Device] = {}
    try:
        platform.start()
        # the platform's session must be in a save, or it dies with the broker
        await asyncio.to_thread(_saved_after, tmp_path / "mq" / "data" / "mosquitto.db", time.time())
        for d in DEVICES:
            dev = Device("127.0.0.1", device_port, d, secrets[d], site="youzheng", client_id=d, clean=False)
            dev.client.reconnect_delay_set(0.05, 0.5)
            assert await dev.connect() == 0
            devices[d] = dev
        gone = {d: _watch_disconnect(dev) for d, dev in devices.items()}
        sent: dict[tuple[str, int], str] = {}
        acked_by_old: dict[str, set[int]] = {}
        infos = []
        for i in range(1, N + 1):
            for d, dev in devices.items():
                info = dev.publish("events/door_opened", {"id": f"open-{i}", "data": {"by": "access"}})
                sent[(d, info.mid)] = f"open-{i}"
                infos.append((dev, info))
            if i == N // 3:
                server.kill()
                for event in gone.values():
                    await asyncio.wait_for(event.wait(), 30)
                # what the old broker acknowledged may die with it; everything acknowledged later must not
                acked_by_old = {d: set(dev._acked) for d, dev in devices.items()}
                server.start(generated=True)
            if i % 10 == 0:
                await asyncio.sleep(0.01)  # a steady stream, not one burst
        for dev, info in infos:
            await dev.published(info, timeout=120)
        for d, dev in devices.items():
            await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 7}}), timeout=60)
            doc = await document_when(port, env, d, 1, timeout=120)
            assert doc["reported"] == {"hold_seconds": 7}
        expected = {
            (d, event_id)
            for (d, mid), event_id in sent.items()
            if mid in devices[d]._acked and mid not in acked_by_old[d]
        }
        assert len(expected) >= len(DEVICES) * (N - N // 3)
    finally:
        for dev in devices.values():
            dev.close()
        platform.stop()
        server.stop()
    db = sqlite3.connect(tmp_path / "data" / "anfang.db")
    applied = set(db.execute("SELECT device_id, event_id FROM device_events").fetchall())
    db.close()
    missing = sorted(expected - applied)
    assert not missing, f"{len(missing)} acknowledged reports never applied, e.g. {missing[:5]}"


async def test_link_subscribes_again_when_the_restarted_broker_kept_no_session(tmp_path: Path) -> None:
    with mosquitto(tmp_path, anonymous=True) as server:  # "persistence false": a restart forgets every session
        received: asyncio.Queue[str] = asyncio.Queue()

        async def handler(topic: str, payload: bytes, retained: bool, reply_to: object) -> None:
            received.put_nowait(payload.decode())

        link = MqttLink(host="127.0.0.1", port=server.port, client_id="platform", username="", password="", mqtt5=True)
        await link.start(["t/#"], handler)
        try:
            await asyncio.wait_for(link.wait_subscribed(), 30)
            server.kill()
            server.start(anonymous=True)
            probe = Device("127.0.0.1", server.port, "probe", "", will=False)
            assert await probe.connect() == 0
            # retained: delivered whenever the platform's subscription arrives, so no race with its reconnect
            await probe.published(probe.publish("t/after-crash", "hello", retain=True, raw_topic=True))
            probe.close()
            assert await asyncio.wait_for(received.get(), 60) == "hello"
            assert link.resubscribed == 1 and link.state() == "ok"
        finally:
            await link.stop()
