"""Helpers for the end-to-end recognition tests: the full platform with its access decisions observable.

Imported by name (``from vision_e2e_kit import ...``); not a conftest.py.
"""

from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import platform_kit

from vision.enroll import pick_enrolment_face
from vision.face import FacePipeline, FloatArray
from vision.images import BgrImage, encode_jpeg
from vision.plate_synth import SceneParams, render_scene

#: What a camera sends: frames shrunk to this longest side and JPEG-encoded (fits the 256 KiB payload limit).
CAMERA_SIDE = 640


def camera_jpeg_b64(image: BgrImage, side: int = CAMERA_SIDE) -> str:
    """``image`` as a door terminal or gate camera would send it in ``image_jpeg_b64``."""
    scale = min(1.0, side / max(image.shape[:2]))
    if scale < 1.0:
        image = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), np.uint8)
    return base64.b64encode(encode_jpeg(image)).decode("ascii")


def gate_frame_b64(plate: str, seed: int, font: Path) -> str:
    """A rendered 640x480 gate-camera frame of a car carrying ``plate``."""
    return camera_jpeg_b64(render_scene(plate, random.Random(seed), SceneParams(brightness=(0.8, 1.0)), font))


def enrolment_template(pipeline: FacePipeline, image: BgrImage) -> FloatArray:
    """A face template made the way ``anfang vision enroll`` makes it (single face, SFace)."""
    detection = pick_enrolment_face(pipeline.detect(image))
    assert detection is not None, "no face in the enrolment photo"
    return pipeline.embed_detection(image, detection)


def capture_event(data: dict[str, Any]) -> dict[str, Any]:
    """An ``events/{type}`` payload with a fresh id and the current time."""
    return {"id": uuid.uuid4().hex, "ts": time.time(), "data": data}


class ObservedServices(platform_kit.ObservedServices):
    """The full platform's services with a tap on access decisions (a refusal sends nothing to the device,
    so the tests wait for its decision), plus waiting for several at once."""

    async def next_decisions(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The data of the next ``n`` access decisions, sorted by (device, allowed).

        Fails at once, with the platform's own error, if the platform stops while waiting.
        """
        platform = _platform_task()
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                get = asyncio.ensure_future(self.decisions.get())
                await asyncio.wait({get, platform}, return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    get.cancel()
                    platform.result()  # raises what stopped it
                    raise AssertionError("the platform stopped")
                out.append(get.result().data)
        return sorted(out, key=lambda d: (str(d["device"]), bool(d["allowed"])))


def _platform_task() -> asyncio.Task[Any]:
    """The task ``running_platform`` runs ``Platform.run`` in."""
    return next(t for t in asyncio.all_tasks() if t.get_name() == "platform")
