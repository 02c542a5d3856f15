"""PP-OCR text detection and recognition, run directly (no RapidOCR engine object per call).

The models are RapidOCR's (PP-OCRv6 small, shipped in the ``rapidocr==3.10.0`` wheel) and so are
the pre/post-processing steps (``DBPostProcess`` for the detector's probability map,
``CTCLabelDecode`` for the recogniser). What differs from calling ``RapidOCR`` is cost, measured in
bench/RESULTS.md ("Vision", 2026-12-03):

* the detector runs in OpenCV's DNN module when it gives onnxruntime's probability map and is the
  faster of the two on this machine (both checked once at load: ~0.6x onnxruntime's CPU on an Intel
  Xeon, ~2x on an AMD EPYC), else in onnxruntime;
* the recogniser pads a line to :data:`REC_MIN_WIDTH` (224) columns instead of 320 (~0.8x its CPU on a
  plate), in onnxruntime (cheaper there than in OpenCV for this model);
* no per-call option state, no vertical padding, word boxes or visualiser objects.

:class:`TextDetector` is stateful (an OpenCV net): one per thread. :class:`TextRecognizer` wraps an
onnxruntime session and is thread-safe.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from rapidocr.ch_ppocr_det.utils import DBPostProcess
from rapidocr.ch_ppocr_rec.utils import CTCLabelDecode

from vision.backends import first_is_faster
from vision.images import BgrImage, quiet_opencv

__all__ = ["RecognizedLine", "TextDetector", "TextRecognizer", "detector_agrees", "detector_prefers_opencv"]

FloatArray = npt.NDArray[np.float32]
#: Height of a recogniser input line (PP-OCR rec models are trained at 48 px).
REC_HEIGHT = 48
#: Narrower lines are padded on the right to this width. PaddleOCR pads every line to 320 columns;
#: a plate cut with its margin is ~140, and read at that width the province character at its left
#: edge was lost on 3 of 60 rendered gate frames. Padded to 224 (or 192) all 60 read exactly, at
#: ~0.8x the recogniser's CPU of 320 (bench/RESULTS.md, "Vision", 2026-12-03).
REC_MIN_WIDTH = 224
#: Largest absolute difference of the detector's probability map allowed between OpenCV and
#: onnxruntime for OpenCV to be used.
SAME_MAP_TOLERANCE = 1e-3


def _session(model: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    # Spinning threads steal the cores other sessions (and the event loop) need.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def _det_input(image: BgrImage, max_side: int) -> tuple[FloatArray, float, float]:
    """Shrink to ``max_side`` (never enlarge), sides rounded to a multiple of 32, normalised NCHW."""
    h, w = image.shape[:2]
    ratio = min(1.0, max_side / max(h, w))
    rh = max(32, round(int(h * ratio) / 32) * 32)
    rw = max(32, round(int(w * ratio) / 32) * 32)
    resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if ratio < 1.0 else cv2.INTER_LINEAR)
    # (x/255 - 0.5) / 0.5 in one pass
    blob = cv2.dnn.blobFromImage(resized, 2.0 / 255.0, (rw, rh), (127.5, 127.5, 127.5), swapRB=False)
    out: FloatArray = np.asarray(blob, dtype=np.float32)
    return out, rh / h, rw / w


class TextDetector:
    """PP-OCR DB text detector: quadrilaterals of text lines (one instance per thread)."""

    def __init__(self, model: Path, use_opencv: bool) -> None:
        self._post = DBPostProcess(
            thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, use_dilation=True, score_mode="fast"
        )
        self.backend = "opencv" if use_opencv else "onnxruntime"
        self._net: cv2.dnn.Net | None = None
        self._session: ort.InferenceSession | None = None
        if use_opencv:
            with quiet_opencv():
                self._net = cv2.dnn.readNetFromONNX(str(model))
        else:
            self._session = _session(model)

    def probability_map(self, blob: FloatArray) -> FloatArray:
        """The detector's raw output (N, 1, H, W) for a normalised input blob."""
        if self._net is not None:
            self._net.setInput(blob)
            out = self._net.forward()
        else:
            assert self._session is not None
            out = self._session.run(None, {self._session.get_inputs()[0].name: blob})[0]
        result: FloatArray = np.asarray(out, dtype=np.float32).reshape(1, 1, blob.shape[2], blob.shape[3])
        return result

    def detect(self, image: BgrImage, max_side: int) -> list[FloatArray]:
        """Text-line quadrilaterals (4x2, clockwise from top-left) in ``image`` pixels, looked for at
        most ``max_side`` pixels wide or high, top to bottom."""
        blob, ry, rx = _det_input(image, max_side)
        boxes, _ = self._post(self.probability_map(blob), (blob.shape[2], blob.shape[3]))
        ratio = np.array([rx, ry], dtype=np.float32)
        quads: list[FloatArray] = [(np.asarray(b, dtype=np.float32) / ratio).astype(np.float32) for b in boxes]
        quads.sort(key=lambda q: (float(q[0, 1]), float(q[0, 0])))
        return quads


def detector_agrees(model: Path, probes: int = 2) -> bool:
    """True when OpenCV's DNN loads the detector and gives onnxruntime's probability map on random images."""
    try:
        cv_det = TextDetector(model, use_opencv=True)
        ort_det = TextDetector(model, use_opencv=False)
        rng = np.random.default_rng(11)
        for _ in range(probes):
            img: BgrImage = rng.integers(0, 256, (96, 160, 3), dtype=np.uint8)
            blob, _, _ = _det_input(img, 160)
            diff = np.abs(cv_det.probability_map(blob) - ort_det.probability_map(blob))
            if float(diff.max()) > SAME_MAP_TOLERANCE:
                return False
    except cv2.error:
        return False
    return True


def detector_prefers_opencv(model: Path, timed_side: int = 384) -> bool:
    """True when OpenCV's DNN gives onnxruntime's probability map (:func:`detector_agrees`) and is
    also the faster of the two here, timed on a ``timed_side`` x 3/4 frame (:mod:`vision.backends`)."""
    if not detector_agrees(model):
        return False
    cv_det = TextDetector(model, use_opencv=True)
    ort_det = TextDetector(model, use_opencv=False)
    frame: BgrImage = np.random.default_rng(12).integers(0, 256, (timed_side * 3 // 4, timed_side, 3), dtype=np.uint8)
    blob, _, _ = _det_input(frame, timed_side)
    return first_is_faster(lambda: cv_det.probability_map(blob), lambda: ort_det.probability_map(blob))


@dataclass(frozen=True, slots=True)
class RecognizedLine:
    """One recognised line: its text, mean confidence and per-character confidences."""

    text: str
    score: float
    char_scores: tuple[float, ...]


class TextRecognizer:
    """PP-OCR CTC recogniser in onnxruntime (thread-safe); the character set comes from the model."""

    def __init__(self, model: Path) -> None:
        self._session = _session(model)
        self._input = self._session.get_inputs()[0].name
        chars = self._session.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._decode = CTCLabelDecode(character=chars)

    def read(self, lines: Sequence[BgrImage]) -> list[RecognizedLine]:
        """Read each line image (any size; resized to 48 px high at its own aspect ratio)."""
        return [self._read_one(line) for line in lines]

    def _read_one(self, line: BgrImage) -> RecognizedLine:
        h, w = line.shape[:2]
        width = max(1, math.ceil(REC_HEIGHT * w / max(h, 1)))
        blob = cv2.dnn.blobFromImage(line, 2.0 / 255.0, (width, REC_HEIGHT), (127.5, 127.5, 127.5), swapRB=False)
        if width < REC_MIN_WIDTH:  # pad on the right with mid-grey (0 after normalising), as PaddleOCR does
            blob = np.pad(blob, ((0, 0), (0, 0), (0, 0), (0, REC_MIN_WIDTH - width)))
        preds = self._session.run(None, {self._input: np.asarray(blob, dtype=np.float32)})[0]
        (text, score), *_ = self._decode(preds)[0]
        idx = preds[0].argmax(axis=1)
        keep = np.ones(len(idx), dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]
        keep &= idx != 0
        confs = tuple(round(float(c), 5) for c in preds[0].max(axis=1)[keep])
        return RecognizedLine(text=str(text), score=float(score), char_scores=confs)
