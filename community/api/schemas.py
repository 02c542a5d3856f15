"""Request and response bodies of the community HTTP API, and conversions from stored rows."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from community.models import AccessDecisionRow, CaptureRow, WatchRow
from community.tokens import TokenInfo
from registry.alarms import Alarm


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


Embedding = Annotated[list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=128, max_length=128)]
ResidentRole = Literal["owner", "family", "tenant", "elderly_alone", "child", "staff", "police"]


class PersonIn(_Strict):
    """A person to register (staff)."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")] | None = None
    role: ResidentRole
    household_id: Annotated[str, Field(max_length=64)] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    phone: Annotated[str, Field(max_length=20)] | None = None
    id_number: Annotated[str, Field(max_length=18)] | None = None
    face_consent: bool = False
    card: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class TenantIn(PersonIn):
    """A tenant: a person with a lease on a room (staff)."""

    role: Literal["tenant"] = "tenant"
    household_id: Annotated[str, Field(max_length=64)]
    lease_start: Annotated[dt.date, Field(ge=dt.date(2000, 1, 1), le=dt.date(2100, 1, 1))]
    lease_end: Annotated[dt.date, Field(ge=dt.date(2000, 1, 1), le=dt.date(2100, 1, 1))]


class PersonCreated(BaseModel):
    """Result of a registration; ``pin`` is shown once when one was generated (no face consent)."""

    id: str
    pin: str | None = None


class PersonOut(BaseModel):
    """A person's record, personal data decrypted for an authorised viewer."""

    id: str
    role: str
    household_id: str | None
    name: str | None
    phone: str | None
    id_number: str | None
    face_consent: bool
    lease_start: float | None
    lease_end: float | None
    active: bool


class HouseholdOut(BaseModel):
    """A household and its members."""

    id: str
    building_id: str
    unit: int | None
    room: str | None
    members: list[PersonOut]


class EnrolIn(_Strict):
    """人证合一: ID-card photo embedding and live face embedding."""

    id_photo_embedding: Embedding
    live_embedding: Embedding
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] | None = None  # None: the site's face threshold


class EnrolOut(BaseModel):
    """The recorded 人证合一 check."""

    person_id: str
    score: float


class VehicleIn(_Strict):
    """A vehicle to register (staff)."""

    plate: Annotated[str, Field(min_length=1, max_length=16)]
    owner_id: Annotated[str, Field(max_length=64)]


class VehicleOut(BaseModel):
    """A registered vehicle."""

    plate: str
    owner_id: str


class PassIn(_Strict):
    """A visitor pass request (resident)."""

    visitor_name: Annotated[str, Field(max_length=64)] | None = None
    visitor_phone: Annotated[str, Field(max_length=20)] | None = None
    valid_from: Annotated[float, Field(ge=0, le=4102444800)]
    valid_until: Annotated[float, Field(ge=0, le=4102444800)]
    doors: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=32)] | None = None
    max_uses: Annotated[int, Field(ge=1, le=100)] = 1
    plate: Annotated[str, Field(max_length=16)] | None = None


class PassOut(BaseModel):
    """A visitor pass; ``payload`` is the signed QR content."""

    id: str
    payload: str
    valid_from: float
    valid_until: float
    doors: list[str]
    max_uses: int
    uses: int
    revoked: bool
    plate: str | None


class DecisionOut(BaseModel):
    """An access decision."""

    id: str
    ts: float
    device_id: str
    mode: str
    allowed: bool
    reason: str
    subject_id: str | None
    subject_role: str | None
    credential_kind: str
    credential_ref: str | None
    score: float | None


class CaptureOut(BaseModel):
    """A capture at a camera, door or gate."""

    id: str
    ts: float
    device_id: str
    camera: str | None
    credential_kind: str
    plate: str | None
    subject_id: str | None
    score: float | None
    snapshot_ref: str | None


class WatchIn(_Strict):
    """A watchlist entry: a plate, or a face template."""

    kind: Literal["face", "plate"]
    reason: Annotated[str, Field(min_length=1, max_length=200)]
    plate: Annotated[str, Field(max_length=16)] | None = None
    template: Embedding | None = None
    label: Annotated[str, Field(max_length=64)] | None = None


class WatchOut(BaseModel):
    """A watchlist entry (templates are never returned)."""

    id: str
    kind: str
    plate: str | None
    label: str | None
    reason: str
    added_by: str
    created_at: float


class AlarmOut(BaseModel):
    """An alarm of the site (from a rule, access control or the platform) and where it is in its life."""

    id: str
    kind: str
    severity: str
    subject: str
    message: str
    source: str
    state: str
    audience: str
    raised_at: float
    updated_at: float
    count: int
    acked_by: str | None
    acked_at: float | None
    ack_note: str | None
    cleared_by: str | None
    cleared_at: float | None
    clear_note: str | None
    escalation_level: int
    evidence: dict[str, Any]
    data: dict[str, Any]


class AlarmNoteIn(_Strict):
    """What the person acknowledging or clearing an alarm writes down."""

    note: Annotated[str, Field(max_length=500)] = ""


class ErrorOut(BaseModel):
    """Error body."""

    code: str
    message: str
    field: str | None = None


def decision_out(r: AccessDecisionRow) -> DecisionOut:
    return DecisionOut(
        id=r.id,
        ts=r.ts,
        device_id=r.device_id,
        mode=r.mode,
        allowed=r.allowed,
        reason=r.reason,
        subject_id=r.subject_id,
        subject_role=r.subject_role,
        credential_kind=r.credential_kind,
        credential_ref=r.credential_ref,
        score=r.score,
    )


def capture_out(r: CaptureRow) -> CaptureOut:
    return CaptureOut(
        id=r.id,
        ts=r.ts,
        device_id=r.device_id,
        camera=r.camera,
        credential_kind=r.credential_kind,
        plate=r.plate,
        subject_id=r.subject_id,
        score=r.score,
        snapshot_ref=r.snapshot_ref,
    )


def watch_out(r: WatchRow) -> WatchOut:
    return WatchOut(
        id=r.id,
        kind=r.kind,
        plate=r.plate,
        label=r.label,
        reason=r.reason,
        added_by=r.added_by,
        created_at=r.created_at,
    )


def alarm_out(a: Alarm) -> AlarmOut:
    return AlarmOut(
        id=a.id,
        kind=a.kind,
        severity=a.severity,
        subject=a.subject,
        message=a.message,
        source=a.rule_id,
        state=a.state,
        audience=a.audience,
        raised_at=a.raised_at,
        updated_at=a.updated_at,
        count=a.count,
        acked_by=a.acked_by,
        acked_at=a.acked_at,
        ack_note=a.ack_note,
        cleared_by=a.cleared_by,
        cleared_at=a.cleared_at,
        clear_note=a.clear_reason,
        escalation_level=a.escalation_level,
        evidence=a.evidence,
        data=a.data,
    )


class TokenIn(_Strict):
    """A new API token: for myself, or (staff) for a resident; its lifetime is capped at the role's."""

    person_id: Annotated[str, Field(max_length=64)] | None = None
    label: Annotated[str, Field(max_length=64)] | None = None
    ttl_hours: Annotated[float, Field(gt=0, le=24 * 366)] | None = None


class TokenOut(BaseModel):
    """An API token as it may be shown: never the token or its hash."""

    id: str
    person_id: str
    role: str
    label: str | None
    created_at: float
    expires_at: float
    revoked: bool
    revoked_at: float | None
    created_by: str | None


class TokenCreated(TokenOut):
    """A token just issued: ``token`` is shown this once."""

    token: str


def token_out(t: TokenInfo) -> TokenOut:
    return TokenOut(
        id=t.id,
        person_id=t.person_id,
        role=t.role,
        label=t.label,
        created_at=t.created_at,
        expires_at=t.expires_at,
        revoked=t.revoked,
        revoked_at=t.revoked_at,
        created_by=t.created_by,
    )
