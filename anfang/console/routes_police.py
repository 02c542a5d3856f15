"""Community police: watchlist hits with their capture (opened on demand, audited), the watchlist itself.

Staff do not see any of it (as in the API: the watchlist and its alarms are for police only).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anfang.console.captures import image_data_uri
from anfang.console.web import PREFIX, Console, Csrf, SignedIn, page, require_role
from community.errors import CommunityError
from community.models import CaptureRow, WatchRow
from registry.alarms import OPEN_STATES, STATES

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

WATCH_KIND = "watchlist_match"


async def _watch_page(request: Request, console: Console, error: str | None = None) -> Response:
    site = console.community.store.site
    entries = await WatchRow.filter(site=site, active=True).order_by("-created_at").limit(200)
    hits = []
    if console.desk is not None:
        hits = await console.desk.list(
            states=STATES, kind=WATCH_KIND, since=None, until=None, audiences=("police",), limit=100
        )
    return page(
        request, "watchlist.html", status=200 if error is None else 400, entries=entries, hits=hits[::-1], error=error
    )


@router.get("/watchlist")
async def watchlist(request: Request, session: SignedIn, console: Console) -> Response:
    """Watchlist hits, newest first, and the active watchlist (police only)."""
    require_role(session, "police")
    await console.audit(session, "view_watchlist", None)
    return await _watch_page(request, console)


@router.get("/watchlist/hits/{alarm_id}/capture")
async def hit_capture(request: Request, alarm_id: str, session: SignedIn, console: Console) -> Response:
    """The capture behind a hit, opened on demand (an htmx fragment), each opening audited."""
    require_role(session, "police")
    alarm = await console.desk.get(alarm_id) if console.desk is not None else None
    capture = None
    if alarm is not None and alarm.audience == "police":
        ref = alarm.evidence.get("snapshot_ref")
        query = CaptureRow.filter(site=console.community.store.site, device_id=alarm.evidence.get("device", ""))
        if ref:
            query = query.filter(snapshot_ref=ref)
        capture = await query.order_by("-ts").first()
    image = (
        await image_data_uri(console, capture.snapshot_ref) if capture is not None and capture.snapshot_ref else None
    )
    await console.audit(
        session, "view_capture", capture.id if capture else None, alarm=alarm_id, image=image is not None
    )
    return page(request, "_capture.html", capture=capture, alarm=alarm, image=image)


@router.post("/watchlist")
async def add_watch(
    request: Request,
    session: Csrf,
    console: Console,
    plate: Annotated[str, Form(max_length=16)],
    reason: Annotated[str, Form(min_length=1, max_length=200)],
    label: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Put a plate on the watchlist."""
    require_role(session, "police")
    try:
        wid = await console.community.store.watch.add_watch(
            kind="plate",
            reason=reason,
            added_by=session.person.id,
            now=console.clock(),
            plate=plate,
            label=label or None,
        )
    except CommunityError as exc:
        return await _watch_page(request, console, exc.message)
    await console.audit(session, "add_watch", wid)
    return RedirectResponse(f"{PREFIX}/watchlist", status_code=303)


@router.post("/watchlist/{watch_id}/remove")
async def remove_watch(watch_id: str, session: Csrf, console: Console) -> Response:
    """Take an entry off the watchlist."""
    require_role(session, "police")
    await console.community.store.watch.remove_watch(watch_id)
    await console.audit(session, "remove_watch", watch_id)
    return RedirectResponse(f"{PREFIX}/watchlist", status_code=303)


@router.post("/watchlist/hits/{alarm_id}/close")
async def close_case(
    alarm_id: str,
    session: Csrf,
    console: Console,
    note: Annotated[str, Form(min_length=1, max_length=500)],
) -> Response:
    """Close a hit's case (clears its alarm with the officer's note); from then on its evidence follows the
    ordinary capture retention instead of being kept for the case."""
    require_role(session, "police")
    alarm = await console.desk.get(alarm_id) if console.desk is not None else None
    if console.desk is None or alarm is None or alarm.audience != "police" or alarm.kind != WATCH_KIND:
        return RedirectResponse(f"{PREFIX}/watchlist", status_code=303)
    if alarm.state in OPEN_STATES:
        await console.desk.clear(alarm_id, by=session.person.id, note=note, now=console.clock())
        await console.audit(session, "close_case", alarm_id)
    return RedirectResponse(f"{PREFIX}/watchlist", status_code=303)
