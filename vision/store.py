"""Gallery file: enrolled face templates persisted as JSON (templates only — never photos).

Format (version 1)::

    {"version": 1, "threshold": 0.55,
     "templates": {"<subject>": {"template": "<base64 of 128 little-endian float32>"}}}

Writes are atomic (temporary file + rename). The community registry will later own templates.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from vision.gallery import DEFAULT_THRESHOLD, EMBEDDING_DIM, FaceGallery, GalleryError

__all__ = ["GalleryFileError", "gallery_path", "load_gallery", "save_gallery"]

DEFAULT_FILENAME = "gallery.json"


class GalleryFileError(RuntimeError):
    """The gallery file is unreadable or malformed.

    Attributes:
        path: the file.
        reason: what is wrong.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"gallery file {path}: {reason}")
        self.path = path
        self.reason = reason


def gallery_path(path: Path) -> Path:
    """``path`` itself for a file path, or ``path/gallery.json`` for a directory (existing or ``/``-ended)."""
    if path.is_dir() or (path.suffix == "" and not path.exists()):
        return path / DEFAULT_FILENAME
    return path


def _encode(template: np.ndarray) -> str:
    return base64.b64encode(np.asarray(template, dtype="<f4").tobytes()).decode("ascii")


def _decode(text: str) -> np.ndarray:
    raw = base64.b64decode(text, validate=True)
    if len(raw) != EMBEDDING_DIM * 4:
        raise ValueError(f"template has {len(raw)} bytes, expected {EMBEDDING_DIM * 4}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def load_gallery(path: Path, threshold: float | None = None) -> FaceGallery:
    """Load the gallery at ``path`` (an empty one when the file does not exist yet).

    ``threshold`` overrides the one stored in the file.
    """
    file = gallery_path(path)
    if not file.exists():
        return FaceGallery(threshold=DEFAULT_THRESHOLD if threshold is None else threshold)
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalleryFileError(file, f"unreadable ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("templates"), dict):
        raise GalleryFileError(file, "not a version-1 gallery document")
    stored = doc.get("threshold", DEFAULT_THRESHOLD)
    gallery = FaceGallery(threshold=float(stored) if threshold is None else threshold)
    for subject, entry in doc["templates"].items():
        try:
            gallery.add(str(subject), _decode(entry["template"]))
        except (KeyError, TypeError, ValueError, binascii.Error, GalleryError) as exc:
            raise GalleryFileError(file, f"bad template for {subject!r} ({exc})") from exc
    return gallery


def save_gallery(gallery: FaceGallery, path: Path) -> Path:
    """Write ``gallery`` atomically; returns the file written."""
    file = gallery_path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "version": 1,
        "threshold": gallery.threshold,
        "templates": {s: {"template": _encode(gallery.template(s))} for s in gallery.subjects},
    }
    fd, tmp = tempfile.mkstemp(prefix=".gallery-", suffix=".tmp", dir=file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False, indent=1)
        os.replace(tmp, file)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return file
