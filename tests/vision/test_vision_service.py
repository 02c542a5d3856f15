"""VisionService and VisionHandler: recognition off the event loop, enrolment, event integration."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_cjk_font,
    fixture_face_dir,
    fixture_face_pipeline,
    fixture_load_face,
    fixture_plate_reader,
)

from rules.recording import RecordingActions
from twins.hooks import DeviceEvent
from vision.enroll import AmbiguousFaceError, IdentityMismatchError
from vision.face import FacePipeline, NoFaceError
from vision.handler import VisionHandler, recognition_topic, recognize_event
from vision.images import ImageDecodeError, ImageTooLargeError, encode_jpeg
from vision.plate_synth import SceneParams, render_scene
from vision.plates import PlateReader
from vision.service import VisionBusyError, VisionService

Loader = Callable[[str], np.ndarray]


def _jpeg(img: np.ndarray, max_side: int = 800) -> bytes:
    scale = min(1.0, max_side / max(img.shape[:2]))
    if scale < 1.0:
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return encode_jpeg(img, 90)


@pytest.fixture
async def service(face_pipeline: FacePipeline, plate_reader: PlateReader) -> AsyncIterator[VisionService]:
    async with VisionService(workers=2, faces=face_pipeline, plates=plate_reader) as svc:
        await svc.warm_up()
        yield svc


def _event(kind: str, type_: str, data: dict[str, object], eid: str = "e1") -> DeviceEvent:
    return DeviceEvent(site="s1", device_id="gate-1", kind=kind, type=type_, id=eid, ts=1.0, data=data)


async def test_enrol_then_identify(service: VisionService, load_face: Loader) -> None:
    enrolment = await service.enroll("obama", _jpeg(load_face("obama.jpg")), _jpeg(load_face("obama2.jpg")))
    assert enrolment.id_score > 0.5 and enrolment.template.shape == (128,)
    ident = await service.identify_face(_jpeg(load_face("obama3.jpg")))
    assert ident.match.subject == "obama"
    stranger = await service.identify_face(_jpeg(load_face("biden.jpg")))
    assert stranger.match.subject is None


async def test_enrolment_refused_when_photo_is_not_the_id_card_person(
    service: VisionService, load_face: Loader
) -> None:
    with pytest.raises(IdentityMismatchError) as info:
        await service.enroll("mallory", _jpeg(load_face("biden.jpg")), _jpeg(load_face("obama.jpg")))
    assert info.value.subject == "mallory" and info.value.score < info.value.threshold
    assert "mallory" not in service.gallery
    with pytest.raises(AmbiguousFaceError):
        await service.enroll("crowd", _jpeg(load_face("t1.jpg")), _jpeg(load_face("t1.jpg")))
    with pytest.raises(NoFaceError):
        blank = _jpeg(np.full((200, 200, 3), 80, np.uint8))
        await service.enroll("nobody", blank, _jpeg(load_face("obama.jpg")))


async def test_bad_images_rejected_with_clear_errors(service: VisionService) -> None:
    with pytest.raises(ImageTooLargeError) as info:
        await service.identify_face(b"\xff" * (service.max_image_bytes + 1))
    assert info.value.limit == service.max_image_bytes
    with pytest.raises(ImageDecodeError):
        await service.identify_face(b"not a jpeg")


async def test_recognition_does_not_stall_the_event_loop(service: VisionService, load_face: Loader) -> None:
    """Small tasks keep flowing on the loop while frames are recognised in the worker pool."""
    frames = [_jpeg(load_face(n)) for n in ["obama.jpg", "obama2.jpg", "t1.jpg", "biden.jpg"]]
    worst = 0.0
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst, ticks
        while not done.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            worst = max(worst, time.perf_counter() - t0 - 0.005)
            ticks += 1

    async def work() -> None:
        try:
            await asyncio.gather(*(service.identify_face(f) for f in frames * 2))
        finally:
            done.set()

    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker())
        tg.create_task(work())
    assert ticks >= 5
    assert worst < 0.15, f"event loop stalled for {worst * 1000:.0f} ms"


async def test_backlog_is_bounded(face_pipeline: FacePipeline, plate_reader: PlateReader, load_face: Loader) -> None:
    async with VisionService(workers=1, max_pending=2, faces=face_pipeline, plates=plate_reader) as svc:
        jpeg = _jpeg(load_face("obama.jpg"))
        results = await asyncio.gather(*(svc.identify_face(jpeg) for _ in range(5)), return_exceptions=True)
        busy = [r for r in results if isinstance(r, VisionBusyError)]
        assert len(busy) == 3 and busy[0].limit == 2
        assert svc.pending == 0


async def test_events_with_embedding_text_or_image(service: VisionService, load_face: Loader, cjk_font: Path) -> None:
    await service.enroll("obama", _jpeg(load_face("obama.jpg")), _jpeg(load_face("obama2.jpg")))
    emb = (await service.embed_face(_jpeg(load_face("obama3.jpg")))).tolist()
    by_embedding = await recognize_event(
        service, _event("door_lock", "face_captured", {"liveness": 0.9, "embedding": emb})
    )
    assert by_embedding is not None and by_embedding.subject == "obama" and by_embedding.source == "embedding"
    b64 = base64.b64encode(_jpeg(load_face("obama_partial_face.jpg"))).decode()
    by_image = await recognize_event(
        service, _event("camera", "face_captured", {"liveness": 0.9, "image_jpeg_b64": b64})
    )
    assert by_image is not None and by_image.subject == "obama" and by_image.source == "image"

    registered = ["赣G12345", "粤B54321"]
    by_text = await recognize_event(
        service,
        _event("vehicle_gate", "plate_captured", {"camera": "c1", "direction": "in", "plate": "湘G·12345"}),
        registered,
    )
    assert by_text is not None and by_text.plate == "赣G12345" and by_text.plate_read == "湘G12345"
    frame = render_scene("粤B54321", random.Random(5), SceneParams(brightness=(0.8, 1.0)), cjk_font)
    plate_b64 = base64.b64encode(encode_jpeg(frame)).decode()
    by_frame = await recognize_event(
        service,
        _event("vehicle_gate", "plate_captured", {"camera": "c1", "direction": "in", "image_jpeg_b64": plate_b64}),
        registered,
    )
    assert by_frame is not None and by_frame.plate == "粤B54321" and by_frame.source == "image"
    too_big = base64.b64encode(b"\0" * (service.max_image_bytes + 10)).decode()
    refused = await recognize_event(service, _event("camera", "face_captured", {"image_jpeg_b64": too_big}))
    assert refused is not None and refused.error is not None and "exceeds" in refused.error
    assert await recognize_event(service, _event("door_lock", "door_forced", {})) is None


async def test_handler_publishes_recognitions(service: VisionService, load_face: Loader) -> None:
    await service.enroll("obama", _jpeg(load_face("obama.jpg")), _jpeg(load_face("obama2.jpg")))
    emb = (await service.embed_face(_jpeg(load_face("obama3.jpg")))).tolist()
    handler = VisionHandler(service, registered_plates=lambda: ["赣G12345"], queue_size=2, consumers=1)
    actions = RecordingActions()
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(handler.run())
        await handler.on_event(_event("door_lock", "face_captured", {"embedding": emb}, "f1"), actions)
        await handler.on_event(_event("vehicle_gate", "plate_captured", {"plate": "赣G12345"}, "p1"), actions)
        await handler.on_event(_event("door_lock", "door_opened", {"by": "key"}, "d1"), actions)  # ignored
        await asyncio.wait_for(handler.join(), timeout=30)
        runner.cancel()
    topics = {t for t, _, _ in actions.published}
    assert topics == {recognition_topic("s1")}
    payloads = {p["event_id"]: p for _, p, _ in actions.published if isinstance(p, dict)}
    assert payloads["f1"]["subject"] == "obama" and payloads["f1"]["matched"] is True
    assert payloads["p1"]["plate"] == "赣G12345"
    assert "d1" not in payloads


async def test_handler_reports_overload_instead_of_queueing_forever(service: VisionService) -> None:
    handler = VisionHandler(service, queue_size=1, consumers=1)
    actions = RecordingActions()
    for i in range(3):  # no consumer running: the second and third do not fit
        event = _event("camera", "face_captured", {"embedding": [1.0] * 128}, f"e{i}")
        await handler.on_event(event, actions)
    overloaded = [p for _, p, _ in actions.published if isinstance(p, dict) and p["error"] == "overloaded"]
    assert [p["event_id"] for p in overloaded] == ["e1", "e2"]
