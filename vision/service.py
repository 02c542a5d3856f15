"""Async facade over the face and plate pipelines.

Inference runs in a bounded :class:`concurrent.futures.ThreadPoolExecutor` sized from the core
count (onnxruntime and OpenCV release the GIL), so a slow frame never blocks the event loop that
handles twin updates. At most ``max_pending`` jobs may wait; beyond that callers get
:class:`VisionBusyError` instead of an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from vision.enroll import Enrolment, check_identity, pick_enrolment_face
from vision.face import FaceDetection, FacePipeline, FloatArray, NoFaceError
from vision.gallery import FaceGallery, Match
from vision.images import DEFAULT_MAX_IMAGE_BYTES, BgrImage, decode_image
from vision.plates import PlateReader, PlateReading

__all__ = ["FaceIdentification", "VisionBusyError", "VisionService", "default_workers"]

T = TypeVar("T")


class VisionBusyError(RuntimeError):
    """Too many recognition jobs are already queued.

    Attributes:
        pending: jobs in flight or waiting.
        limit: the configured maximum.
    """

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(f"vision service busy: {pending} jobs pending (limit {limit})")
        self.pending = pending
        self.limit = limit


@dataclass(frozen=True, slots=True)
class FaceIdentification:
    """Who is in a frame: the gallery match of its largest face."""

    match: Match
    detection: FaceDetection
    embedding: FloatArray


def default_workers() -> int:
    """Worker threads for this machine: one per core, leaving a core for the event loop above 2."""
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores > 2 else cores


class VisionService:
    """Face identification/enrolment and plate reading, awaited from asyncio.

    Args:
        gallery: enrolled templates to match against (a new empty one by default).
        workers: inference threads (default :func:`default_workers`).
        max_pending: jobs allowed in flight plus waiting (default ``4 * workers``).
        max_image_bytes: largest encoded image accepted.
    """

    def __init__(
        self,
        gallery: FaceGallery | None = None,
        *,
        workers: int | None = None,
        max_pending: int | None = None,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        faces: FacePipeline | None = None,
        plates: PlateReader | None = None,
    ) -> None:
        self.gallery = gallery if gallery is not None else FaceGallery()
        self.workers = workers or default_workers()
        self.max_pending = max_pending or 4 * self.workers
        self.max_image_bytes = max_image_bytes
        self.faces = faces or FacePipeline()
        self.plates = plates or PlateReader()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vision")
        self._pending = 0
        # Gallery rows move on add/remove; matching in a worker must not see a half-done move.
        self._gallery_lock = threading.Lock()

    async def __aenter__(self) -> VisionService:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # Waiting for running jobs must not block the loop.
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Stop the worker threads (waits for running jobs)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    @property
    def pending(self) -> int:
        """Jobs currently in flight or waiting for a worker."""
        return self._pending

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._pending >= self.max_pending:
            raise VisionBusyError(self._pending, self.max_pending)
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self._pending -= 1

    async def warm_up(self, plates: bool = True) -> None:
        """Load the models in every worker thread before the first real frame."""
        jobs: list[asyncio.Future[None]] = []
        barrier = threading.Barrier(self.workers, timeout=60)

        def load() -> None:
            barrier.wait()  # one job per thread: every thread loads its own detector/OCR engine
            self.faces.warm_up()
            if plates:
                self.plates.warm_up()

        loop = asyncio.get_running_loop()
        jobs = [loop.run_in_executor(self._executor, load) for _ in range(self.workers)]
        await asyncio.gather(*jobs)

    def _decode(self, data: bytes) -> BgrImage:
        return decode_image(data, self.max_image_bytes)

    # --- faces -----------------------------------------------------------------------------------

    def _match(self, embedding: npt.ArrayLike) -> Match:
        with self._gallery_lock:
            return self.gallery.best_match(embedding)

    def _identify_sync(self, data: bytes | BgrImage) -> FaceIdentification:
        image = self._decode(data) if isinstance(data, bytes) else data
        face = self.faces.largest_face(image)
        return FaceIdentification(self._match(face.embedding), face.detection, face.embedding)

    async def identify_face(self, image: bytes | BgrImage) -> FaceIdentification:
        """Match the largest face in a JPEG/PNG (or decoded BGR frame) against the gallery.

        Raises:
            ImageTooLargeError, ImageDecodeError: unusable image.
            NoFaceError: no face in it.
            VisionBusyError: too many jobs pending.
        """
        return await self._run(lambda: self._identify_sync(image))

    async def embed_face(self, image: bytes | BgrImage) -> FloatArray:
        """Template of the largest face in an image (see :meth:`identify_face` for errors)."""

        def job() -> FloatArray:
            img = self._decode(image) if isinstance(image, bytes) else image
            return self.faces.largest_face(img).embedding

        return await self._run(job)

    async def identify_embedding(self, embedding: npt.ArrayLike) -> Match:
        """Match a template sent by a smart camera (a 100,000-template search runs off the loop)."""
        vec = np.asarray(embedding, dtype=np.float32)
        return await self._run(lambda: self._match(vec))

    async def enroll(self, subject: str, photo: bytes | BgrImage, id_photo: bytes | BgrImage) -> Enrolment:
        """Compute ``subject``'s template from ``photo`` and add it to the gallery (人证合一).

        Raises:
            IdentityMismatchError: the photo and ID-card photo show different people.
            AmbiguousFaceError: several similar-size faces in a photo.
            NoFaceError: a photo has no face.
        """

        def template(data: bytes | BgrImage) -> FloatArray:
            img = self._decode(data) if isinstance(data, bytes) else data
            det = pick_enrolment_face(self.faces.detect(img))
            if det is None:
                raise NoFaceError(img.shape[1], img.shape[0])
            return self.faces.embed_detection(img, det)

        def job() -> Enrolment:
            enrolment = check_identity(subject, template(photo), template(id_photo), self.gallery.threshold)
            with self._gallery_lock:
                self.gallery.add(subject, enrolment.template)
            return enrolment

        return await self._run(job)

    def remove(self, subject: str) -> bool:
        """Withdraw a subject's template."""
        with self._gallery_lock:
            return self.gallery.remove(subject)

    # --- plates ----------------------------------------------------------------------------------

    async def read_plate(self, image: bytes | BgrImage) -> PlateReading | None:
        """Read the plate in a gate-camera frame or a tight plate crop; ``None`` if unreadable."""

        def job() -> PlateReading | None:
            img = self._decode(image) if isinstance(image, bytes) else image
            return self.plates.read(img)

        return await self._run(job)
