"""Recognition end to end through the full platform (``open_services``) and a real broker.

A vehicle gate sends a rendered frame of a car (image only, no plate text) and a unit door sends a face
photo; the platform reads/embeds them with its own ``VisionService``, access control decides against
the community registry, and the device receives ``cmd/open`` — or nothing, for a stranger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from platform_kit import running_platform
from vision_e2e_kit import ObservedServices, camera_jpeg_b64, capture_event, enrolment_template, gate_frame_b64
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_cjk_font,
    fixture_face_dir,
    fixture_face_pipeline,
    fixture_load_face,
)

from community.models import CaptureRow
from community.store.people import NewPerson
from vision.face import FacePipeline
from vision.gallery import DEFAULT_THRESHOLD

REGISTERED, STRANGER_CAR = "赣G12345", "京A99999"


async def _register(obs: ObservedServices, face_pipeline: FacePipeline, load_face: Callable[[str], np.ndarray]) -> None:
    """Building 1 with its door, the north gate, and an owner enrolled by 人证合一 who owns a car."""
    store, now = obs.access.store, time.time()
    plan = {
        "buildings": [{"id": "b1", "name": "1栋"}, {"id": "b2", "name": "2栋"}],
        "devices": [
            {"id": "gate-north", "kind": "vehicle_gate", "name": "北门道闸"},
            {"id": "door-b1-u1", "kind": "door_lock", "name": "1栋1单元门禁", "building": "b1", "unit": 1},
        ],
    }
    await store.places.store_plan(plan, "test")  # the site model places the devices
    await store.places.add_household("h1", "b1", 1, "101")
    await store.places.add_household("h2", "b2", 1, "201")
    await store.people.add_person(
        NewPerson("p-owner", "owner", "h1", face_consent=True), registered_by="p-staff", now=now
    )
    await store.people.add_person(NewPerson("p-b2", "owner", "h2", face_consent=True), registered_by="p-staff", now=now)
    # Templates made offline as `anfang vision enroll` makes them: live photo checked against the ID photo.
    live = enrolment_template(face_pipeline, load_face("obama.jpg"))
    id_photo = enrolment_template(face_pipeline, load_face("obama3.jpg"))
    await store.credentials.enrol_face("p-owner", id_photo, live, operator="p-staff", now=now)
    await store.credentials.add_face_template(
        "p-b2", enrolment_template(face_pipeline, load_face("Tom_Hanks_54745.png")), now=now
    )
    await store.vehicles.add_vehicle(REGISTERED, "p-owner", now=now)


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
async def test_plate_and_face_images_open_gate_and_door_only_for_registered(
    tmp_path: Path,
    broker: str,
    cjk_font: Path,
    face_pipeline: FacePipeline,
    load_face: Callable[[str], np.ndarray],
) -> None:
    obs = ObservedServices()
    async with running_platform(tmp_path, broker, services_factory=obs.factory) as stack:
        await _register(obs, face_pipeline, load_face)
        gate = await stack.device("gate-north", await stack.add_device("gate-north", "vehicle_gate"))
        door = await stack.device("door-b1-u1", await stack.add_device("door-b1-u1", "door_lock"))
        for dev in (gate, door):
            await dev.subscribe(dev.topic("cmd/+"))  # commands, not our own results

        # Gate camera: image only, as the simulator's gate sends it when the camera does no OCR.
        for plate, seed in ((STRANGER_CAR, 3), (REGISTERED, 7)):
            await gate.published(
                gate.publish(
                    "events/plate_captured",
                    capture_event(
                        {
                            "camera": "cam-north-1",
                            "direction": "in",
                            "image_jpeg_b64": gate_frame_b64(plate, seed, cjk_font),
                        }
                    ),
                )
            )
        _, cmd = await gate.expect(r"/cmd/open$", timeout=30)
        assert cmd["args"]["subject"] == "p-owner"
        gate.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {}, "error": None})
        stranger, owner = await obs.next_decisions(2)
        assert (stranger["allowed"], stranger["reason"]) == (False, "unknown_vehicle")
        assert (owner["allowed"], owner["reason"], owner["subject"]) == (True, "granted", "p-owner")
        # The stranger's plate was read from the image (refused as unknown, not as unreadable).
        reads = {row.plate for row in await CaptureRow.filter(device_id="gate-north")}
        assert reads == {STRANGER_CAR, REGISTERED}

        # Door terminal: a different photo of the enrolled owner, and a stranger, both live.
        for name in ("biden.jpg", "obama2.jpg"):
            await door.published(
                door.publish(
                    "events/face_captured",
                    capture_event({"liveness": 0.97, "image_jpeg_b64": camera_jpeg_b64(load_face(name))}),
                )
            )
        _, cmd = await door.expect(r"/cmd/open$", timeout=30)
        assert cmd["args"]["subject"] == "p-owner"
        door.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {}, "error": None})
        stranger, owner = await obs.next_decisions(2)
        assert (stranger["device"], stranger["allowed"], stranger["reason"]) == ("door-b1-u1", False, "unknown_face")
        assert (owner["allowed"], owner["subject"]) == (True, "p-owner")
        assert owner["score"] >= DEFAULT_THRESHOLD > stranger["score"]
        # Only the owner's captures opened anything.
        assert gate.messages.empty() and door.messages.empty()


async def test_burst_of_face_images_at_a_door_is_decided_and_platform_keeps_running(
    tmp_path: Path,
    load_face: Callable[[str], np.ndarray],
) -> None:
    obs = ObservedServices()
    async with running_platform(tmp_path, "mosquitto", services_factory=obs.factory) as stack:
        plan = {
            "buildings": [{"id": "b1"}],
            "devices": [{"id": "door-b1-u1", "kind": "door_lock", "building": "b1", "unit": 1}],
        }
        await obs.access.store.places.store_plan(plan, "test")
        door = await stack.device("door-b1-u1", await stack.add_device("door-b1-u1", "door_lock"))
        photo = camera_jpeg_b64(load_face("biden.jpg"))
        sent = [
            door.publish("events/face_captured", capture_event({"liveness": 0.97, "image_jpeg_b64": photo}))
            for _ in range(20)
        ]
        for info in sent:
            await door.published(info)
        decided = await obs.next_decisions(20, timeout=40)
        assert {(d["allowed"], d["reason"]) for d in decided} == {(False, "unknown_face")}
