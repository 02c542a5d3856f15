"""In-memory face gallery: enrolled templates matched by cosine similarity.

Pure numpy, no IO. Templates are kept L2-normalised in one contiguous float32 matrix so a match is a
single matrix-vector product, fast enough for 100,000 templates per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_THRESHOLD",
    "EMBEDDING_DIM",
    "FaceGallery",
    "GalleryError",
    "Match",
    "cosine_similarity",
    "l2_normalize",
]

#: Cosine similarity at or above which two SFace templates are taken as the same person: the false-accept
#: rate at the door is at most 1 in 10,000 pairs on the calibration set (``python -m bench.face_calibration``,
#: docs/vision.md "Face decision threshold"). OpenCV Zoo's 0.363 accepted 1 in 390 impostor pairs there.
#: Sites choose their own with the ``vision.face_threshold`` setting.
DEFAULT_THRESHOLD = 0.55
#: Length of an SFace template.
EMBEDDING_DIM = 128

FloatArray = npt.NDArray[np.float32]


class GalleryError(ValueError):
    """A template has the wrong shape or is not finite / all zero.

    Attributes:
        subject: the subject concerned, if any.
        reason: what is wrong.
    """

    def __init__(self, reason: str, subject: str | None = None) -> None:
        super().__init__(reason if subject is None else f"{subject}: {reason}")
        self.subject = subject
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Match:
    """Result of a gallery search.

    Attributes:
        subject: best-matching enrolled subject, or ``None`` when its score is below the threshold
            (or the gallery is empty) — an "unknown" face.
        score: cosine similarity of the best candidate in [-1, 1] (``-1.0`` for an empty gallery).
        candidate: best candidate regardless of the threshold (for logs / operator review).
    """

    subject: str | None
    score: float
    candidate: str | None = None

    @property
    def known(self) -> bool:
        """True when the face matched an enrolled subject."""
        return self.subject is not None


def l2_normalize(vector: npt.ArrayLike, subject: str | None = None) -> FloatArray:
    """Return ``vector`` as a unit-length float32 array of shape (128,).

    Raises:
        GalleryError: wrong shape, non-finite values or zero length.
    """
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    if v.shape != (EMBEDDING_DIM,):
        raise GalleryError(f"template must have {EMBEDDING_DIM} values, got {v.size}", subject)
    if not np.all(np.isfinite(v)):
        raise GalleryError("template has non-finite values", subject)
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise GalleryError("template is all zeros", subject)
    out: FloatArray = (v / norm).astype(np.float32)
    return out


class FaceGallery:
    """Enrolled face templates, one per subject, searched by cosine similarity.

    Re-adding a subject replaces its template. Removal swaps the last row into the freed slot, so
    both add and remove are O(1) amortised.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, capacity: int = 1024) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise GalleryError(f"threshold must be within [-1, 1], got {threshold}")
        self.threshold = threshold
        self._matrix: FloatArray = np.zeros((max(capacity, 1), EMBEDDING_DIM), dtype=np.float32)
        self._subjects: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._subjects)

    def __contains__(self, subject: object) -> bool:
        return subject in self._index

    @property
    def subjects(self) -> list[str]:
        """Enrolled subjects in storage order."""
        return list(self._subjects)

    def add(self, subject: str, template: npt.ArrayLike) -> None:
        """Enrol (or replace) ``subject`` with a 128-d template.

        Raises:
            GalleryError: the template is invalid.
        """
        row = l2_normalize(template, subject)
        slot = self._index.get(subject)
        if slot is None:
            slot = len(self._subjects)
            if slot == self._matrix.shape[0]:
                grown = np.zeros((slot * 2, EMBEDDING_DIM), dtype=np.float32)
                grown[:slot] = self._matrix
                self._matrix = grown
            self._subjects.append(subject)
            self._index[subject] = slot
        self._matrix[slot] = row

    def add_many(self, subjects: list[str], templates: npt.ArrayLike) -> None:
        """Enrol many subjects at once (``templates`` shaped (n, 128))."""
        mat = np.asarray(templates, dtype=np.float32)
        if mat.ndim != 2 or mat.shape[0] != len(subjects):
            raise GalleryError(f"expected ({len(subjects)}, {EMBEDDING_DIM}) templates, got {mat.shape}")
        for subject, row in zip(subjects, mat, strict=True):
            self.add(subject, row)

    def remove(self, subject: str) -> bool:
        """Forget ``subject``; returns False when it was not enrolled."""
        slot = self._index.pop(subject, None)
        if slot is None:
            return False
        last = len(self._subjects) - 1
        if slot != last:
            moved = self._subjects[last]
            self._matrix[slot] = self._matrix[last]
            self._subjects[slot] = moved
            self._index[moved] = slot
        self._subjects.pop()
        self._matrix[last] = 0.0
        return True

    def template(self, subject: str) -> FloatArray:
        """The stored (normalised) template of ``subject``; KeyError when not enrolled."""
        out: FloatArray = self._matrix[self._index[subject]].copy()
        return out

    def scores(self, embedding: npt.ArrayLike) -> FloatArray:
        """Cosine similarity of ``embedding`` to every enrolled template, in :attr:`subjects` order."""
        q = l2_normalize(embedding)
        out: FloatArray = self._matrix[: len(self._subjects)] @ q
        return out

    def best_match(self, embedding: npt.ArrayLike) -> Match:
        """Best enrolled subject for ``embedding``; ``subject`` is None below the threshold."""
        if not self._subjects:
            l2_normalize(embedding)
            return Match(subject=None, score=-1.0, candidate=None)
        sims = self.scores(embedding)
        i = int(np.argmax(sims))
        score = float(sims[i])
        candidate = self._subjects[i]
        return Match(subject=candidate if score >= self.threshold else None, score=score, candidate=candidate)


def cosine_similarity(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two 128-d templates."""
    return float(np.dot(l2_normalize(a), l2_normalize(b)))
