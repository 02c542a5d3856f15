"""Plate pipeline: find and read Chinese plates in a gate-camera frame with PP-OCR (RapidOCR).

The PP-OCRv6 small text detector and recogniser ship inside the ``rapidocr==3.10.0`` wheel; their
paths are given explicitly so RapidOCR never selects a model it would have to download. A RapidOCR
engine keeps per-call options as state, so every worker thread gets its own engine.

A frame is read in two passes. The text detector (most of the cost) first looks at a copy shrunk to
:data:`FAST_DET_SIDE` pixels; each box it finds is cut from the full-resolution frame and read by the
recogniser alone. Only when that gives no valid plate does the detector look again at up to
:data:`DET_MAX_SIDE` pixels (small or distant plates), as a single pass always did.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vision.images import BgrImage
from vision.models import find_ocr_models
from vision.plate_text import PlateFormatError, candidate_tails, fold_plate_reading, normalize_plate

__all__ = ["PlateReader", "PlateReading", "choose_plate"]

#: Longest frame side the text detector works at (larger frames are shrunk, smaller kept).
DET_MAX_SIDE = 960
#: Longest side of the first, cheap detection pass (a 640x480 gate frame: ~2.8x fewer pixels).
FAST_DET_SIDE = 384
#: A box cut for the recogniser gets this much margin (share of its height) left/right and top/bottom:
#: boxes found on the shrunk copy are loose, and the province character at the left edge is the first lost.
BOX_MARGIN = (0.3, 0.15)
#: A tight plate crop (what smart cameras send) is read without the detector.
CROP_MAX_HEIGHT = 240
CROP_ASPECT = (2.0, 6.0)

Box = tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class PlateReading:
    """What the reader saw.

    Attributes:
        text: the recognised text, folded (separators removed, uppercase).
        plate: the normalised plate when ``text`` is a valid plate, else ``None`` (e.g. the
            province character was misread — :func:`vision.plate_text.match_plate` still
            matches such a reading by the rest of the plate).
        score: recogniser confidence 0..1.
        box: 4 corner points (x, y) in the frame, or ``None`` for a crop read whole.
        char_scores: the recogniser's confidence per character of ``text`` (``None`` when it gave
            none): a registered plate may differ from the reading only where it was unsure
            (:func:`vision.plate_text.match_read_plate`).
    """

    text: str
    plate: str | None
    score: float
    box: Box | None = None
    char_scores: tuple[float, ...] | None = None

    @property
    def color(self) -> str | None:
        """``"blue"``/``"green"`` for a valid plate, else ``None``."""
        if self.plate is None:
            return None
        return "green" if len(self.plate) == 8 else "blue"


def choose_plate(
    lines: Sequence[tuple[str, float, Box | None]], char_scores: Sequence[Sequence[float] | None] = ()
) -> PlateReading | None:
    """Pick the plate among recognised text lines: valid plates first, then plate-like readings
    (a wrong or lost province character, with at least one digit).

    Pure: ``lines`` are (text, score, box) as produced by the OCR; ``char_scores``, when given, the
    per-character scores of each line's text.
    """
    best_valid: PlateReading | None = None
    best_partial: PlateReading | None = None
    for i, (text, score, box) in enumerate(lines):
        folded, chars = fold_plate_reading(text, char_scores[i] if i < len(char_scores) else None)
        try:
            plate: str | None = normalize_plate(text)
        except PlateFormatError:
            plate = None
        reading = PlateReading(text=plate or folded, plate=plate, score=float(score), box=box, char_scores=chars)
        if plate is not None:
            if best_valid is None or reading.score > best_valid.score:
                best_valid = reading
        elif (
            candidate_tails(folded)
            and any(c.isdigit() for c in folded)  # signs ("WELCOME") are plate-shaped too
            and (best_partial is None or reading.score > best_partial.score)
        ):
            best_partial = reading
    return best_valid or best_partial


class PlateReader:
    """Reads the plate in a frame (or a tight plate crop). Thread-safe; models load lazily."""

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


def _cut(image: BgrImage, quad: np.ndarray) -> BgrImage | None:
    """The text box ``quad`` (4 corners, clockwise from top-left) rectified, with a margin."""
    tl, tr, br, bl = quad
    width = float(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = float(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    if width < 8 or height < 4:
        return None
    px, py = BOX_MARGIN[0] * height, BOX_MARGIN[1] * height
    out_w, out_h = round(width + 2 * px), round(height + 2 * py)
    dst = np.array([[px, py], [px + width, py], [px + width, py + height], [px, py + height]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    crop = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out: BgrImage = np.asarray(crop, dtype=np.uint8)
    return out
