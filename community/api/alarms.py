"""Routes for the people on duty: the site's alarms (staff and police; watchlist hits to police only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from fastapi import APIRouter, Depends, Query, Request

from community.api.deps import Audit, Id, Limit, Services, Since, Text, User, require
from community.api.schemas import AlarmNoteIn, AlarmOut, alarm_out
from community.errors import CommunityError, NotFound
from community.models import PersonRow
from registry.alarms import STATES, Alarm, AlarmError

router = APIRouter(tags=["alarms"])
AuditLog = Annotated[Audit, Depends()]


class AlarmDesk(Protocol):
    """What the API does with alarms; the platform provides it (``anfang.alarm_dispatch.AlarmDesk``)."""

    async def list(
        self,
        *,
        states: Sequence[str],
        kind: str | None,
        since: float | None,
        until: float | None,
        audiences: Sequence[str],
        limit: int,
    ) -> list[Alarm]: ...

    async def get(self, alarm_id: str) -> Alarm | None: ...

    async def acknowledge(self, alarm_id: str, *, by: str, note: str, now: float) -> Alarm: ...

    async def clear(self, alarm_id: str, *, by: str, note: str, now: float) -> Alarm: ...


class AlarmConflict(CommunityError):
    """The alarm is no longer open."""

    status = 409


def get_desk(request: Request) -> AlarmDesk:
    desk: AlarmDesk = request.app.state.alarm_desk
    return desk


Desk = Annotated[AlarmDesk, Depends(get_desk)]


def _audiences(user: PersonRow) -> tuple[str, ...]:
    require(user, "staff", "police")
    return ("all", "police") if user.role == "police" else ("all",)


async def _visible(desk: AlarmDesk, alarm_id: str, user: PersonRow) -> Alarm:
    audiences = _audiences(user)  # the role first: a resident learns nothing, not even whether it exists
    alarm = await desk.get(alarm_id)
    if alarm is None or alarm.audience not in audiences:
        raise NotFound("alarm_not_found", f"no alarm {alarm_id}")
    return alarm


@router.get("/alarms", response_model=list[AlarmOut])
async def list_alarms(
    user: User,
    desk: Desk,
    audit: AuditLog,
    state: Annotated[list[str] | None, Query(description=f"any of {', '.join(STATES)}; default: open ones")] = None,
    kind: Text = None,
    since: Since = None,
    until: Since = None,
    limit: Limit = 100,
) -> list[AlarmOut]:
    """The site's alarms, newest last: open ones unless ``state`` says otherwise (staff, police)."""
    audiences = _audiences(user)
    states = state or ["raised", "acknowledged"]
    if unknown := [s for s in states if s not in STATES]:
        raise CommunityError("bad_state", f"unknown alarm state {unknown[0]!r}", field="state")
    alarms = await desk.list(states=states, kind=kind, since=since, until=until, audiences=audiences, limit=limit)
    await audit(user, "view_alarms", None, results=len(alarms))
    return [alarm_out(a) for a in alarms]


@router.get("/alarms/{alarm_id}", response_model=AlarmOut)
async def get_alarm(alarm_id: Id, user: User, desk: Desk, audit: AuditLog) -> AlarmOut:
    """One alarm with its evidence references."""
    alarm = await _visible(desk, alarm_id, user)
    await audit(user, "view_alarm", alarm_id)
    return alarm_out(alarm)


@router.post("/alarms/{alarm_id}/ack", response_model=AlarmOut)
async def acknowledge_alarm(alarm_id: Id, body: AlarmNoteIn, user: User, desk: Desk, services: Services) -> AlarmOut:
    """I have seen it and I am on it (the first acknowledgement stands)."""
    await _visible(desk, alarm_id, user)
    try:
        return alarm_out(await desk.acknowledge(alarm_id, by=user.id, note=body.note, now=services.clock()))
    except AlarmError as exc:
        raise AlarmConflict(exc.code, exc.message) from None


@router.post("/alarms/{alarm_id}/clear", response_model=AlarmOut)
async def clear_alarm(alarm_id: Id, body: AlarmNoteIn, user: User, desk: Desk, services: Services) -> AlarmOut:
    """The matter is dealt with (for a watchlist hit: the case is closed, and its evidence may expire)."""
    await _visible(desk, alarm_id, user)
    try:
        return alarm_out(await desk.clear(alarm_id, by=user.id, note=body.note, now=services.clock()))
    except AlarmError as exc:
        raise AlarmConflict(exc.code, exc.message) from None
