"""Routes for community police (and staff where noted): decisions, captures, the watchlist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from community.api.deps import Audit, Id, Limit, Services, Since, Text, User, require
from community.api.schemas import CaptureOut, DecisionOut, WatchIn, WatchOut, capture_out, decision_out, watch_out
from community.models import WatchRow
from privacy.audit import plate_ref

router = APIRouter(tags=["police"])
AuditLog = Annotated[Audit, Depends()]


def _plate(services: Services, plate: str | None) -> str | None:
    """The audit row's subject for a plate search: a keyed reference, never the plate."""
    return plate_ref(services.store.cipher.lookup_hash, plate) if plate else None


@router.get("/decisions", response_model=list[DecisionOut])
async def search_decisions(
    user: User,
    services: Services,
    audit: AuditLog,
    since: Since = None,
    until: Since = None,
    device: Text = None,
    plate: Text = None,
    subject: Text = None,
    limit: Limit = 100,
) -> list[DecisionOut]:
    """Search access decisions by time, place, plate and person (police, staff)."""
    require(user, "police", "staff")
    rows = await services.records.search_decisions(
        since=since, until=until, device=device, plate=plate, subject=subject, limit=limit
    )
    await audit(user, "search_decisions", subject or _plate(services, plate), device=device, results=len(rows))
    return [decision_out(r) for r in rows]


@router.get("/captures", response_model=list[CaptureOut])
async def search_captures(
    user: User,
    services: Services,
    audit: AuditLog,
    since: Since = None,
    until: Since = None,
    device: Text = None,
    plate: Text = None,
    subject: Text = None,
    limit: Limit = 100,
) -> list[CaptureOut]:
    """Search captures by time, place, plate and person (police)."""
    require(user, "police")
    rows = await services.records.search_captures(
        since=since, until=until, device=device, plate=plate, subject=subject, limit=limit
    )
    await audit(user, "search_captures", subject or _plate(services, plate), device=device, results=len(rows))
    return [capture_out(r) for r in rows]


@router.get("/watchlist", response_model=list[WatchOut])
async def list_watch(user: User, services: Services, audit: AuditLog) -> list[WatchOut]:
    """The active watchlist (police only)."""
    require(user, "police")
    await audit(user, "view_watchlist", None)
    return [watch_out(r) for r in await WatchRow.filter(site=services.store.site, active=True).order_by("created_at")]


@router.post("/watchlist", response_model=WatchOut, status_code=201)
async def add_watch(body: WatchIn, user: User, services: Services, audit: AuditLog) -> WatchOut:
    """Add a plate or face of interest (police only)."""
    require(user, "police")
    wid = await services.store.watch.add_watch(
        kind=body.kind,
        reason=body.reason,
        added_by=user.id,
        now=services.clock(),
        plate=body.plate,
        template=body.template,
        label=body.label,
    )
    await audit(user, "add_watch", wid)
    return watch_out(await WatchRow.get(id=wid))


@router.delete("/watchlist/{watch_id}", status_code=204)
async def remove_watch(watch_id: Id, user: User, services: Services, audit: AuditLog) -> None:
    """Remove a watchlist entry (police only)."""
    require(user, "police")
    await services.store.watch.remove_watch(watch_id)
    await audit(user, "remove_watch", watch_id)
