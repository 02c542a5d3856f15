"""The Mosquitto configuration the platform generates refuses packets too big for the platform."""

from __future__ import annotations

import asyncio
from pathlib import Path

from testkit import Device, Mosquitto, free_port

from broker.acl import Identity, Role
from broker.credentials import hash_secret
from broker.mosquitto import write_config


async def test_generated_mosquitto_config_closes_a_connection_sending_an_oversized_packet(tmp_path: Path) -> None:
    port = free_port()
    write_config(
        tmp_path, [(Identity("door-1", Role.DEVICE, "youzheng"), hash_secret("s3cret", 1000))], f"{port} 127.0.0.1"
    )
    server = Mosquitto(tmp_path, port=port)
    server.start(generated=True)
    try:
        dev = Device("127.0.0.1", port, "door-1", "s3cret", site="youzheng", will=False)
        gone = asyncio.Event()
        dev.client.on_disconnect = lambda *_: dev.loop.call_soon_threadsafe(gone.set)
        assert await dev.connect() == 0
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"pad": "x" * 200_000}}))
        assert not gone.is_set()
        dev.publish("twin/reported", {"seq": 2, "state": {"pad": "x" * 1_000_000}})
        await asyncio.wait_for(gone.wait(), 30)
        dev.close()
    finally:
        server.stop()
