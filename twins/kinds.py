"""Device kinds: the schema of each kind's reported state, desired state and events.

Reports are partial, so every field is optional and ``null`` (delete) is allowed; unknown fields
are rejected. :func:`validate_reported`, :func:`validate_desired` and :func:`validate_event`
raise :class:`~twins.errors.SchemaError` with the JSON path of the first error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twins.errors import SchemaError

KINDS = ("vehicle_gate", "camera", "ptz_tracker", "door_lock", "mac_sniffer", "rfid_reader", "rfid_tag")
VIRTUAL_KINDS = frozenset({"rfid_tag"})

Unit = float  # a number in [0, 1]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Position(_Strict):
    x: float
    y: float


class CameraLink(_Strict):
    online: bool | None = None


class AllowEntry(_Strict):
    subject: str = Field(min_length=1, max_length=64)
    kind: Literal["face", "card", "pin", "qr", "plate"]
    credential: str = Field(max_length=4096)
    valid_from: float | None = None
    valid_until: float | None = None


class EdgeLimits(_Strict):
    max_failures: int = Field(ge=1, le=1000)
    window_s: float = Field(gt=0)
    lockout_s: float = Field(ge=0)


class AllowList(_Strict):
    """A door's sealed allow-list (docs/protocol.md, "Sealed allow-lists")."""

    version: int = Field(ge=0)
    seal: Literal["anfang-edge-v1"] | None = None
    key_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")
    face_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    limits: EdgeLimits | None = None
    entries: list[AllowEntry] = Field(max_length=5000)


# ---- reported / desired state per kind -------------------------------------------------------

AccessMode = Literal["central", "edge"]


class GateReported(_Strict):
    barrier: Literal["up", "down", "moving"] | None = None
    mode: Literal["auto", "hold_open", "hold_closed"] | None = None
    open_seconds: int | None = Field(default=None, ge=1, le=600)
    access_mode: AccessMode | None = None
    allow_list_version: int | None = None
    cameras: dict[str, CameraLink | None] | None = None


class GateDesired(_Strict):
    barrier: Literal["up", "down"] | None = None
    mode: Literal["auto", "hold_open", "hold_closed"] | None = None
    open_seconds: int | None = Field(default=None, ge=1, le=600)
    access_mode: AccessMode | None = None
    allow_list: AllowList | None = None


class CameraReported(_Strict):
    recording: bool | None = None
    fps: int | None = Field(default=None, ge=1, le=120)
    resolution: str | None = Field(default=None, max_length=32)


class CameraDesired(_Strict):
    recording: bool | None = None
    fps: int | None = Field(default=None, ge=1, le=120)


class TrackerReported(_Strict):
    pan: float | None = Field(default=None, ge=-180, le=360)
    tilt: float | None = Field(default=None, ge=-90, le=90)
    zoom: float | None = Field(default=None, ge=1, le=50)
    tracking: bool | None = None
    target_id: str | None = Field(default=None, max_length=64)


class TrackerDesired(_Strict):
    pan: float | None = Field(default=None, ge=-180, le=360)
    tilt: float | None = Field(default=None, ge=-90, le=90)
    zoom: float | None = Field(default=None, ge=1, le=50)
    tracking: bool | None = None


class DoorReported(_Strict):
    lock: Literal["locked", "unlocked"] | None = None
    door: Literal["open", "closed"] | None = None
    hold_seconds: int | None = Field(default=None, ge=1, le=600)
    access_mode: AccessMode | None = None
    allow_list_version: int | None = None
    liveness_threshold: float | None = Field(default=None, ge=0, le=1)


class DoorDesired(_Strict):
    lock: Literal["locked", "unlocked"] | None = None
    hold_seconds: int | None = Field(default=None, ge=1, le=600)
    access_mode: AccessMode | None = None
    liveness_threshold: float | None = Field(default=None, ge=0, le=1)
    allow_list: AllowList | None = None


class SnifferReported(_Strict):
    scanning: bool | None = None
    channel: int | None = Field(default=None, ge=1, le=196)


class SnifferDesired(_Strict):
    scanning: bool | None = None
    channel: int | None = Field(default=None, ge=1, le=196)


class ReaderReported(_Strict):
    scanning: bool | None = None
    tx_power_dbm: float | None = Field(default=None, ge=-30, le=36)


class ReaderDesired(_Strict):
    scanning: bool | None = None
    tx_power_dbm: float | None = Field(default=None, ge=-30, le=36)


class TagReported(_Strict):
    last_seen: float | None = None
    reader: str | None = Field(default=None, max_length=64)
    rssi: float | None = None
    position: Position | None = None
    battery: float | None = Field(default=None, ge=0, le=100)


class TagDesired(_Strict):
    pass


# ---- events ----------------------------------------------------------------------------------

_B64_MAX = 3 * 1024 * 1024  # base64 of a 2 MiB JPEG, with headroom


class PlateCaptured(_Strict):
    camera: str | None = Field(default=None, max_length=64)
    direction: Literal["in", "out"] = "in"
    plate: str | None = Field(default=None, max_length=16)
    confidence: float | None = Field(default=None, ge=0, le=1)
    # per character of `plate`: only characters read below the site's confidence may be tolerated
    char_confidences: list[Annotated[float, Field(ge=0, le=1)]] | None = Field(default=None, max_length=16)
    image_jpeg_b64: str | None = Field(default=None, max_length=_B64_MAX)


class FaceCaptured(_Strict):
    liveness: float | None = Field(default=None, ge=0, le=1)
    embedding: list[float] | None = Field(default=None, min_length=128, max_length=128)
    image_jpeg_b64: str | None = Field(default=None, max_length=_B64_MAX)
    camera: str | None = Field(default=None, max_length=64)
    direction: Literal["in", "out"] | None = None


class PersonCaptured(_Strict):
    """A person (whole body) seen by a camera, for the police view library (docs/viewlib.md)."""

    image_jpeg_b64: str = Field(min_length=4, max_length=_B64_MAX)
    box: list[Annotated[int, Field(ge=0)]] | None = Field(default=None, min_length=4, max_length=4)  # l, t, r, b
    camera: str | None = Field(default=None, max_length=64)
    direction: Literal["in", "out"] | None = None


class QrScanned(_Strict):
    payload: str = Field(max_length=4096)


class CardPresented(_Strict):
    card: str = Field(min_length=1, max_length=64)


class PinEntered(_Strict):
    pin: str | None = Field(default=None, min_length=4, max_length=12)  # left out by a door deciding itself


class DoorOpened(_Strict):
    by: Literal["access", "exit_button", "key", "remote"] = "access"
    subject: str | None = Field(default=None, max_length=64)


class Empty(_Strict):
    pass


class DoorHeldOpen(_Strict):
    seconds: float = Field(ge=0)


class AccessDecided(_Strict):
    allowed: bool
    subject: str | None = Field(default=None, max_length=64)
    credential_kind: Literal["face", "card", "pin", "qr", "plate"] | None = None
    reason: str = Field(max_length=200)


class AccessLockout(_Strict):
    """An edge door locked a credential kind (``scope: door``) or one credential after repeated refusals."""

    credential_kind: Literal["card", "pin", "qr"]
    scope: Literal["door", "credential"]
    until: float
    failures: int = Field(ge=1)


class BarrierOpened(_Strict):
    by: str | None = Field(default=None, max_length=64)


class Motion(_Strict):
    zone: str | None = Field(default=None, max_length=64)


class TargetTracked(_Strict):
    target_id: str = Field(max_length=64)
    target_kind: Literal["person", "vehicle"]
    x: float
    y: float
    confidence: float = Field(ge=0, le=1)


class MacSeen(_Strict):
    mac: str = Field(pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
    rssi: float = Field(ge=-120, le=0)
    randomized: bool = False


class TagSeen(_Strict):
    tag: str = Field(min_length=1, max_length=64)
    rssi: float = Field(ge=-120, le=0)


_DOOR_EVENTS: dict[str, type[_Strict]] = {
    "face_captured": FaceCaptured,
    "qr_scanned": QrScanned,
    "card_presented": CardPresented,
    "pin_entered": PinEntered,
    "door_opened": DoorOpened,
    "door_closed": Empty,
    "door_forced": Empty,
    "door_held_open": DoorHeldOpen,
    "access_decided": AccessDecided,
    "access_lockout": AccessLockout,
}


class KindSchema:
    """The three schemas of one device kind."""

    def __init__(
        self,
        reported: type[_Strict],
        desired: type[_Strict],
        events: dict[str, type[_Strict]],
        *,
        virtual: bool = False,
    ) -> None:
        self.reported = reported
        self.desired = desired
        self.events = events
        self.virtual = virtual


SCHEMAS: dict[str, KindSchema] = {
    "vehicle_gate": KindSchema(
        GateReported,
        GateDesired,
        {
            "plate_captured": PlateCaptured,
            "face_captured": FaceCaptured,
            "qr_scanned": QrScanned,
            "card_presented": CardPresented,
            "barrier_opened": BarrierOpened,
            "barrier_closed": Empty,
            "access_decided": AccessDecided,
            "access_lockout": AccessLockout,
        },
    ),
    "camera": KindSchema(
        CameraReported,
        CameraDesired,
        {
            "face_captured": FaceCaptured,
            "plate_captured": PlateCaptured,
            "person_captured": PersonCaptured,
            "motion": Motion,
        },
    ),
    "ptz_tracker": KindSchema(TrackerReported, TrackerDesired, {"target_tracked": TargetTracked}),
    "door_lock": KindSchema(DoorReported, DoorDesired, _DOOR_EVENTS),
    "mac_sniffer": KindSchema(SnifferReported, SnifferDesired, {"mac_seen": MacSeen}),
    "rfid_reader": KindSchema(ReaderReported, ReaderDesired, {"tag_seen": TagSeen}),
    "rfid_tag": KindSchema(TagReported, TagDesired, {}, virtual=True),
}

TELEMETRY_METRICS = frozenset({"battery", "rssi", "temperature", "uptime"})


def _first_error(exc: ValidationError, root: str) -> SchemaError:
    err = exc.errors()[0]
    path = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
    return SchemaError(err["msg"], path=path)


def schema_for(kind: str) -> KindSchema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise SchemaError(f"unknown device kind {kind!r}; known: {', '.join(KINDS)}", path="$.kind") from None


def validate_reported(kind: str, state: dict[str, Any]) -> None:
    try:
        schema_for(kind).reported.model_validate(state)
    except ValidationError as exc:
        raise _first_error(exc, "$.state") from None


def validate_desired(kind: str, state: dict[str, Any]) -> None:
    try:
        schema_for(kind).desired.model_validate(state)
    except ValidationError as exc:
        raise _first_error(exc, "$.desired") from None


def validate_event(kind: str, event_type: str, data: dict[str, Any]) -> None:
    schema = schema_for(kind)
    model = schema.events.get(event_type)
    if model is None:
        known = ", ".join(sorted(schema.events)) or "none"
        raise SchemaError(f"{kind} devices emit no event {event_type!r} (known: {known})", path="$.type")
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, "$.data") from None
