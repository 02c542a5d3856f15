"""Errors raised by the twin core, each carrying the code the sender sees.

Tree::

    TwinError (code, message, device_id)
    ├── BadRequest        400  malformed JSON, wrong envelope, too deep, bad keys
    ├── NotFound          404  unknown device
    ├── VersionConflict   409  update names a version other than the current one
    ├── StaleReport       409  report older than the last applied one (seq / ts)
    ├── TooLarge          413  payload or resulting document over the size limit
    └── SchemaError       422  report/event fails its device kind's schema (path of first error)
"""

from __future__ import annotations


class TwinError(Exception):
    """Base error: ``code`` is the HTTP-like status answered on the sender's rejected topic."""

    code = 400

    def __init__(self, message: str, *, device_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.device_id = device_id

    def as_payload(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message}


class BadRequest(TwinError):
    code = 400


class NotFound(TwinError):
    code = 404


class VersionConflict(TwinError):
    code = 409


class StaleReport(TwinError):
    code = 409


class TooLarge(TwinError):
    code = 413


class SchemaError(TwinError):
    """A document failed its kind's schema; ``path`` is the JSON path of the first error."""

    code = 422

    def __init__(self, message: str, *, path: str, device_id: str | None = None) -> None:
        super().__init__(f"{path}: {message}", device_id=device_id)
        self.path = path
