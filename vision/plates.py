"""Plate pipeline: find and read Chinese plates in a gate-camera frame with PP-OCR.

The PP-OCRv6 small text detector and recogniser ship inside the ``rapidocr==3.10.0`` wheel; they are
run by :mod:`vision.ocr` (the detector in OpenCV's DNN when it agrees with onnxruntime and is faster
here, the recogniser in onnxruntime), with RapidOCR's own pre/post-processing, so no model is ever selected
that would have to be downloaded.

A frame is read in up to three passes, each only when the one before gives no valid plate. First,
without the text detector: :func:`vision.plate_locate.locate_plates` proposes blue/green plate
regions from colour and edges (~2 ms) and the recogniser reads each region cut from the frame; a
reading counts only when it is a valid plate with as many characters as the region's colour implies
(blue 7, green 8). Then the text detector (most of the cost, ~60 ms) looks at a copy shrunk to
:data:`FAST_DET_SIDE` pixels; each box it finds is cut from the full-resolution frame and read by the
recogniser alone. Last, the detector looks again at up to :data:`DET_MAX_SIDE` pixels (small or
distant plates), as a single pass always did.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vision.images import BgrImage
from vision.models import find_ocr_models
from vision.ocr import TextDetector, TextRecognizer, detector_prefers_opencv
from vision.plate_locate import locate_plates
from vision.plate_text import PlateFormatError, candidate_tails, fold_plate_reading, normalize_plate

__all__ = ["PlateReader", "PlateReading", "choose_plate"]

#: Longest frame side the text detector works at (larger frames are shrunk, smaller kept).
DET_MAX_SIDE = 960
#: Longest side of the first, cheap detection pass (a 640x480 gate frame: ~2.8x fewer pixels).
FAST_DET_SIDE = 384
#: A box cut for the recogniser gets this much margin (share of its height) left/right and top/bottom:
#: boxes found on the shrunk copy are loose, and the province character at the left edge is the first lost.
BOX_MARGIN = (0.3, 0.15)
#: The full pass drops recognised lines below this confidence (RapidOCR's ``text_score``), as it always did.
FULL_MIN_LINE_SCORE = 0.5
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
    """Reads the plate in a frame (or a tight plate crop). Thread-safe; models load lazily.

    The text recogniser (an onnxruntime session) is shared by all threads; each thread gets its own
    text detector (an OpenCV net is stateful). Whether the detector runs in OpenCV is decided once,
    by :func:`vision.ocr.detector_prefers_opencv` (same output, and faster on this machine).
    """

    def __init__(self, det_path: Path | None = None, rec_path: Path | None = None) -> None:
        self._det_path = det_path
        self._rec_path = rec_path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._recognizer: TextRecognizer | None = None
        self._det_opencv: bool | None = None

    def _paths(self) -> tuple[Path, Path]:
        if self._det_path is None or self._rec_path is None:
            det, rec = find_ocr_models()
            self._det_path = self._det_path or det
            self._rec_path = self._rec_path or rec
        return self._det_path, self._rec_path

    def _rec(self) -> TextRecognizer:
        if self._recognizer is None:
            with self._lock:
                if self._recognizer is None:
                    self._recognizer = TextRecognizer(self._paths()[1])
        return self._recognizer

    def _det(self) -> TextDetector:
        det: TextDetector | None = getattr(self._local, "detector", None)
        if det is None:
            with self._lock:
                if self._det_opencv is None:
                    self._det_opencv = detector_prefers_opencv(self._paths()[0])
            det = TextDetector(self._paths()[0], use_opencv=self._det_opencv)
            self._local.detector = det
        return det

    @property
    def detector_backend(self) -> str:
        """Which runtime runs the text detector (``"opencv"`` or ``"onnxruntime"``)."""
        return self._det().backend

    def warm_up(self) -> None:
        """Load the OCR models in the calling thread."""
        self._det()
        self.read(np.zeros((64, 256, 3), np.uint8))

    @staticmethod
    def _is_crop(image: BgrImage) -> bool:
        h, w = image.shape[:2]
        return bool(h <= CROP_MAX_HEIGHT and CROP_ASPECT[0] <= w / max(h, 1) <= CROP_ASPECT[1])

    def read_crop(self, image: BgrImage) -> PlateReading | None:
        """Read a tight plate crop without the text detector."""
        (line,) = self._rec().read([image])
        return choose_plate([(line.text, line.score, None)], [line.char_scores])

    def read(self, image: BgrImage) -> PlateReading | None:
        """The most plausible plate in ``image``, or ``None`` when none is readable."""
        if self._is_crop(image):
            reading = self.read_crop(image)
            if reading is not None and reading.plate is not None:
                return reading
        located = self.read_located(image)
        if located is not None:
            return located
        fast = self.read_fast(image)
        if fast is not None and fast.plate is not None:
            return fast
        return self.read_full(image)

    def read_located(self, image: BgrImage) -> PlateReading | None:
        """Read the regions :func:`vision.plate_locate.locate_plates` proposes with the recogniser alone.

        Returns a reading only when it is a valid plate of the region's colour's length, else ``None``.
        """
        for region in locate_plates(image):
            x, y, w, h = region.box
            quad = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], dtype=np.float32)
            crop = _cut(image, quad, BOX_MARGIN)
            if crop is None:
                continue
            (line,) = self._rec().read([crop])
            box = tuple((float(px), float(py)) for px, py in quad)
            reading = choose_plate([(line.text, line.score, box)], [line.char_scores])
            if reading is not None and reading.plate is not None and len(reading.plate) == region.plate_length:
                return reading
        return None

    def read_fast(self, image: BgrImage) -> PlateReading | None:
        """Detect text at up to :data:`FAST_DET_SIDE` pixels, read each box cut from ``image`` with a margin."""
        return self._read_boxes(image, FAST_DET_SIDE, BOX_MARGIN, cv2.INTER_LINEAR, 0.0)

    def read_full(self, image: BgrImage) -> PlateReading | None:
        """Detect text at up to :data:`DET_MAX_SIDE` pixels, read each box as found (PP-OCR's own crop)."""
        return self._read_boxes(image, DET_MAX_SIDE, (0.0, 0.0), cv2.INTER_CUBIC, FULL_MIN_LINE_SCORE)

    def _read_boxes(
        self, image: BgrImage, det_side: int, margin: tuple[float, float], interpolation: int, min_score: float
    ) -> PlateReading | None:
        cuts: list[tuple[BgrImage, Box]] = []
        for quad in self._det().detect(image, det_side):
            crop = _cut(image, quad, margin, interpolation)
            if crop is not None:
                cuts.append((crop, tuple((float(x), float(y)) for x, y in quad)))
        lines = self._rec().read([c for c, _ in cuts])
        kept = [
            (ln, box) for ln, (_, box) in zip(lines, cuts, strict=True) if ln.text.strip() and ln.score >= min_score
        ]
        return choose_plate([(ln.text, ln.score, box) for ln, box in kept], [ln.char_scores for ln, _ in kept])


def _cut(
    image: BgrImage, quad: np.ndarray, margin: tuple[float, float] = BOX_MARGIN, interpolation: int = cv2.INTER_LINEAR
) -> BgrImage | None:
    """The text box ``quad`` (4 corners, clockwise from top-left) rectified, with ``margin`` (shares of
    its height, left/right and top/bottom)."""
    tl, tr, br, bl = quad
    width = float(max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl)))
    height = float(max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr)))
    if width < 8 or height < 4:
        return None
    px, py = margin[0] * height, margin[1] * height
    out_w, out_h = round(width + 2 * px), round(height + 2 * py)
    dst = np.array([[px, py], [px + width, py], [px + width, py + height], [px, py + height]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), dst)
    crop = cv2.warpPerspective(image, matrix, (out_w, out_h), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
    out: BgrImage = np.asarray(crop, dtype=np.uint8)
    return out
