"""The access log (staff, police): decisions with filters, and the same as CSV (every export audited)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from anfang.console.captures import image_data_uri
from anfang.console.store import Session
from anfang.console.web import PREFIX, Console, ConsoleServices, SignedIn, on_duty, page
from community.models import AccessDecisionRow, CaptureRow
from community.snapshot import CHINA_TZ
from privacy.audit import plate_ref

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Filter = Annotated[str | None, Query(max_length=64)]
_COLUMNS = ("time", "device", "outcome", "reason", "person", "role", "credential", "mode", "pass")


def _day(day: str | None) -> float | None:
    try:
        return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), CHINA_TZ).timestamp() if day else None
    except ValueError:
        return None


async def _search(
    console: ConsoleServices,
    session: Session,
    device: str | None,
    person: str | None,
    plate: str | None,
    outcome: str | None,
    since: str | None,
    until: str | None,
    limit: int,
) -> list[AccessDecisionRow]:
    on_duty(session)
    end = _day(until)
    return await console.community.records.search_decisions(
        since=_day(since),
        until=end + 86400 if end is not None else None,
        device=device or None,
        subject=person or None,
        plate=plate or None,
        allowed={"opened": True, "refused": False}.get(outcome or ""),
        limit=limit,
    )


@router.get("/access")
async def access_log(
    request: Request,
    session: SignedIn,
    console: Console,
    device: Filter = None,
    person: Filter = None,
    plate: Filter = None,
    outcome: Filter = None,
    since: Filter = None,
    until: Filter = None,
) -> Response:
    """Access decisions, newest first, with filters: door or gate, person, plate, outcome, days."""
    rows = await _search(console, session, device, person, plate, outcome, since, until, 200)
    subject = person or (plate_ref(console.community.store.cipher.lookup_hash, plate) if plate else None)
    await console.audit(session, "search_decisions", subject, device=device, results=len(rows))
    filters = {
        "device": device or "",
        "person": person or "",
        "plate": plate or "",
        "outcome": outcome or "",
        "since": since or "",
        "until": until or "",
    }
    query = "&".join(f"{k}={v}" for k, v in filters.items() if v)
    return page(request, "access.html", rows=rows, filters=filters, query=query)


@router.get("/access/{decision_id}/capture")
async def decision_capture(request: Request, decision_id: str, session: SignedIn, console: Console) -> Response:
    """The capture behind one decision with its image, decrypted for this view only (an htmx fragment);
    each opening audited."""
    on_duty(session)
    site = console.community.store.site
    decision = await AccessDecisionRow.get_or_none(id=decision_id, site=site)
    capture = None
    if decision is not None and decision.capture_id:
        capture = await CaptureRow.get_or_none(id=decision.capture_id, site=site)
    image = (
        await image_data_uri(console, capture.snapshot_ref) if capture is not None and capture.snapshot_ref else None
    )
    await console.audit(
        session, "view_capture", capture.id if capture else None, decision=decision_id, image=image is not None
    )
    return page(request, "_capture.html", capture=capture, alarm=None, image=image)


@router.get("/access.csv")
async def access_csv(
    session: SignedIn,
    console: Console,
    device: Filter = None,
    person: Filter = None,
    plate: Filter = None,
    outcome: Filter = None,
    since: Filter = None,
    until: Filter = None,
) -> Response:
    """The same search as CSV (at most 10,000 rows); each export is written to the audit log."""
    rows = await _search(console, session, device, person, plate, outcome, since, until, 10_000)
    subject = person or (plate_ref(console.community.store.cipher.lookup_hash, plate) if plate else None)
    await console.audit(session, "export_decisions", subject, device=device, results=len(rows))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    for r in rows:
        when = dt.datetime.fromtimestamp(r.ts, CHINA_TZ).isoformat(timespec="seconds")
        outcome_text = "opened" if r.allowed else "refused"
        writer.writerow(
            (
                when,
                r.device_id,
                outcome_text,
                r.reason,
                r.subject_id or "",
                r.subject_role or "",
                r.credential_kind,
                r.mode,
                r.pass_id or "",
            )
        )
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="access-log.csv"', "Cache-Control": "no-store"},
    )
