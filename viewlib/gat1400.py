"""The GA/T 1400 objects the platform uploads, built from device events (pure: no IO, no clock).

Written from the standard's published structure (GA/T 1400.3 data objects, GA/T 1400.4 interface):

- Every object names its camera by a 20-digit GB/T 28181-style code (``DeviceID``).
- An image is identified by ``ImageID`` = camera code (20) + ``02`` (image) + shot time (14,
  ``YYYYMMDDhhmmss`` local time) + a 5-digit sequence: 41 digits. It is the ``SourceID`` of the
  objects found in it.
- A face, person or motor vehicle is identified by its image's id + a 2-digit type (``06`` face,
  ``01`` person, ``02`` motor vehicle) + a 5-digit sequence: 48 digits.
- Objects travel in lists: ``{"FaceListObject": {"FaceObject": [...]}}`` to ``/VIID/Faces``,
  ``MotorVehicleListObject``/``MotorVehicleObject`` to ``/VIID/MotorVehicles``,
  ``PersonListObject``/``PersonObject`` to ``/VIID/Persons``; each carries its images inline in
  ``SubImageList.SubImageInfoObject[].Data`` (base64).
- The server answers ``ResponseStatusObject`` (or a ``ResponseStatusListObject`` of them) with
  ``StatusCode`` 0 for success, one per object ``Id``.

Sequences derive from the device's event id, so the same capture always gets the same ids and a
server that stores by id keeps one copy of a capture uploaded twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, Literal

__all__ = [
    "CAPTURE_EVENTS",
    "PATHS",
    "Capture",
    "CaptureError",
    "Kind",
    "Status",
    "build_object",
    "capture_from_event",
    "jpeg_size",
    "list_body",
    "parse_statuses",
    "shot_time",
    "system_body",
]

Kind = Literal["face", "vehicle", "person"]

#: device event type -> the kind of object it becomes
CAPTURE_EVENTS: dict[str, Kind] = {"face_captured": "face", "plate_captured": "vehicle", "person_captured": "person"}
#: where each kind is uploaded, and its list and object names
PATHS: dict[Kind, str] = {"face": "/VIID/Faces", "vehicle": "/VIID/MotorVehicles", "person": "/VIID/Persons"}
_NAMES: dict[Kind, tuple[str, str, str]] = {  # list object, object, id field
    "face": ("FaceListObject", "FaceObject", "FaceID"),
    "vehicle": ("MotorVehicleListObject", "MotorVehicleObject", "MotorVehicleID"),
    "person": ("PersonListObject", "PersonObject", "PersonID"),
}
_TYPE_CODE: dict[Kind, str] = {"face": "06", "vehicle": "02", "person": "01"}
# SubImageInfoObject.Type: 11 face image, 01 vehicle (large) image, 10 person image
_IMAGE_TYPE: dict[Kind, str] = {"face": "11", "vehicle": "01", "person": "10"}
# the person flags (driver, foreigner, suspected terrorist, ...): 2 = not determined, as for automatic capture
_UNDETERMINED = ("IsDriver", "IsForeigner", "IsSuspectedTerrorist", "IsCriminalInvolved", "IsDetainees", "IsVictim",
                 "IsSuspiciousPerson")  # fmt: skip


class CaptureError(ValueError):
    """A capture event that cannot become an object (bad image, bad box); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Capture:
    """One capture of a camera, as the view library needs it."""

    kind: Kind
    device_code: str  # the camera's 20-digit code
    event_id: str
    ts: float
    image: bytes  # JPEG
    plate: str | None = None
    plate_confidence: float | None = None  # 0..1
    box: tuple[int, int, int, int] | None = None  # left, top, right, bottom in the image


@dataclass(frozen=True, slots=True)
class Status:
    """One ``ResponseStatusObject``."""

    id: str
    code: str
    text: str

    @property
    def ok(self) -> bool:
        return self.code == "0"


def shot_time(ts: float, tz: tzinfo) -> str:
    """``YYYYMMDDhhmmss`` in the site's local time."""
    return datetime.fromtimestamp(ts, tz).strftime("%Y%m%d%H%M%S")


def _sequence(event_id: str, salt: str) -> str:
    digest = hashlib.sha256(f"{salt}\x00{event_id}".encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 100_000:05d}"


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's start-of-frame marker, or ``None`` when there is none."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return (width, height) if width and height else None
        if length < 2:
            return None
        i += 2 + length
    return None


def capture_from_event(
    event_type: str,
    event_id: str,
    ts: float,
    data: Mapping[str, Any],
    device_code: str,
    *,
    max_image_bytes: int,
) -> Capture | None:
    """The capture in a device event, or ``None`` when it is not one or carries no image.

    Raises:
        CaptureError: the image is not base64 JPEG, is too large, or the box is malformed.
    """
    kind = CAPTURE_EVENTS.get(event_type)
    b64 = data.get("image_jpeg_b64")
    if kind is None or not b64:
        return None
    if not isinstance(b64, str) or len(b64) > max_image_bytes * 4 // 3 + 4:
        raise CaptureError(f"image_jpeg_b64 is not a string of at most {max_image_bytes} bytes")
    try:
        image = base64.b64decode(b64, validate=True)
    except binascii.Error:
        raise CaptureError("image_jpeg_b64 is not base64") from None
    if image[:2] != b"\xff\xd8":
        raise CaptureError("image_jpeg_b64 is not a JPEG image")
    box = data.get("box")
    if box is not None:
        if not (isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int) and v >= 0 for v in box)):
            raise CaptureError("box must be [left, top, right, bottom] in pixels")
        box = (box[0], box[1], box[2], box[3])
    plate = data.get("plate")
    confidence = data.get("confidence")
    return Capture(
        kind,
        device_code,
        event_id,
        ts,
        image,
        plate=str(plate) if plate else None,
        plate_confidence=float(confidence) if isinstance(confidence, int | float) else None,
        box=box,
    )


def build_object(capture: Capture, tz: tzinfo) -> tuple[str, dict[str, Any]]:
    """The capture's object id and its GA/T 1400 object (face, motor vehicle or person) with the image."""
    shot = shot_time(capture.ts, tz)
    image_id = capture.device_code + "02" + shot + _sequence(capture.event_id, "image")
    object_id = image_id + _TYPE_CODE[capture.kind] + "00001"  # the first (only) object of its image
    size = jpeg_size(capture.image)
    width, height = size if size else (0, 0)
    left, top, right, bottom = capture.box or (0, 0, width, height)
    sub_image: dict[str, Any] = {
        "ImageID": image_id,
        "DeviceID": capture.device_code,
        "StoragePath": "",
        "Type": _IMAGE_TYPE[capture.kind],
        "FileFormat": "Jpeg",
        "ShotTime": shot,
        "Width": width,
        "Height": height,
        "Data": base64.b64encode(capture.image).decode("ascii"),
    }
    obj: dict[str, Any] = {
        _NAMES[capture.kind][2]: object_id,
        "InfoKind": 1,  # automatic capture
        "SourceID": image_id,
        "DeviceID": capture.device_code,
        "LeftTopX": left,
        "LeftTopY": top,
        "RightBtmX": right,
        "RightBtmY": bottom,
    }
    if capture.kind == "vehicle":
        obj |= {
            "StorageUrl1": "",  # the image travels inline (SubImageList), not by URL
            "HasPlate": "1" if capture.plate else "0",
            "PlateNo": capture.plate or "",
            "VehicleColor": "Z",  # other / not determined
            "PassTime": shot,
        }
        if capture.plate_confidence is not None:
            obj["PlateReliability"] = str(round(max(0.0, min(1.0, capture.plate_confidence)) * 100))
    else:
        prefix = "Face" if capture.kind == "face" else "Person"
        obj |= {f"{prefix}AppearTime": shot, f"{prefix}DisAppearTime": shot}
        obj |= dict.fromkeys(_UNDETERMINED, 2)
    obj["SubImageList"] = {"SubImageInfoObject": [sub_image]}
    return object_id, obj


def list_body(kind: Kind, objects: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The request body uploading ``objects`` of one kind."""
    list_name, object_name, _ = _NAMES[kind]
    return {list_name: {object_name: list(objects)}}


def system_body(what: Literal["Register", "Keepalive", "UnRegister"], device_id: str) -> dict[str, Any]:
    """The body of ``/VIID/System/{what}``."""
    return {f"{what}Object": {"DeviceID": device_id}}


def parse_statuses(body: Any) -> list[Status]:
    """The ``ResponseStatusObject``\\ s of an answer (single or list); ``[]`` when there is none."""
    if not isinstance(body, dict):
        return []
    found: Any = body.get("ResponseStatusObject")
    if found is None and isinstance(body.get("ResponseStatusListObject"), dict):
        found = body["ResponseStatusListObject"].get("ResponseStatusObject")
    items = found if isinstance(found, list) else [found] if isinstance(found, dict) else []
    return [
        Status(str(s.get("Id", s.get("ID", ""))), str(s.get("StatusCode", "")), str(s.get("StatusString", "")))
        for s in items
        if isinstance(s, dict)
    ]
