"""Enrolment rules (人证合一): the template comes from a live photo that must match the ID-card photo.

Pure logic on embeddings and detections; the image work happens in :mod:`vision.service`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vision.face import FaceDetection, FaceError, FloatArray
from vision.gallery import DEFAULT_THRESHOLD, cosine_similarity

__all__ = [
    "AmbiguousFaceError",
    "Enrolment",
    "IdentityMismatchError",
    "check_identity",
    "pick_enrolment_face",
]

#: A second face at least this fraction of the largest face's area makes an enrolment photo ambiguous.
AMBIGUOUS_AREA_RATIO = 0.5


class IdentityMismatchError(FaceError):
    """The enrolment photo does not show the person on the ID card.

    Attributes:
        subject: who was being enrolled.
        score: cosine similarity between the two faces.
        threshold: the similarity required.
    """

    def __init__(self, subject: str, score: float, threshold: float) -> None:
        super().__init__(
            f"enrolment of {subject!r} refused: photo does not match the ID-card photo "
            f"(similarity {score:.3f} < {threshold:.3f})"
        )
        self.subject = subject
        self.score = score
        self.threshold = threshold


class AmbiguousFaceError(FaceError):
    """More than one face of similar size in a photo that must show one person.

    Attributes:
        faces: how many faces were found.
    """

    def __init__(self, faces: int) -> None:
        super().__init__(f"{faces} faces of similar size in the photo; enrolment needs exactly one person")
        self.faces = faces


@dataclass(frozen=True, slots=True)
class Enrolment:
    """An accepted enrolment.

    Attributes:
        subject: who was enrolled.
        template: the L2-normalised 128-d template (the credential; the photo is not kept).
        id_score: similarity of the photo to the ID-card photo.
    """

    subject: str
    template: FloatArray
    id_score: float

    def to_json(self) -> dict[str, object]:
        """JSON-friendly form (template as a list of floats)."""
        return {
            "subject": self.subject,
            "template": [round(float(v), 7) for v in np.asarray(self.template).reshape(-1)],
            "id_score": round(self.id_score, 4),
        }


def pick_enrolment_face(detections: Sequence[FaceDetection]) -> FaceDetection | None:
    """The single face to enrol, ``None`` if there is none.

    Raises:
        AmbiguousFaceError: two or more faces of similar size (whose face is it?).
    """
    if not detections:
        return None
    ordered = sorted(detections, key=lambda d: d.area, reverse=True)
    if len(ordered) > 1 and ordered[1].area >= AMBIGUOUS_AREA_RATIO * ordered[0].area:
        raise AmbiguousFaceError(len(ordered))
    return ordered[0]


def check_identity(
    subject: str, photo: FloatArray, id_photo: FloatArray, threshold: float = DEFAULT_THRESHOLD
) -> Enrolment:
    """Accept ``photo``'s template for ``subject`` only if it matches the ID-card template.

    Raises:
        IdentityMismatchError: the similarity is below ``threshold``.
    """
    score = cosine_similarity(photo, id_photo)
    if score < threshold:
        raise IdentityMismatchError(subject, score, threshold)
    return Enrolment(subject=subject, template=np.asarray(photo, dtype=np.float32), id_score=score)
