"""The alarm console (staff, police): open alarms live, acknowledge and clear with a note, history.

Live updates are Server-Sent Events: the stream looks at the site's open alarms every
``console.live_poll_s`` (the alarm table is shared by every process of the site, and an alarm may be
raised by another worker than the one serving the page) and sends the rendered list whenever it
changed; the page swaps it in. A stream ends after a few seconds less than the server's graceful
shutdown wait and the browser reconnects at once, so no stream holds a stopping platform up.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from anfang.console.auth import csrf_token
from anfang.console.store import Session
from anfang.console.web import PREFIX, Console, ConsoleServices, Csrf, SignedIn, on_duty, page, render
from community.snapshot import CHINA_TZ
from registry.alarms import OPEN_STATES, SEVERITIES, STATES, Alarm, AlarmError, AlarmStoreError

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

STREAM_S = 8.0  # one SSE stream's life (the HTTP server waits 10 s for open requests when it stops)


def audiences(session: Session) -> tuple[str, ...]:
    """Watchlist hits go to police only (as in the API)."""
    on_duty(session)
    return ("all", "police") if session.role == "police" else ("all",)


async def _open_alarms(console: ConsoleServices, session: Session) -> list[Alarm]:
    if console.desk is None:
        return []
    alarms = await console.desk.list(
        states=OPEN_STATES, kind=None, since=None, until=None, audiences=audiences(session), limit=200
    )
    return sorted(
        alarms, key=lambda a: (-SEVERITIES.index(a.severity) if a.severity in SEVERITIES else 0, -a.raised_at)
    )


def _open_fragment(alarms: Sequence[Alarm], session: Session) -> str:
    return render("_open_alarms.html", alarms=alarms, csrf=csrf_token(session.token), prefix=PREFIX)


@router.get("/alarms")
async def alarms_page(request: Request, session: SignedIn, console: Console) -> Response:
    """Open alarms, most severe first, kept live by the stream."""
    alarms = await _open_alarms(console, session)
    await console.audit(session, "view_alarms", None, results=len(alarms))
    return page(request, "alarms.html", alarms=alarms, live=console.desk is not None)


@router.get("/alarms/stream")
async def alarms_stream(request: Request, session: SignedIn, console: Console) -> Response:
    """Server-Sent Events: ``event: alarms`` with the open-alarm list whenever it changes."""
    audiences(session)
    await console.audit(session, "watch_alarms", None)

    async def events() -> AsyncIterator[str]:
        yield "retry: 500\n\n"
        last: object = None
        end = time.monotonic() + STREAM_S
        while time.monotonic() < end and not await request.is_disconnected():
            try:
                alarms = await _open_alarms(console, session)
            except AlarmStoreError as exc:
                log.warning("live alarms: %s", exc)
                alarms = None
            if alarms is not None and (key := [(a.id, a.state, a.updated_at, a.count) for a in alarms]) != last:
                last = key
                html = _open_fragment(alarms, session)
                yield "event: alarms\n" + "".join(f"data: {line}\n" for line in html.splitlines()) + "\n"
            await asyncio.sleep(console.settings.live_poll_s)  # polling the shared table; see the module doc

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


async def _transition(
    request: Request, session: Session, console: ConsoleServices, alarm_id: str, note: str, how: str
) -> Response:
    allowed = audiences(session)
    desk = console.desk
    error = None
    if desk is None:
        error = "alarms are not available in this process"
    else:
        alarm = await desk.get(alarm_id)
        if alarm is None or alarm.audience not in allowed:
            error = f"no alarm {alarm_id}"
        else:
            act = desk.acknowledge if how == "ack" else desk.clear
            try:
                await act(alarm_id, by=session.person.id, note=note, now=console.clock())
            except AlarmError as exc:
                error = exc.message
    if request.headers.get("hx-request"):
        alarms = await _open_alarms(console, session)
        return page(request, "_open_alarms.html", alarms=alarms, error=error, status=200 if error is None else 409)
    return RedirectResponse(f"{PREFIX}/alarms", status_code=303)


Note = Annotated[str, Form(max_length=500)]


@router.post("/alarms/{alarm_id}/ack")
async def acknowledge(request: Request, alarm_id: str, session: Csrf, console: Console, note: Note = "") -> Response:
    """I have seen it and I am on it."""
    return await _transition(request, session, console, alarm_id, note, "ack")


@router.post("/alarms/{alarm_id}/clear")
async def clear(request: Request, alarm_id: str, session: Csrf, console: Console, note: Note = "") -> Response:
    """The matter is dealt with."""
    return await _transition(request, session, console, alarm_id, note, "clear")


def _day_start(day: str | None) -> float | None:
    if not day:
        return None
    try:
        return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), CHINA_TZ).timestamp()
    except ValueError:
        return None


Filter = Annotated[str | None, Query(max_length=64)]


@router.get("/alarms/history")
async def history(
    request: Request,
    session: SignedIn,
    console: Console,
    state: Filter = None,
    kind: Filter = None,
    severity: Filter = None,
    since: Filter = None,
    until: Filter = None,
) -> Response:
    """Every alarm of the site with filters: state, kind, severity, days (China time)."""
    allowed = audiences(session)
    states = [state] if state in STATES else list(STATES)
    start, end = _day_start(since), _day_start(until)
    alarms: list[Alarm] = []
    if console.desk is not None:
        alarms = await console.desk.list(
            states=states,
            kind=kind or None,
            since=start,
            until=end + 86400 if end else None,
            audiences=allowed,
            limit=500,
        )
    if severity in SEVERITIES:
        alarms = [a for a in alarms if a.severity == severity]
    await console.audit(session, "search_alarms", None, kind=kind, state=state, results=len(alarms))
    filters = {
        "state": state or "",
        "kind": kind or "",
        "severity": severity or "",
        "since": since or "",
        "until": until or "",
    }
    return page(request, "history.html", alarms=alarms, filters=filters, states=STATES, severities=SEVERITIES)
