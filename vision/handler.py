"""Platform integration: recognise ``face_captured`` / ``plate_captured`` events.

Events may carry what a smart camera already computed (``embedding`` or ``plate`` text) or an
image (``image_jpeg_b64``, size-limited). :func:`recognize_event` turns either into a
:class:`Recognition`; :class:`VisionHandler` is a :class:`twins.hooks.PlatformHandler` that queues
events (bounded) and lets a fixed number of consumers recognise them, so ``on_event`` returns at
once and a slow frame never holds up twin updates. Results are published (QoS 1, not retained) on
``anfang/{site}/vision/recognitions``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from twins.hooks import DeviceEvent, PlatformActions, TwinChange
from vision.face import FaceError
from vision.gallery import GalleryError
from vision.images import ImageError, b64_image_bytes
from vision.plate_text import PlateFormatError, fold_plate_text, match_plate, normalize_plate
from vision.service import VisionBusyError, VisionService

__all__ = ["RECOGNISED_EVENTS", "Recognition", "VisionHandler", "recognition_topic", "recognize_event"]

log = logging.getLogger(__name__)

RECOGNISED_EVENTS = frozenset({"face_captured", "plate_captured"})


def recognition_topic(site: str) -> str:
    """Topic recognitions of ``site`` are published on."""
    return f"anfang/{site}/vision/recognitions"


@dataclass(frozen=True, slots=True)
class Recognition:
    """Outcome of recognising one event.

    Attributes:
        kind: ``"face"`` or ``"plate"``.
        source: ``"embedding"``/``"text"`` (computed by the camera) or ``"image"`` (computed here).
        subject: matched enrolled person (faces), else ``None``.
        score: similarity (faces) or OCR confidence (plates read here); ``None`` when not applicable.
        plate_read: the text read or sent (plates).
        plate: the registered plate it matched, else ``None``.
        error: why recognition failed (bad image, no face...), else ``None``.
    """

    kind: str
    source: str
    subject: str | None = None
    score: float | None = None
    plate_read: str | None = None
    plate: str | None = None
    error: str | None = None

    @property
    def matched(self) -> bool:
        """True when a known person or registered car was recognised."""
        return self.subject is not None or self.plate is not None

    def to_json(self, event: DeviceEvent) -> dict[str, Any]:
        """Payload published for ``event``."""
        return {
            "device_id": event.device_id,
            "event_id": event.id,
            "event_type": event.type,
            "ts": event.ts,
            "kind": self.kind,
            "source": self.source,
            "matched": self.matched,
            "subject": self.subject,
            "score": None if self.score is None else round(self.score, 4),
            "plate_read": self.plate_read,
            "plate": self.plate,
            "error": self.error,
        }


async def _recognize_face(service: VisionService, data: dict[str, Any]) -> Recognition:
    embedding = data.get("embedding")
    if embedding is not None:
        try:
            match = await service.identify_embedding(embedding)
        except (GalleryError, TypeError, ValueError) as exc:
            return Recognition("face", "embedding", error=f"bad embedding: {exc}")
        return Recognition("face", "embedding", subject=match.subject, score=match.score)
    b64 = data.get("image_jpeg_b64")
    if not isinstance(b64, str):
        return Recognition("face", "image", error="event has neither embedding nor image_jpeg_b64")
    try:
        image = b64_image_bytes(b64, service.max_image_bytes)
        ident = await service.identify_face(image)
    except (ImageError, FaceError) as exc:
        return Recognition("face", "image", error=str(exc))
    return Recognition("face", "image", subject=ident.match.subject, score=ident.match.score)


async def _recognize_plate(service: VisionService, data: dict[str, Any], registered: Collection[str]) -> Recognition:
    text = data.get("plate")
    if isinstance(text, str) and text.strip():
        try:
            read = normalize_plate(text)
        except PlateFormatError:
            read = fold_plate_text(text)
        return Recognition(
            "plate", "text", plate_read=read, plate=match_plate(read, registered), score=data.get("confidence")
        )
    b64 = data.get("image_jpeg_b64")
    if not isinstance(b64, str):
        return Recognition("plate", "image", error="event has neither plate nor image_jpeg_b64")
    try:
        image = b64_image_bytes(b64, service.max_image_bytes)
        reading = await service.read_plate(image)
    except ImageError as exc:
        return Recognition("plate", "image", error=str(exc))
    if reading is None:
        return Recognition("plate", "image", error="no plate readable in the image")
    return Recognition(
        "plate", "image", plate_read=reading.text, score=reading.score, plate=match_plate(reading.text, registered)
    )


async def recognize_event(
    service: VisionService, event: DeviceEvent, registered_plates: Collection[str] = ()
) -> Recognition | None:
    """Recognise a ``face_captured``/``plate_captured`` event; ``None`` for other event types.

    Raises:
        VisionBusyError: the service is saturated (the caller decides whether to retry or drop).
    """
    if event.type == "face_captured":
        return await _recognize_face(service, event.data)
    if event.type == "plate_captured":
        return await _recognize_plate(service, event.data, registered_plates)
    return None


@dataclass
class VisionHandler:
    """:class:`twins.hooks.PlatformHandler` recognising capture events off the platform's path.

    Run :meth:`run` for the handler's lifetime (e.g. in the service's TaskGroup); ``on_event``
    only enqueues. When the queue is full the event is dropped and a recognition with
    ``error="overloaded"`` is published, so the drop is visible.

    Attributes:
        service: the vision service doing the work.
        registered_plates: returns the plates currently registered (for tolerant matching).
        queue_size: bound of the pending-event queue.
        consumers: events recognised concurrently.
    """

    service: VisionService
    registered_plates: Callable[[], Collection[str]] = lambda: ()
    queue_size: int = 64
    consumers: int = 2
    _queue: asyncio.Queue[tuple[DeviceEvent, PlatformActions]] = field(init=False)
    handled: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._queue = asyncio.Queue(maxsize=self.queue_size)

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """Queue capture events for recognition; ignore the rest."""
        if event.type not in RECOGNISED_EVENTS:
            return
        try:
            self._queue.put_nowait((event, actions))
        except asyncio.QueueFull:
            kind = "face" if event.type == "face_captured" else "plate"
            await actions.publish(
                recognition_topic(event.site), Recognition(kind, "image", error="overloaded").to_json(event)
            )

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        """Twin changes are not used by recognition."""

    async def join(self) -> None:
        """Wait until every queued event has been recognised and published."""
        await self._queue.join()

    async def _consume(self) -> None:
        while True:
            event, actions = await self._queue.get()
            try:
                try:
                    result = await recognize_event(self.service, event, self.registered_plates())
                except VisionBusyError as exc:
                    result = Recognition("face" if event.type == "face_captured" else "plate", "image", error=str(exc))
                if result is not None:
                    await actions.publish(recognition_topic(event.site), result.to_json(event))
                self.handled += 1
            except Exception:  # keep consuming: one broken publish must not stop recognition
                log.exception("recognition of event %s from %s failed", event.id, event.device_id)
            finally:
                self._queue.task_done()

    async def run(self) -> None:
        """Consume the queue until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for _ in range(self.consumers):
                tg.create_task(self._consume())
