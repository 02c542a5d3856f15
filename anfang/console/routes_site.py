"""The community map (site plan, devices coloured online/offline/alarm) and the device view (twin:
reported, desired, delta with per-field times; staff set a desired field)."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anfang.console.routes_alarms import audiences
from anfang.console.sitemap import DeviceMark, TagMark, device_state, render_svg
from anfang.console.store import Session
from anfang.console.web import PREFIX, Console, ConsoleServices, Csrf, SignedIn, on_duty, page, require_role
from registry.alarms import OPEN_STATES
from registry.history import HistoryStore
from twins.history import LOCATION_KINDS, acting_as, describe

router = APIRouter(prefix=PREFIX, include_in_schema=False)
HISTORY_ROWS = 20  # recent versions on the device view (the API gives up to history.keep_versions)


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


async def _tags(console: ConsoleServices) -> list[TagMark]:
    """Worn tags with a position seen within ``console.tag_max_age_s``."""
    rows = await console.store.sql.rows(
        "SELECT d.id, t.doc FROM devices d JOIN twins t ON t.device_id = d.id WHERE d.site_id = ? AND d.kind = ?",
        [console.store.site, "rfid_tag"],
    )
    now, marks = console.clock(), []
    for r in rows:
        try:
            reported = json.loads(r["doc"]).get("reported") or {}
            pos: dict[str, Any] = reported["position"]
            seen = float(reported.get("last_seen") or 0.0)
            mark = TagMark(r["id"], (float(pos["x"]), float(pos["y"])), max(0.0, now - seen))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if mark.age_s <= console.settings.tag_max_age_s:
            marks.append(mark)
    return marks


async def _map_svg(session: Session, console: ConsoleServices) -> tuple[str, dict[str, int], int]:
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
    tags = await _tags(console)
    svg = render_svg(console.plan, marks, device_href=f"{PREFIX}/devices/", counts=counts, tags=tags)
    return svg, counts, len(tags)


@router.get("/map")
async def site_map(request: Request, session: SignedIn, console: Console) -> Response:
    """The site plan with every placed device coloured by state and the worn tags seen lately (staff and
    police: where an elderly resident or a child is, audited like any read of personal data); a click
    opens the device. The open page redraws itself every ``console.map_refresh_s``."""
    on_duty(session)
    svg, counts, tags = await _map_svg(session, console)
    await console.audit(session, "view_tag_positions", None, tags=tags)
    return page(request, "map.html", svg=svg, counts=counts, tags=tags, refresh=console.settings.map_refresh_s)


@router.get("/map/live")
async def site_map_live(request: Request, session: SignedIn, console: Console) -> Response:
    """The map alone, for the open page's periodic redraw (the page view that opened it was audited)."""
    on_duty(session)
    svg, counts, tags = await _map_svg(session, console)
    return page(request, "_map.html", svg=svg, counts=counts, tags=tags)


@router.get("/devices/{device_id}")
async def device(
    request: Request, device_id: str, session: SignedIn, console: Console, error: str | None = None
) -> Response:
    """A device's twin: reported, desired and delta with when each field last changed, connection state,
    and its recent versions (what each change changed, when, on which side, by whom)."""
    on_duty(session)
    rows = await console.store.sql.rows(
        "SELECT d.id, d.kind, d.name, d.last_seen, t.doc, t.version, t.updated_at FROM devices d "
        "LEFT JOIN twins t ON t.device_id = d.id WHERE d.site_id = ? AND d.id = ?",
        [console.store.site, device_id],
    )
    if not rows:
        return page(request, "refused.html", status=404, text=f"No device {device_id}.")
    row = rows[0]
    commands = await console.store.sql.rows(
        "SELECT id, name, args, status, result, created_at, finished_at FROM commands WHERE device_id = ? "
        "ORDER BY created_at DESC LIMIT 10",
        [device_id],
    )
    doc: dict[str, Any] = json.loads(row["doc"]) if row["doc"] else {}
    meta = doc.get("metadata") or {}
    sections = {
        part: sorted(
            (key, json.dumps(value, ensure_ascii=False), (meta.get(part) or {}).get(key))
            for key, value in (doc.get(part) or {}).items()
        )
        for part in ("reported", "desired", "delta")
    }
    entries = await HistoryStore(console.store.sql.conn, console.store.site).recent(device_id, HISTORY_ROWS)
    if entries and row["kind"] in LOCATION_KINDS:  # a worn tag's history is where a person was
        await console.audit(session, "view_tag_history", device_id, versions=len(entries))
    history = [(h.ts, h.version, h.source, h.actor, describe(h.changed)) for h in entries]
    return page(
        request,
        "device.html",
        device=row,
        doc=doc,
        sections=sections,
        history=history,
        commands=commands,
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
    with acting_as(f"staff:{session.person.id}"):
        await actions.set_desired(device_id, {field: parsed})
    await console.audit(session, "set_desired", device_id, field=field)
    return RedirectResponse(target, status_code=303)


_COMMAND_NAME = r"^[a-z][a-z0-9_]{0,31}$"


@router.post("/devices/{device_id}/command")
async def send_command(
    device_id: str,
    session: Csrf,
    console: Console,
    name: Annotated[str, Form(pattern=_COMMAND_NAME)],
    args: Annotated[str, Form(max_length=1000)] = "{}",
) -> Response:
    """Staff: send a command (arguments a JSON object) and wait up to 10 s for the device's answer; the
    device page lists it with its result (the platform records every command in ``commands``)."""
    require_role(session, "staff")
    actions = console.actions()
    target = f"{PREFIX}/devices/{device_id}"
    if actions is None:
        return RedirectResponse(f"{target}?error=no+active+worker+in+this+process", status_code=303)
    try:
        parsed = json.loads(args or "{}")
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return RedirectResponse(f"{target}?error=arguments+must+be+a+JSON+object", status_code=303)
    await console.audit(session, "send_command", device_id, command=name)
    result = await actions.send_command(device_id, name, parsed, timeout=10.0)
    if result.timed_out:
        return RedirectResponse(f"{target}?error=the+device+did+not+answer+within+10+s", status_code=303)
    if not result.ok:
        refused = quote(f"the device refused {name}: {result.error or 'no reason given'}"[:200])
        return RedirectResponse(f"{target}?error={refused}", status_code=303)
    return RedirectResponse(target, status_code=303)
