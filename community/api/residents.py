"""Routes for residents: their own record and household, visitor passes, their access history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from community.api.deps import Audit, Id, Services, User
from community.api.schemas import DecisionOut, HouseholdOut, PassIn, PassOut, PersonOut, decision_out
from community.errors import Forbidden, NotFound
from community.models import HouseholdRow, PassRow, PersonRow
from community.snapshot import STAFF_ROLES
from community.store import CommunityStore
from community.store.visitors import PASS_ROLES

router = APIRouter(tags=["resident"])
AuditLog = Annotated[Audit, Depends()]


async def person_out(store: CommunityStore, row: PersonRow) -> PersonOut:
    """A person's record with personal data decrypted (for an authorised viewer)."""
    return PersonOut(**await store.people.decrypted_person(row))


def pass_out(store: CommunityStore, row: PassRow, payload: str) -> PassOut:
    return PassOut(
        id=row.id,
        payload=payload,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        doors=list(store.passes.claims_of(row).doors),
        max_uses=row.max_uses,
        uses=row.uses,
        revoked=row.revoked,
        plate=row.plate,
    )


def _pass_roles(user: PersonRow) -> None:
    """Visitor passes are for residents and staff; police review and watch, they do not issue passes."""
    if user.role not in PASS_ROLES:
        raise Forbidden("role_not_allowed", "requires role resident or staff")


@router.get("/me", response_model=PersonOut)
async def me(user: User, services: Services, audit: AuditLog) -> PersonOut:
    """My own record."""
    await audit(user, "view_person", user.id)
    return await person_out(services.store, user)


@router.get("/households/{household_id}", response_model=HouseholdOut)
async def household(household_id: Id, user: User, services: Services, audit: AuditLog) -> HouseholdOut:
    """A household and its members: residents only their own; staff and police any."""
    if user.role not in STAFF_ROLES and user.household_id != household_id:
        raise Forbidden("not_your_household", "residents see only their own household")
    hh = await HouseholdRow.get_or_none(id=household_id)
    if hh is None:
        raise NotFound("household_not_found", f"no household {household_id}")
    store = services.store
    members = [await person_out(store, p) for p in await store.people.household_members(household_id)]
    await audit(user, "view_household", household_id, members=len(members))
    return HouseholdOut(id=hh.id, building_id=hh.building_id, unit=hh.unit, room=hh.room, members=members)


@router.get("/me/access", response_model=list[DecisionOut])
async def my_access(
    user: User, services: Services, audit: AuditLog, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[DecisionOut]:
    """My access history."""
    await audit(user, "view_access_history", user.id)
    return [decision_out(r) for r in await services.records.search_decisions(subject=user.id, limit=limit)]


@router.post("/passes", response_model=PassOut, status_code=201)
async def issue_pass(body: PassIn, user: User, services: Services, audit: AuditLog) -> PassOut:
    """Issue a visitor pass (residents within their rights; a tenant only during the lease)."""
    _pass_roles(user)
    store = services.store
    row, payload = await store.passes.issue_pass(
        user.id,
        valid_from=body.valid_from,
        valid_until=body.valid_until,
        doors=body.doors,
        max_uses=body.max_uses,
        now=services.clock(),
        visitor_name=body.visitor_name,
        visitor_phone=body.visitor_phone,
        plate=body.plate,
    )
    await audit(
        user, "issue_pass", row.id, uses=body.max_uses, visitor_data=bool(body.visitor_phone or body.visitor_name)
    )
    return pass_out(store, row, payload)


@router.get("/passes", response_model=list[PassOut])
async def my_passes(user: User, services: Services, audit: AuditLog) -> list[PassOut]:
    """Passes I issued (residents, staff)."""
    _pass_roles(user)
    rows = await PassRow.filter(issued_by=user.id).order_by("-created_at").limit(200)
    await audit(user, "list_passes", user.id, results=len(rows))
    return [pass_out(services.store, r, services.store.passes.payload_of(r)) for r in rows]


@router.delete("/passes/{pass_id}", status_code=204)
async def revoke_pass(pass_id: Id, user: User, services: Services, audit: AuditLog) -> None:
    """Revoke a pass I issued (staff: any)."""
    _pass_roles(user)
    await services.store.passes.revoke_pass(pass_id, by=user, now=services.clock())
    await audit(user, "revoke_pass", pass_id)
