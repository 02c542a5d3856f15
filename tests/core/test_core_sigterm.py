"""``anfang run`` stops on SIGTERM (docker stop, systemd, the ``--workers`` supervisor) as it does on Ctrl-C:
its services shut down in order and flush what they hold. Before, the process died on the signal and the
telemetry points still in the writer's memory were lost."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from process_kit import PlatformProcess, add_device
from testkit import Device, free_port


async def test_sigterm_stops_the_platform_cleanly_and_keeps_the_telemetry_it_accepted(tmp_path: Path) -> None:
    port = free_port()
    points = tmp_path / "points.lp"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_SITE": "youzheng",
            "ANFANG_BROKER_BIND": f"127.0.0.1:{port}",
            "ANFANG_TELEMETRY_FILE": str(points),
            "ANFANG_LOG_LEVEL": "INFO",
        }
    )
    secret = add_device(env, tmp_path, "door-b1-u1", "door_lock")
    platform = PlatformProcess(env, tmp_path)
    await asyncio.to_thread(platform.start, 60)
    door = Device("127.0.0.1", port, "door-b1-u1", secret, site="youzheng", client_id="door-b1-u1")
    try:
        assert await door.connect() == 0
        await door.published(door.publish("telemetry", {"metrics": {"battery": 42}}))  # accepted by the platform
    finally:
        door.close()
    assert platform.proc is not None
    platform.proc.terminate()  # SIGTERM right away: the point may still be in the writer's buffer
    assert await asyncio.to_thread(platform.proc.wait, 60) == 0, "".join(platform.log[-30:])
    assert "battery=42" in points.read_text()
