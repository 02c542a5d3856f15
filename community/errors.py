"""Exceptions of the community package, with structured fields the API maps to HTTP status codes."""

from __future__ import annotations

__all__ = [
    "CommunityError",
    "ConsentError",
    "EnrolmentRefused",
    "Forbidden",
    "NotFound",
    "RegistryConflict",
    "RegistryInvalid",
]


class CommunityError(Exception):
    """Base class. ``code`` is a machine-friendly reason, ``status`` the matching HTTP status."""

    status = 400

    def __init__(self, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class RegistryInvalid(CommunityError):
    """Input fails validation (bad ID-card number, plate, role, window...)."""

    status = 422


class RegistryConflict(CommunityError):
    """The record would duplicate an existing one (ID-card number, plate, card, PIN)."""

    status = 409


class NotFound(CommunityError):
    """A referenced person, household, pass or device does not exist."""

    status = 404


class Forbidden(CommunityError):
    """The acting user's role or own data does not allow this."""

    status = 403


class ConsentError(CommunityError):
    """Face data offered for a person who has not consented to face recognition."""

    status = 409


class EnrolmentRefused(CommunityError):
    """人证合一 failed: the live face does not match the ID-card photo.

    Attributes:
        score: cosine similarity of the two templates.
        threshold: the minimum required.
    """

    status = 422

    def __init__(self, score: float, threshold: float) -> None:
        super().__init__("face_id_mismatch", f"live face does not match the ID photo ({score:.3f} < {threshold})")
        self.score = score
        self.threshold = threshold
