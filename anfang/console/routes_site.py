"""The community map (site plan, devices coloured online/offline/alarm) and the device view (twin:
reported, desired, delta with per-field times; staff set a desired field)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anfang.console.routes_alarms import audiences
from anfang.console.sitemap import DeviceMark, device_state, render_svg
from anfang.console.web import PREFIX, Console, ConsoleServices, Csrf, SignedIn, on_duty, page, require_role
from registry.alarms import OPEN_STATES

router = APIRouter(prefix=PREFIX, include_in_schema=False)


async def _devices(console: ConsoleServices) -> list[dict[str, Any]]:
    return await console.store.sql.rows(
        "SELECT d.id, d.kind, d.name, d.x, d.y, t.doc FROM devices d LEFT JOIN twins t ON t.device_id = d.id "
        "WHERE d.site_id = ? ORDER BY d.id",
        [console.store.site],
    )


def _status(doc: str | None) -> str | None:
    try:
        return str(json.loads(doc).get("status")) if doc else None
    except (ValueError, AttributeError):
        return None


@router.get("/map")
async def site_map(request: Request, session: SignedIn, console: Console) -> Response:
    """The site plan with every placed device coloured by state; a click opens the device."""
    allowed = audiences(session)
    alarmed: set[str] = set()
    if console.desk is not None:
        for a in await console.desk.list(
            states=OPEN_STATES, kind=None, since=None, until=None, audiences=allowed, limit=1000
        ):
            alarmed.update({a.subject, str(a.evidence.get("device", ""))})
    marks = [
        DeviceMark(
            r["id"],
            r["kind"],
            r["name"],
            (float(r["x"]), float(r["y"])),
            device_state(_status(r["doc"]), r["id"] in alarmed),
        )
        for r in await _devices(console)
        if r["x"] is not None and r["y"] is not None
    ]
    counts = {s: sum(1 for m in marks if m.state == s) for s in ("online", "offline", "alarm")}
    svg = render_svg(console.plan, marks, device_href=f"{PREFIX}/devices/", counts=counts)
    return page(request, "map.html", svg=svg, counts=counts)


@router.get("/devices/{device_id}")
async def device(
    request: Request, device_id: str, session: SignedIn, console: Console, error: str | None = None
) -> Response:
    """A device's twin: reported, desired and delta with when each field last changed, connection state."""
    on_duty(session)
    rows = await console.store.sql.rows(
        "SELECT d.id, d.kind, d.name, t.doc, t.version, t.updated_at FROM devices d "
        "LEFT JOIN twins t ON t.device_id = d.id WHERE d.site_id = ? AND d.id = ?",
        [console.store.site, device_id],
    )
    if not rows:
        return page(request, "refused.html", status=404, text=f"No device {device_id}.")
    row = rows[0]
    doc: dict[str, Any] = json.loads(row["doc"]) if row["doc"] else {}
    meta = doc.get("metadata") or {}
    sections = {
        part: sorted(
            (key, json.dumps(value, ensure_ascii=False), (meta.get(part) or {}).get(key))
            for key, value in (doc.get(part) or {}).items()
        )
        for part in ("reported", "desired", "delta")
    }
    return page(
        request,
        "device.html",
        device=row,
        doc=doc,
        sections=sections,
        error=error,
        can_set=session.role == "staff" and console.actions() is not None,
    )


@router.post("/devices/{device_id}/desired")
async def set_desired(
    device_id: str,
    session: Csrf,
    console: Console,
    field: Annotated[str, Form(min_length=1, max_length=64)],
    value: Annotated[str, Form(max_length=1000)],
) -> Response:
    """Staff: set one desired field (a JSON value, else the text as a string); the device gets the delta."""
    require_role(session, "staff")
    actions = console.actions()
    target = f"{PREFIX}/devices/{device_id}"
    if actions is None:
        return RedirectResponse(f"{target}?error=no+active+worker+in+this+process", status_code=303)
    try:
        parsed: Any = json.loads(value)
    except ValueError:
        parsed = value
    await actions.set_desired(device_id, {field: parsed})
    await console.audit(session, "set_desired", device_id, field=field)
    return RedirectResponse(target, status_code=303)
