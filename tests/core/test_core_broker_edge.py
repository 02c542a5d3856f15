"""Both brokers at the edge: a 64 MiB PUBLISH is refused without the platform's memory growing, a
device is told why a publish of its was refused (embedded broker), and a will may only go where its
device may publish. (A half-open device going offline: test_core_broker_security.)"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from platform_kit import Stack, running_platform
from process_kit import PlatformProcess, add_device, cli
from testkit import Device, Mosquitto, free_port

NOT_AUTHORISED = 135  # paho reports CONNACK 5 "not authorised" as reason code 135


async def _status(stack: Stack, device_id: str, status: str, timeout: float) -> None:
    await stack.platform.wait_until(
        lambda p: (doc := p.cached_twin(device_id)) is not None and doc.status == status, timeout
    )


async def test_a_denied_publish_is_acknowledged_dropped_and_explained_to_the_device(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "amqtt") as stack:
        secret = await stack.add_device("door-acl", "door_lock")
        await stack.add_device("door-other", "door_lock")
        dev = await stack.device("door-acl", secret)
        await dev.subscribe(dev.topic("errors"))
        forged = dev.publish("anfang/youzheng/door-other/twin/reported", {"seq": 1, "state": {}}, raw_topic=True)
        await dev.published(forged)
        _, answer = await dev.expect(r"/errors$")
        assert answer["code"] == 403 and "door-other" in answer["message"]
        assert dev.client.is_connected()
        assert (await stack.platform.twin("door-other")).version == 0


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
async def test_a_will_on_another_devices_topic_is_refused(broker: str, tmp_path: Path) -> None:
    async with running_platform(tmp_path, broker) as stack:
        secret = await stack.add_device("door-w", "door_lock")
        await stack.add_device("door-victim", "door_lock")
        dev = Device(stack.host, stack.port, "door-w", secret, site=stack.site, will=False)
        dev.client.will_set("anfang/youzheng/door-victim/status", "offline", qos=1, retain=True)
        code = await dev.connect()
        dev.close()
        if broker == "amqtt":
            assert code == NOT_AUTHORISED
        # on either broker the forged will never reaches the victim's twin
        if code == 0:
            dev.drop_connection()
        marker = await stack.device("door-w", secret)
        await marker.published(marker.publish("status", "online", retain=True))
        await _status(stack, "door-w", "online", 10)
        assert (await stack.platform.twin("door-victim")).status != "offline"


async def _settled_rss_mib(pid: int, within: float = 30.0) -> float:
    """The process's RSS once it stops moving (four samples half a second apart within 0.5 MiB)."""
    samples: list[float] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        samples.append(_rss_mib(pid))
        if len(samples) >= 4 and max(samples[-4:]) - min(samples[-4:]) < 0.5:
            return samples[-1]
        await asyncio.sleep(0.5)  # sampling a process's memory: there is no event to wait on
    return samples[-1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _connect_packet(client_id: str, user: str, password: str) -> bytes:
    def string(s: str) -> bytes:
        return len(s.encode()).to_bytes(2, "big") + s.encode()

    body = string("MQTT") + bytes([4, 0b11000010]) + (30).to_bytes(2, "big")
    body += string(client_id) + string(user) + string(password)
    return bytes([0x10]) + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _send_huge_publish(port: int, device_id: str, secret: str, topic: str, size: int) -> tuple[bytes, int]:
    """Connect, then stream a QoS 0 PUBLISH of ``size`` payload bytes; returns the CONNACK and how much
    the broker took before closing the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_connect_packet(device_id, device_id, secret))
        connack = sock.recv(4)
        head = len(topic).to_bytes(2, "big") + topic.encode()
        sock.sendall(bytes([0x30]) + _varint(len(head) + size) + head)
        sent, chunk = 0, b"x" * (1 << 20)
        try:
            while sent < size:
                sent += sock.send(chunk[: size - sent])
        except OSError:
            pass  # closed by the broker: what we want
        return connack, sent


@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
async def test_a_64_mib_publish_is_refused_without_the_platform_growing(broker: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update({"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_SITE": "youzheng", "ANFANG_LOG_LEVEL": "INFO"})
    server: Mosquitto | None = None
    if broker == "amqtt":
        env["ANFANG_BROKER_BIND"] = f"127.0.0.1:{port}"
    else:
        env.update({"ANFANG_EMBEDDED_BROKER": "false", "ANFANG_MQTT_PORT": str(port)})
    secret = add_device(env, tmp_path, "door-big", "door_lock")
    if broker == "mosquitto":
        # the configuration `anfang broker mosquitto-config` writes, with its max_packet_size
        cli(
            env,
            tmp_path,
            "broker",
            "mosquitto-config",
            "--out",
            str(tmp_path / "mq"),
            "--listener",
            f"{port} 127.0.0.1",
            "--service-listener",
            "none",  # the platform on the devices' listener (the two apart: test_core_broker_security)
        )
        server = Mosquitto(tmp_path / "mq", port=port)
        server.start(generated=True)
    platform = PlatformProcess(env, tmp_path)
    try:
        platform.start()
        assert platform.proc is not None
        dev = Device("127.0.0.1", port, "door-big", secret, site="youzheng", will=False)
        assert await dev.connect() == 0
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 3}}))
        before = await _settled_rss_mib(platform.proc.pid)  # after start-up's own growth (services warming up)
        started = time.monotonic()
        connack, sent = await asyncio.to_thread(
            _send_huge_publish, port, "door-big", secret, "anfang/youzheng/door-big/twin/reported", 64 << 20
        )
        assert connack == b"\x20\x02\x00\x00"
        assert sent < 64 << 20, "the broker read the whole 64 MiB"
        growth = _rss_mib(platform.proc.pid) - before
        print(f"{broker}: took {sent >> 10} KiB in {time.monotonic() - started:.2f} s, platform RSS +{growth:.1f} MiB")
        assert growth < 20
        # the platform still serves the device (paho reconnects after the other connection took its id)
        await dev.published(dev.publish("twin/reported", {"seq": 2, "state": {"hold_seconds": 4}}), timeout=30)
        dev.close()
    finally:
        platform.stop()
        if server:
            server.stop()
