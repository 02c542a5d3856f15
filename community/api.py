"""HTTP API of community access control (FastAPI; OpenAPI at ``/openapi.json``).

Roles: residents (owner, family, tenant, elderly_alone, child) see their own household, issue and
revoke visitor passes and read their own access history; property staff register residents,
tenants and vehicles; community police search captures and decisions, manage the watchlist and
acknowledge its alarms. Every read of personal data writes an audit row. Bearer tokens come from
``anfang community token``; only their hashes are stored.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from community.errors import CommunityError, Forbidden, NotFound
from community.models import AccessDecisionRow, AlarmRow, CaptureRow, HouseholdRow, PassRow, PersonRow, WatchRow
from community.records import AccessRecords
from community.snapshot import RESIDENT_ROLES, STAFF_ROLES
from community.store import CommunityStore, NewPerson

__all__ = ["CommunityServices", "create_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


@dataclass
class CommunityServices:
    """What the API needs: the registry, the records and a clock."""

    store: CommunityStore
    records: AccessRecords
    clock: Callable[[], float] = field(default=time.time)


class Unauthorized(CommunityError):
    """Missing or invalid bearer token."""

    status = 401


# --- request / response models ---------------------------------------------------------------------
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
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.363


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
    """A watchlist alarm."""

    id: str
    ts: float
    device_id: str
    camera: str | None
    subject: str | None
    reason: str
    snapshot_ref: str | None
    score: float | None
    acknowledged_by: str | None
    acknowledged_at: float | None


class ErrorOut(BaseModel):
    """Error body."""

    code: str
    message: str
    field: str | None = None


def _decision(r: AccessDecisionRow) -> DecisionOut:
    return DecisionOut(id=r.id, ts=r.ts, device_id=r.device_id, mode=r.mode, allowed=r.allowed, reason=r.reason,
                       subject_id=r.subject_id, subject_role=r.subject_role, credential_kind=r.credential_kind,
                       credential_ref=r.credential_ref, score=r.score)


def _capture(r: CaptureRow) -> CaptureOut:
    return CaptureOut(id=r.id, ts=r.ts, device_id=r.device_id, camera=r.camera, credential_kind=r.credential_kind,
                      plate=r.plate, subject_id=r.subject_id, score=r.score, snapshot_ref=r.snapshot_ref)


def _watch(r: WatchRow) -> WatchOut:
    return WatchOut(id=r.id, kind=r.kind, plate=r.plate, label=r.label, reason=r.reason, added_by=r.added_by,
                    created_at=r.created_at)


def _alarm(r: AlarmRow) -> AlarmOut:
    return AlarmOut(id=r.id, ts=r.ts, device_id=r.device_id, camera=r.camera, subject=r.subject, reason=r.reason,
                    snapshot_ref=r.snapshot_ref, score=r.score, acknowledged_by=r.acknowledged_by,
                    acknowledged_at=r.acknowledged_at)


_bearer = HTTPBearer(auto_error=False)


async def current_user(request: Request,
                       cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> PersonRow:
    """The person a request's bearer token belongs to (401 otherwise)."""
    if cred is None or cred.scheme.lower() != "bearer":
        raise Unauthorized("no_token", "bearer token required")
    services: CommunityServices = request.app.state.services
    person = await services.records.person_for_token(cred.credentials)
    if person is None:
        raise Unauthorized("bad_token", "unknown or revoked token")
    return person


User = Annotated[PersonRow, Depends(current_user)]
Since = Annotated[float | None, Query(ge=0, le=4102444800)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str | None, Query(max_length=64)]
#: Ids in paths: the id columns hold at most 64 characters (longer ones cannot exist).
Id = Annotated[str, Path(max_length=64)]


def create_app(services: CommunityServices, *, lifespan: Lifespan | None = None) -> FastAPI:
    """The community HTTP API over ``services`` (Tortoise must already be initialised, or by ``lifespan``)."""
    app = FastAPI(title="anfang community access", version="1.0", lifespan=lifespan,
                  responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut},
                             409: {"model": ErrorOut}, 422: {"model": ErrorOut}})
    store, records, clock = services.store, services.records, services.clock
    app.state.services = services

    @app.exception_handler(CommunityError)
    async def _community_error(_: Request, exc: CommunityError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message, "field": exc.field}, status_code=exc.status)

    def require(user: PersonRow, *roles: str) -> None:
        if user.role not in roles:
            raise Forbidden("role_not_allowed", f"requires role {' or '.join(roles)}")

    async def audit(user: PersonRow, action: str, target: str | None, **detail: Any) -> None:
        await records.audit(actor=user.id, actor_role=user.role, action=action, target=target, now=clock(),
                            detail={k: v for k, v in detail.items() if v is not None} or None)

    async def person_out(row: PersonRow) -> PersonOut:
        return PersonOut(**await store.decrypted_person(row))

    # --- residents --------------------------------------------------------------------------------
    @app.get("/me", response_model=PersonOut, tags=["resident"])
    async def me(user: User) -> PersonOut:
        """My own record."""
        await audit(user, "view_person", user.id)
        return await person_out(user)

    @app.get("/households/{household_id}", response_model=HouseholdOut, tags=["resident"])
    async def household(household_id: Id, user: User) -> HouseholdOut:
        """A household and its members: residents only their own; staff and police any."""
        if user.role not in STAFF_ROLES and user.household_id != household_id:
            raise Forbidden("not_your_household", "residents see only their own household")
        hh = await HouseholdRow.get_or_none(id=household_id)
        if hh is None:
            raise NotFound("household_not_found", f"no household {household_id}")
        members = [await person_out(p) for p in await store.household_members(household_id)]
        await audit(user, "view_household", household_id, members=len(members))
        return HouseholdOut(id=hh.id, building_id=hh.building_id, unit=hh.unit, room=hh.room, members=members)

    @app.get("/me/access", response_model=list[DecisionOut], tags=["resident"])
    async def my_access(user: User, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[DecisionOut]:
        """My access history."""
        await audit(user, "view_access_history", user.id)
        return [_decision(r) for r in await records.search_decisions(subject=user.id, limit=limit)]

    @app.post("/passes", response_model=PassOut, status_code=201, tags=["resident"])
    async def issue_pass(body: PassIn, user: User) -> PassOut:
        """Issue a visitor pass (residents within their rights; a tenant only during the lease)."""
        if user.role not in RESIDENT_ROLES | STAFF_ROLES:
            raise Forbidden("role_not_allowed", "cannot issue passes")
        row, payload = await store.issue_pass(user.id, valid_from=body.valid_from, valid_until=body.valid_until,
                                              doors=body.doors, max_uses=body.max_uses, now=clock(),
                                              visitor_name=body.visitor_name, visitor_phone=body.visitor_phone,
                                              plate=body.plate)
        return _pass(row, payload)

    def _pass(row: PassRow, payload: str) -> PassOut:
        return PassOut(id=row.id, payload=payload, valid_from=row.valid_from, valid_until=row.valid_until,
                       doors=list(store.claims_of(row).doors), max_uses=row.max_uses, uses=row.uses,
                       revoked=row.revoked, plate=row.plate)

    @app.get("/passes", response_model=list[PassOut], tags=["resident"])
    async def my_passes(user: User) -> list[PassOut]:
        """Passes I issued."""
        rows = await PassRow.filter(issued_by=user.id).order_by("-created_at").limit(200)
        return [_pass(r, store.payload_of(r)) for r in rows]

    @app.delete("/passes/{pass_id}", status_code=204, tags=["resident"])
    async def revoke_pass(pass_id: Id, user: User) -> None:
        """Revoke a pass I issued (staff and police: any)."""
        await store.revoke_pass(pass_id, by=user, now=clock())

    # --- property staff ---------------------------------------------------------------------------
    async def _register(body: PersonIn, user: PersonRow, lease: tuple[dt.date, dt.date] | None) -> PersonCreated:
        new = NewPerson(id=body.id, role=body.role, household_id=body.household_id, name=body.name,
                        phone=body.phone, id_number=body.id_number, face_consent=body.face_consent,
                        lease_start=lease[0] if lease else None, lease_end=lease[1] if lease else None)
        now = clock()
        if lease is not None:
            pid = await store.add_tenant(new, registered_by=user.id, now=now)
        else:
            pid = await store.add_person(new, registered_by=user.id, now=now)
        if body.card:
            await store.add_credential(pid, "card", body.card, now=now)
        pin = None if body.face_consent else await store.ensure_alternative_credential(pid, now=now)
        await audit(user, "register_person", pid, role=body.role)
        return PersonCreated(id=pid, pin=pin)

    @app.post("/people", response_model=PersonCreated, status_code=201, tags=["staff"])
    async def register_person(body: PersonIn, user: User) -> PersonCreated:
        """Register a resident, staff member or police officer (staff)."""
        require(user, "staff")
        if body.role == "tenant":
            raise CommunityError("use_tenants", "register tenants through /tenants with a lease")
        return await _register(body, user, None)

    @app.post("/tenants", response_model=PersonCreated, status_code=201, tags=["staff"])
    async def register_tenant(body: TenantIn, user: User) -> PersonCreated:
        """Register a tenant against a room with a lease (staff); access ends with the lease."""
        require(user, "staff")
        return await _register(body, user, (body.lease_start, body.lease_end))

    @app.get("/people/{person_id}", response_model=PersonOut, tags=["staff"])
    async def get_person(person_id: Id, user: User) -> PersonOut:
        """A person's record: staff and police any, residents only members of their household."""
        row = await PersonRow.get_or_none(id=person_id)
        if user.role not in STAFF_ROLES and (row is None or (row.id != user.id and (
                user.household_id is None or row.household_id != user.household_id))):
            raise Forbidden("not_your_household", "residents see only their own household")
        if row is None:
            raise NotFound("person_not_found", f"no person {person_id}")
        await audit(user, "view_person", person_id)
        return await person_out(row)

    @app.post("/people/{person_id}/enrolment", response_model=EnrolOut, tags=["staff"])
    async def enrol(person_id: Id, body: EnrolIn, user: User) -> EnrolOut:
        """人证合一 face enrolment: refused when the live face does not match the ID-card photo."""
        require(user, "staff")
        score = await store.enrol_face(person_id, body.id_photo_embedding, body.live_embedding, operator=user.id,
                                       now=clock(), threshold=body.threshold)
        await audit(user, "enrol_face", person_id, score=round(score, 4))
        return EnrolOut(person_id=person_id, score=score)

    @app.post("/vehicles", response_model=VehicleOut, status_code=201, tags=["staff"])
    async def register_vehicle(body: VehicleIn, user: User) -> VehicleOut:
        """Register a vehicle to a person (staff)."""
        require(user, "staff")
        plate = await store.add_vehicle(body.plate, body.owner_id, now=clock())
        return VehicleOut(plate=plate, owner_id=body.owner_id)

    # --- police -----------------------------------------------------------------------------------
    @app.get("/decisions", response_model=list[DecisionOut], tags=["police"])
    async def search_decisions(user: User, since: Since = None, until: Since = None, device: Text = None,
                               plate: Text = None, subject: Text = None, limit: Limit = 100) -> list[DecisionOut]:
        """Search access decisions by time, place, plate and person (police, staff)."""
        require(user, "police", "staff")
        rows = await records.search_decisions(since=since, until=until, device=device, plate=plate,
                                              subject=subject, limit=limit)
        await audit(user, "search_decisions", subject or plate, device=device, results=len(rows))
        return [_decision(r) for r in rows]

    @app.get("/captures", response_model=list[CaptureOut], tags=["police"])
    async def search_captures(user: User, since: Since = None, until: Since = None, device: Text = None,
                              plate: Text = None, subject: Text = None, limit: Limit = 100) -> list[CaptureOut]:
        """Search captures by time, place, plate and person (police)."""
        require(user, "police")
        rows = await records.search_captures(since=since, until=until, device=device, plate=plate,
                                             subject=subject, limit=limit)
        await audit(user, "search_captures", subject or plate, device=device, results=len(rows))
        return [_capture(r) for r in rows]

    @app.get("/watchlist", response_model=list[WatchOut], tags=["police"])
    async def list_watch(user: User) -> list[WatchOut]:
        """The active watchlist (police only)."""
        require(user, "police")
        await audit(user, "view_watchlist", None)
        return [_watch(r) for r in await WatchRow.filter(site=store.site, active=True).order_by("created_at")]

    @app.post("/watchlist", response_model=WatchOut, status_code=201, tags=["police"])
    async def add_watch(body: WatchIn, user: User) -> WatchOut:
        """Add a plate or face of interest (police only)."""
        require(user, "police")
        wid = await store.add_watch(kind=body.kind, reason=body.reason, added_by=user.id, now=clock(),
                                    plate=body.plate, template=body.template, label=body.label)
        await audit(user, "add_watch", wid)
        return _watch(await WatchRow.get(id=wid))

    @app.delete("/watchlist/{watch_id}", status_code=204, tags=["police"])
    async def remove_watch(watch_id: Id, user: User) -> None:
        """Remove a watchlist entry (police only)."""
        require(user, "police")
        await store.remove_watch(watch_id)
        await audit(user, "remove_watch", watch_id)

    @app.get("/alarms", response_model=list[AlarmOut], tags=["police"])
    async def list_alarms(user: User, open_only: bool = False, limit: Limit = 100) -> list[AlarmOut]:
        """Watchlist alarms (police only)."""
        require(user, "police")
        await audit(user, "view_alarms", None)
        return [_alarm(r) for r in await records.list_alarms(open_only=open_only, limit=limit)]

    @app.post("/alarms/{alarm_id}/ack", response_model=AlarmOut, tags=["police"])
    async def ack_alarm(alarm_id: Id, user: User) -> AlarmOut:
        """Acknowledge a watchlist alarm (police only)."""
        require(user, "police")
        return _alarm(await records.ack_alarm(alarm_id, by=user.id, now=clock()))

    return app
