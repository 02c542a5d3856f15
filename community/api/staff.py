"""Routes for property staff: registering residents, tenants and vehicles, face enrolment."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends

from community.api.deps import Audit, Id, Services, User, require
from community.api.residents import person_out
from community.api.schemas import EnrolIn, EnrolOut, PersonCreated, PersonIn, PersonOut, TenantIn, VehicleIn, VehicleOut
from community.errors import CommunityError, Forbidden, NotFound
from community.models import PersonRow
from community.snapshot import STAFF_ROLES
from community.store.people import NewPerson

router = APIRouter(tags=["staff"])
AuditLog = Annotated[Audit, Depends()]


async def _register(
    body: PersonIn, user: PersonRow, services: Services, audit: Audit, lease: tuple[dt.date, dt.date] | None
) -> PersonCreated:
    store = services.store
    new = NewPerson(
        id=body.id,
        role=body.role,
        household_id=body.household_id,
        name=body.name,
        phone=body.phone,
        id_number=body.id_number,
        face_consent=body.face_consent,
        lease_start=lease[0] if lease else None,
        lease_end=lease[1] if lease else None,
    )
    now = services.clock()
    if lease is not None:
        pid = await store.people.add_tenant(new, registered_by=user.id, now=now)
    else:
        pid = await store.people.add_person(new, registered_by=user.id, now=now)
    if body.card:
        await store.credentials.add_credential(pid, "card", body.card, now=now)
    pin = None if body.face_consent else await store.credentials.ensure_alternative_credential(pid, now=now)
    await audit(user, "register_person", pid, role=body.role)
    return PersonCreated(id=pid, pin=pin)


@router.post("/people", response_model=PersonCreated, status_code=201)
async def register_person(body: PersonIn, user: User, services: Services, audit: AuditLog) -> PersonCreated:
    """Register a resident, staff member or police officer (staff)."""
    require(user, "staff")
    if body.role == "tenant":
        raise CommunityError("use_tenants", "register tenants through /tenants with a lease")
    return await _register(body, user, services, audit, None)


@router.post("/tenants", response_model=PersonCreated, status_code=201)
async def register_tenant(body: TenantIn, user: User, services: Services, audit: AuditLog) -> PersonCreated:
    """Register a tenant against a room with a lease (staff); access ends with the lease."""
    require(user, "staff")
    return await _register(body, user, services, audit, (body.lease_start, body.lease_end))


@router.get("/people/{person_id}", response_model=PersonOut)
async def get_person(person_id: Id, user: User, services: Services, audit: AuditLog) -> PersonOut:
    """A person's record: staff and police any, residents only members of their household."""
    row = await PersonRow.get_or_none(id=person_id)
    if user.role not in STAFF_ROLES and (
        row is None or (row.id != user.id and (user.household_id is None or row.household_id != user.household_id))
    ):
        raise Forbidden("not_your_household", "residents see only their own household")
    if row is None:
        raise NotFound("person_not_found", f"no person {person_id}")
    await audit(user, "view_person", person_id)
    return await person_out(services.store, row)


@router.post("/people/{person_id}/enrolment", response_model=EnrolOut)
async def enrol(person_id: Id, body: EnrolIn, user: User, services: Services, audit: AuditLog) -> EnrolOut:
    """人证合一 face enrolment: refused when the live face does not match the ID-card photo."""
    require(user, "staff")
    score = await services.store.credentials.enrol_face(
        person_id,
        body.id_photo_embedding,
        body.live_embedding,
        operator=user.id,
        now=services.clock(),
        threshold=services.face_threshold if body.threshold is None else body.threshold,
    )
    await audit(user, "enrol_face", person_id, score=round(score, 4))
    return EnrolOut(person_id=person_id, score=score)


@router.post("/vehicles", response_model=VehicleOut, status_code=201)
async def register_vehicle(body: VehicleIn, user: User, services: Services, audit: AuditLog) -> VehicleOut:
    """Register a vehicle to a person (staff)."""
    require(user, "staff")
    plate = await services.store.vehicles.add_vehicle(body.plate, body.owner_id, now=services.clock())
    await audit(user, "register_vehicle", body.owner_id)
    return VehicleOut(plate=plate, owner_id=body.owner_id)
