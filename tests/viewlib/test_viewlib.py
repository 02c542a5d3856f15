"""Police view library (GA/T 1400) uploads: the objects, the outbox, and the uploader against a stand-in server.

The object builders are pure (hypothesis). The uploader runs for real: the outbox in SQLite or
PostgreSQL, HTTP with digest authentication to :mod:`gat1400_standin` on a free loopback port, which
a test stops and restarts to play a server that is down for a while. Retry intervals are short
settings, and every wait is on the server's or the uploader's own events.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import cv2
import numpy as np
import pytest
from gat1400_standin import StandInServer, object_problems
from hypothesis import given
from hypothesis import strategies as st
from process_kit import PG_ADMIN
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.config import ConfigError, ViewLibSettings, load_settings
from community.crypto import FieldCipher
from registry.db import open_database
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent
from viewlib.client import ViewLibClient
from viewlib.gat1400 import (
    Capture,
    CaptureError,
    build_object,
    capture_from_event,
    jpeg_size,
    list_body,
    parse_statuses,
    shot_time,
)
from viewlib.store import ViewLibOutbox
from viewlib.uploader import ViewLibUploader

SITE = "youzheng"
PLATFORM = "31010400001180000001"
FACE_CAM = "31010400001190000011"
GATE_CAM = "31010400001190000021"
PASSWORD = "s3cret-digest"
TZ = timezone(timedelta(hours=8))
T0 = 1_800_000_000.0


def jpeg(width: int = 64, height: int = 48, shade: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((height, width, 3), shade, np.uint8))
    assert ok
    return bytes(buf)


def capture_event(event_type: str, device: str, image: bytes, **data: Any) -> DeviceEvent:
    payload = {"image_jpeg_b64": base64.b64encode(image).decode(), **data}
    return DeviceEvent(SITE, device, "camera", event_type, uuid.uuid4().hex, T0, payload)


# --- the standard's objects (pure) --------------------------------------------------------------------
@given(
    ts=st.floats(min_value=1e9, max_value=4e9),
    event_id=st.text(min_size=1, max_size=40),
    kind=st.sampled_from(["face", "vehicle", "person"]),
)
def test_objects_carry_the_standards_ids_and_times(ts: float, event_id: str, kind: Any) -> None:
    image = jpeg()
    cap = Capture(kind, FACE_CAM, event_id, ts, image, plate="沪A12345" if kind == "vehicle" else None)
    object_id, obj = build_object(cap, TZ)
    id_field = {"face": "FaceID", "vehicle": "MotorVehicleID", "person": "PersonID"}[kind]
    assert obj[id_field] == object_id and object_problems(obj, id_field) == []
    sub = obj["SubImageList"]["SubImageInfoObject"][0]
    assert object_id.startswith(obj["SourceID"]) and obj["SourceID"] == sub["ImageID"]
    assert sub["ImageID"].startswith(FACE_CAM + "02" + shot_time(ts, TZ))
    assert object_id[41:43] == {"face": "06", "vehicle": "02", "person": "01"}[kind]
    assert base64.b64decode(sub["Data"]) == image and (sub["Width"], sub["Height"]) == (64, 48)
    assert build_object(cap, TZ) == (object_id, obj)  # the same capture always gets the same ids


def test_shot_time_is_local_and_vehicle_fields_follow_the_plate() -> None:
    assert shot_time(0.0, TZ) == "19700101080000"  # UTC+8
    _, with_plate = build_object(Capture("vehicle", GATE_CAM, "e1", T0, jpeg(), "京A99999", 0.93), TZ)
    assert (with_plate["HasPlate"], with_plate["PlateNo"], with_plate["PlateReliability"]) == ("1", "京A99999", "93")
    assert with_plate["PassTime"] == shot_time(T0, TZ)
    _, face = build_object(Capture("face", FACE_CAM, "e2", T0, jpeg(), box=(3, 4, 30, 40)), TZ)
    assert (face["LeftTopX"], face["LeftTopY"], face["RightBtmX"], face["RightBtmY"]) == (3, 4, 30, 40)
    assert face["InfoKind"] == 1 and face["IsSuspectedTerrorist"] == 2
    assert list(list_body("face", [face])) == ["FaceListObject"]


def test_capture_events_are_checked() -> None:
    def cap(data: dict[str, Any], event_type: str = "face_captured") -> Capture | None:
        return capture_from_event(event_type, "e", T0, data, FACE_CAM, max_image_bytes=10_000)

    assert cap({"embedding": [0.1]}) is None  # no image: nothing to upload
    assert cap({"image_jpeg_b64": "x"}, "door_opened") is None
    with pytest.raises(CaptureError, match="not base64"):
        cap({"image_jpeg_b64": "not base64!"})
    with pytest.raises(CaptureError, match="not a JPEG"):
        cap({"image_jpeg_b64": base64.b64encode(b"GIF89a....").decode()})
    with pytest.raises(CaptureError, match="at most"):
        cap({"image_jpeg_b64": "A" * 20_000})
    with pytest.raises(CaptureError, match="box"):
        cap({"image_jpeg_b64": base64.b64encode(jpeg()).decode(), "box": [1, 2, 3]})
    assert jpeg_size(jpeg(640, 360)) == (640, 360) and jpeg_size(b"\xff\xd8\xff") is None


@given(st.binary(max_size=64))
def test_jpeg_size_never_fails_on_garbage(data: bytes) -> None:
    size = jpeg_size(b"\xff\xd8" + data)
    assert size is None or (size[0] > 0 and size[1] > 0)


def test_statuses_single_list_or_none() -> None:
    one = {"ResponseStatusObject": {"Id": "1", "StatusCode": 0, "StatusString": "OK"}}
    many = {"ResponseStatusListObject": {"ResponseStatusObject": [{"Id": "a", "StatusCode": "4"}]}}
    assert [s.ok for s in parse_statuses(one)] == [True]
    assert [(s.id, s.ok) for s in parse_statuses(many)] == [("a", False)]
    assert parse_statuses([]) == [] and parse_statuses({"x": 1}) == []


def test_settings_off_by_default_and_complete_when_on(tmp_path: Path) -> None:
    assert load_settings(environ={}).viewlib.enabled is False
    with pytest.raises(ConfigError, match="no url, device_id, password"):
        load_settings(environ={"ANFANG_VIEWLIB_ENABLED": "true"})
    env = {
        "ANFANG_VIEWLIB_ENABLED": "1",
        "ANFANG_VIEWLIB_URL": "http://127.0.0.1:9",
        "ANFANG_VIEWLIB_DEVICE_ID": PLATFORM,
        "ANFANG_VIEWLIB_PASSWORD": PASSWORD,
    }
    assert load_settings(environ=env).viewlib.password == PASSWORD
    with pytest.raises(ConfigError, match=r"viewlib\.device_id"):
        load_settings(environ={**env, "ANFANG_VIEWLIB_DEVICE_ID": "1234"})
    config = tmp_path / "anfang.yaml"
    config.write_text("viewlib:\n  devices:\n    door-1: '123'\n")
    with pytest.raises(ConfigError, match="door-1"):
        load_settings(config, environ={})


# --- the uploader against the stand-in server ---------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
async def conn(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseDBAsyncClient]:
    if request.param == "sqlite":
        async with open_database(f"sqlite://{tmp_path / 'v.db'}") as c:
            yield c
        return
    name = f"viewlib_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at 127.0.0.1:5432 ({exc})")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        async with open_database(f"postgres://postgres@127.0.0.1:5432/{name}") as c:
            yield c
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def server() -> AsyncIterator[StandInServer]:
    srv = StandInServer(PLATFORM, PASSWORD)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


CIPHER = FieldCipher(b"k" * 32)


def settings_for(srv: StandInServer, **kw: Any) -> ViewLibSettings:
    base: dict[str, Any] = {
        "enabled": True,
        "url": srv.url,
        "device_id": PLATFORM,
        "password": PASSWORD,
        "devices": {"door-1": FACE_CAM, "gate-1": GATE_CAM, "cam-1": FACE_CAM},
        "keepalive_s": 0.2,
        "retry_min_s": 0.05,
        "retry_max_s": 0.3,
        "batch": 3,
    }
    return ViewLibSettings.model_validate({**base, **kw})


class Running:
    """An uploader whose ``run`` is a task, cancelled (and so unregistered) at exit."""

    def __init__(self, conn: BaseDBAsyncClient, settings: ViewLibSettings) -> None:
        assert settings.url is not None and settings.device_id is not None and settings.password is not None
        self.client = ViewLibClient(settings.url, settings.device_id, settings.device_id, settings.password)
        self.uploader = ViewLibUploader(settings, ViewLibOutbox(conn, SITE, CIPHER), self.client, poll_s=0.2)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ViewLibUploader:
        self.task = asyncio.create_task(self.uploader.run(), name="viewlib-test")
        return self.uploader

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task
        await self.client.aclose()


async def until(uploader: ViewLibUploader, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    """Until ``predicate()`` holds, checked after each round of the uploader."""
    async with asyncio.timeout(timeout):
        while not predicate():
            uploader.round_done.clear()
            await uploader.round_done.wait()


async def test_registers_keeps_alive_and_uploads_a_face_and_a_vehicle(
    conn: BaseDBAsyncClient, server: StandInServer
) -> None:
    acts = RecordingActions(clock=T0)
    face_image, car_image = jpeg(120, 160, 40), jpeg(320, 240, 200)
    async with Running(conn, settings_for(server)) as uploader:
        await server.wait_for(lambda: server.registrations == 1 and server.keepalives >= 2)
        await uploader.on_event(capture_event("face_captured", "door-1", face_image, liveness=0.97), acts)
        await uploader.on_event(capture_event("plate_captured", "gate-1", car_image, plate="沪A12345"), acts)
        await uploader.on_event(capture_event("face_captured", "unmapped-door", face_image), acts)
        await server.wait_for(lambda: len(server.received) == 2)
        await until(uploader, lambda: uploader.pending == 0)
    assert server.unregistrations == 1 and server.problems == []
    faces = [o for i, o in server.received.items() if i[41:43] == "06"]
    cars = [o for i, o in server.received.items() if i[41:43] == "02"]
    assert len(faces) == 1 and len(cars) == 1
    assert faces[0]["DeviceID"] == FACE_CAM and cars[0]["PlateNo"] == "沪A12345"
    assert base64.b64decode(faces[0]["SubImageList"]["SubImageInfoObject"][0]["Data"]) == face_image
    assert base64.b64decode(cars[0]["SubImageList"]["SubImageInfoObject"][0]["Data"]) == car_image
    assert (uploader.stored, uploader.delivered, uploader.unmapped) == (2, 2, 1)
    assert await ViewLibOutbox(conn, SITE, CIPHER).pending() == 0  # delivered rows are deleted


async def test_a_server_down_for_a_while_loses_nothing(conn: BaseDBAsyncClient, server: StandInServer) -> None:
    acts = RecordingActions(clock=T0)
    async with Running(conn, settings_for(server)) as uploader:
        await server.wait_for(lambda: server.registrations == 1)
        await server.stop()  # "a minute" of outage, compressed by the short retry settings
        await until(uploader, lambda: not uploader.registered)
        events = [capture_event("face_captured", "door-1", jpeg(shade=i)) for i in range(4)]
        events += [
            capture_event("plate_captured", "gate-1", jpeg(shade=100 + i), plate=f"沪B0000{i}") for i in range(3)
        ]
        events.append(capture_event("person_captured", "cam-1", jpeg(40, 100)))
        for event in events:
            await uploader.on_event(event, acts)
        await until(uploader, lambda: uploader.register_failures >= 3)  # it kept trying while the server was away
        assert await ViewLibOutbox(conn, SITE, CIPHER).pending() == len(events)
        await server.start()  # the same port; the restarted server has forgotten the registration
        await server.wait_for(lambda: len(server.received) == len(events))
        await until(uploader, lambda: uploader.pending == 0)
    assert server.registrations == 2 and set(server.receipts.values()) == {1}
    assert server.problems == []


async def test_a_wrong_password_is_refused_with_a_clear_error(
    conn: BaseDBAsyncClient, server: StandInServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="viewlib")
    async with Running(conn, settings_for(server, password="not-the-password")) as uploader:
        await uploader.on_event(capture_event("face_captured", "door-1", jpeg()), RecordingActions(clock=T0))
        await server.wait_for(lambda: server.refused_logins >= 2)
        await until(uploader, lambda: uploader.auth_refusals >= 2)
        assert not uploader.registered and server.received == {}
    refusals = [r for r in caplog.records if "refused to register" in r.getMessage()]
    assert refusals and refusals[0].levelno == logging.ERROR
    assert "wrong viewlib.username or password" in refusals[0].getMessage()
    assert "not-the-password" not in caplog.text
    assert await ViewLibOutbox(conn, SITE, CIPHER).pending() == 1  # kept for when the password is fixed


async def test_a_restarted_uploader_delivers_pending_captures_once(
    conn: BaseDBAsyncClient, server: StandInServer
) -> None:
    acts = RecordingActions(clock=T0)
    await server.stop()
    async with Running(conn, settings_for(server)) as first:
        for i in range(5):
            await first.on_event(capture_event("face_captured", "door-1", jpeg(shade=i * 10)), acts)
        await until(first, lambda: first.register_failures >= 1)
    assert server.received == {}
    await server.start()
    async with Running(conn, settings_for(server)) as second:
        await server.wait_for(lambda: len(server.received) == 5)
        await until(second, lambda: second.pending == 0)
        await server.wait_for(lambda: server.keepalives >= 2)  # a few more rounds: nothing comes twice
    assert set(server.receipts.values()) == {1} and second.delivered == 5


async def test_the_outbox_holds_images_encrypted(conn: BaseDBAsyncClient, server: StandInServer) -> None:
    image = jpeg(80, 80, 123)
    outbox = ViewLibOutbox(conn, SITE, CIPHER)
    object_id, obj = build_object(Capture("vehicle", GATE_CAM, "e9", T0, image, "京A99999"), TZ)
    await outbox.add("vehicle", object_id, obj, T0)
    rows = await conn.execute_query_dict("SELECT * FROM viewlib_outbox")
    stored = " ".join(str(v) for v in rows[0].values())
    assert "京A99999" not in stored and base64.b64encode(image).decode()[:40] not in stored
    assert re.match(r"v1:", rows[0]["payload"])
    assert [r.obj for r in await outbox.due(T0, 10)] == [obj]
    other_key = ViewLibOutbox(conn, SITE, FieldCipher(b"x" * 32))
    assert await other_key.due(T0, 10) == [] and other_key.unreadable == 1  # unreadable rows are dropped


async def test_a_server_that_keeps_forgetting_the_platform_is_not_hammered(
    conn: BaseDBAsyncClient, server: StandInServer
) -> None:
    server.forgetful = True  # accepts the registration, then answers 401 to everything else
    now = [T0]
    settings = settings_for(server, retry_min_s=30.0, retry_max_s=300.0)
    client = ViewLibClient(server.url, PLATFORM, PLATFORM, PASSWORD)
    uploader = ViewLibUploader(settings, ViewLibOutbox(conn, SITE, CIPHER), client, clock=lambda: now[0])
    try:
        await uploader.on_event(capture_event("face_captured", "door-1", jpeg()), RecordingActions(clock=T0))
        for _ in range(5):  # the clock stands still: every round after the 401 waits for the backoff
            await uploader.step()
        assert server.registrations == 1 and not uploader.registered
        now[0] += 31.0
        await uploader.step()
        assert server.registrations == 2 and uploader.register_failures == 2
        assert await ViewLibOutbox(conn, SITE, CIPHER).pending() == 1
    finally:
        await client.aclose()
