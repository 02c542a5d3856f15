"""The view library upload inside the running platform: device captures over MQTT reach the stand-in server.

The platform runs with every service (``open_services``), the view library settings turned on and
the server down at first: the gate and the door still get their access decisions at once, and the
captures arrive once the server is up.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from community_testkit import template
from gat1400_standin import StandInServer
from platform_kit import ObservedServices, make_settings, running_platform
from test_viewlib import FACE_CAM, GATE_CAM, PASSWORD, PLATFORM, jpeg
from testkit import free_port

from anfang.config import ViewLibSettings

PERSON_CAM = "31010400001190000031"


def _event(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "ts": time.time(), "data": data}


@pytest.mark.timeout(300)
async def test_captures_reach_the_view_library_without_holding_up_decisions(tmp_path: Path) -> None:
    server = StandInServer(PLATFORM, PASSWORD)
    await server.start()
    await server.stop()  # down when the platform starts
    settings = make_settings(tmp_path, embedded=True, port=free_port())
    settings.viewlib = ViewLibSettings(
        enabled=True,
        url=server.url,
        device_id=PLATFORM,
        password=PASSWORD,
        devices={"gate-north": GATE_CAM, "door-b2-u1": FACE_CAM, "cam-lobby": PERSON_CAM},
        retry_min_s=0.05,
        retry_max_s=0.5,
    )
    observed = ObservedServices()
    car, face, person = jpeg(320, 240, 200), jpeg(120, 160, 40), jpeg(100, 240, 90)
    try:
        async with running_platform(tmp_path, "amqtt", observed.factory, settings) as stack:
            gate = await stack.device("gate-north", await stack.add_device("gate-north", "vehicle_gate"))
            door = await stack.device("door-b2-u1", await stack.add_device("door-b2-u1", "door_lock"))
            b64 = base64.b64encode
            await gate.published(
                gate.publish(
                    "events/plate_captured",
                    _event({"plate": "沪A12345", "confidence": 0.95, "image_jpeg_b64": b64(car).decode()}),
                )
            )
            await observed.decision("gate-north", timeout=60)  # decided while the view library is down
            await door.published(
                door.publish(
                    "events/face_captured",
                    _event({"embedding": template(7), "liveness": 0.97, "image_jpeg_b64": b64(face).decode()}),
                )
            )
            await observed.decision("door-b2-u1", timeout=60)
            camera = await stack.device("cam-lobby", await stack.add_device("cam-lobby", "camera"))
            await camera.published(
                camera.publish(
                    "events/person_captured", _event({"image_jpeg_b64": b64(person).decode(), "box": [10, 5, 90, 230]})
                )
            )
            assert server.received == {}
            await server.start()
            await server.wait_for(lambda: len(server.received) == 3, timeout=120)
    finally:
        await server.stop()
    by_type = {object_id[41:43]: obj for object_id, obj in server.received.items()}
    assert by_type["02"]["PlateNo"] == "沪A12345" and by_type["02"]["DeviceID"] == GATE_CAM
    assert by_type["06"]["DeviceID"] == FACE_CAM
    assert by_type["01"]["DeviceID"] == PERSON_CAM and by_type["01"]["RightBtmY"] == 230
    assert base64.b64decode(by_type["06"]["SubImageList"]["SubImageInfoObject"][0]["Data"]) == face
    assert server.problems == [] and set(server.receipts.values()) == {1}
    assert server.unregistrations == 1  # the platform unregistered as it stopped
