"""The plate readers before issue 21.5's later rounds, kept for the benchmark's interleaved
before/after comparison only:

* :class:`RapidOcrPlateReader` — before the second round (2026-12-03): RapidOCR's engine object per
  thread, PP-OCRv6 small detector and recogniser both in onnxruntime, every line padded to 320 columns;
* :func:`detector_passes_read` — before the third round (2026-12-03): :class:`vision.plates.PlateReader`
  without the colour/edge located pass (every frame goes through the text detector).

Not used by the platform; :class:`vision.plates.PlateReader` replaced them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vision.images import BgrImage
from vision.models import find_ocr_models
from vision.plates import (
    CROP_ASPECT,
    CROP_MAX_HEIGHT,
    DET_MAX_SIDE,
    FAST_DET_SIDE,
    Box,
    PlateReader,
    PlateReading,
    _cut,
    choose_plate,
)

__all__ = ["RapidOcrPlateReader", "detector_passes_read"]


def detector_passes_read(reader: PlateReader, image: BgrImage) -> PlateReading | None:
    """``reader.read`` as of the second round (2026-12-03): a tight crop read whole, else the text
    detector at ≤ :data:`FAST_DET_SIDE` px, then at ≤ :data:`DET_MAX_SIDE` px when no valid plate."""
    h, w = image.shape[:2]
    if h <= CROP_MAX_HEIGHT and CROP_ASPECT[0] <= w / max(h, 1) <= CROP_ASPECT[1]:
        reading = reader.read_crop(image)
        if reading is not None and reading.plate is not None:
            return reading
    fast = reader.read_fast(image)
    if fast is not None and fast.plate is not None:
        return fast
    return reader.read_full(image)


class RapidOcrPlateReader:
    """The plate reader as of 2026-12-02: a RapidOCR engine per thread, detector and recogniser in onnxruntime."""

    def __init__(self, det_path: Path | None = None, rec_path: Path | None = None) -> None:
        self._det_path = det_path
        self._rec_path = rec_path
        self._local = threading.local()

    def _engine(self) -> Any:
        eng = getattr(self._local, "engine", None)
        if eng is None:
            from rapidocr import RapidOCR  # heavy import, only when plates are read

            if self._det_path is None or self._rec_path is None:
                det, rec = find_ocr_models()
                self._det_path = self._det_path or det
                self._rec_path = self._rec_path or rec
            eng = RapidOCR(
                params={
                    "Global.log_level": "error",
                    "Global.use_cls": False,
                    "Det.model_path": str(self._det_path),
                    "Det.limit_type": "max",
                    "Det.limit_side_len": DET_MAX_SIDE,
                    "Rec.model_path": str(self._rec_path),
                    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
            logging.getLogger("RapidOCR").setLevel(logging.ERROR)
            self._local.engine = eng
        return eng

    def warm_up(self) -> None:
        """Load the OCR models in the calling thread."""
        self.read(np.zeros((64, 256, 3), np.uint8))

    @staticmethod
    def _is_crop(image: BgrImage) -> bool:
        h, w = image.shape[:2]
        return bool(h <= CROP_MAX_HEIGHT and CROP_ASPECT[0] <= w / max(h, 1) <= CROP_ASPECT[1])

    def read_crop(self, image: BgrImage) -> PlateReading | None:
        """Read a tight plate crop without the text detector."""
        # Every flag every call: RapidOCR remembers the previous call's options.
        out = self._engine()(image, use_det=False, use_cls=False, use_rec=True, return_word_box=True)
        txts = out.txts or ()
        scores = out.scores or ()
        chars = [_char_scores(out, i, t) for i, t in enumerate(txts)]
        return choose_plate([(t, float(s), None) for t, s in zip(txts, scores, strict=False)], chars)

    def read(self, image: BgrImage) -> PlateReading | None:
        """The most plausible plate in ``image``, or ``None`` when none is readable."""
        if self._is_crop(image):
            reading = self.read_crop(image)
            if reading is not None and reading.plate is not None:
                return reading
        fast = self.read_fast(image)
        if fast is not None and fast.plate is not None:
            return fast
        return self.read_full(image)

    def read_fast(self, image: BgrImage) -> PlateReading | None:
        """Detect text on a copy shrunk to :data:`FAST_DET_SIDE`, read each box cut from ``image``."""
        h, w = image.shape[:2]
        scale = min(1.0, FAST_DET_SIDE / max(h, w))
        small = image
        if scale < 1.0:
            small = np.asarray(
                cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA), np.uint8
            )
        det = self._engine()(small, use_det=True, use_cls=False, use_rec=False, return_word_box=False)
        lines: list[tuple[str, float, Box | None]] = []
        chars: list[Sequence[float] | None] = []
        for quad in det.boxes if det.boxes is not None else []:
            box = np.asarray(quad, dtype=np.float32) / scale
            crop = _cut(image, box)
            if crop is None:
                continue
            out = self._engine()(crop, use_det=False, use_cls=False, use_rec=True, return_word_box=True)
            corners = tuple((float(x), float(y)) for x, y in box)
            lines += [(t, float(s), corners) for t, s in zip(out.txts or (), out.scores or (), strict=False)]
            chars += [_char_scores(out, i, t) for i, t in enumerate(out.txts or ())]
        return choose_plate(lines, chars)

    def read_full(self, image: BgrImage) -> PlateReading | None:
        """One detection + recognition pass at up to :data:`DET_MAX_SIDE` pixels."""
        out = self._engine()(
            image, use_det=True, use_cls=False, use_rec=True, return_word_box=True, return_single_char_box=True
        )
        txts = out.txts or ()
        scores = out.scores or ()
        boxes = out.boxes if out.boxes is not None else [None] * len(txts)
        lines: list[tuple[str, float, Box | None]] = []
        for t, s, b in zip(txts, scores, boxes, strict=False):
            box = None if b is None else tuple((float(p[0]), float(p[1])) for p in np.asarray(b))
            lines.append((t, float(s), box))
        return choose_plate(lines, [_char_scores(out, i, t) for i, t in enumerate(txts)])


def _char_scores(out: Any, i: int, text: str) -> list[float] | None:
    """The recogniser's per-character scores of line ``i`` (RapidOCR's ``word_results``), if they fit ``text``.

    A recognition-only call gives a ``WordInfo`` with ``confs``; a full call with single-character boxes
    gives ``(char, score, box)`` triples. Blanks carry no score.
    """
    words = getattr(out, "word_results", None)
    if not words or i >= len(words):
        return None
    item = words[i]
    confs = getattr(item, "confs", None)
    if confs is None and isinstance(item, tuple | list):
        confs = [c[1] for c in item if isinstance(c, tuple | list) and len(c) >= 2]
    if confs is None:
        return None
    scores = [float(c) for c in confs]
    bare = [c for c in text if not c.isspace()]
    if len(scores) == len(text):
        return scores
    if len(scores) != len(bare):
        return None
    it = iter(scores)
    return [1.0 if c.isspace() else next(it) for c in text]
