"""The residents' phone page (visitor QR codes, own passes, own entries) and the staff page that sends
residents their one-time sign-in link."""

from __future__ import annotations

import datetime as dt
import io
from typing import Annotated

import segno
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anfang.console.store import ConsoleUserError, Session
from anfang.console.web import PREFIX, Console, ConsoleServices, Csrf, SignedIn, page, require_role
from community.errors import CommunityError, NotFound
from community.models import AccessDecisionRow, CredentialRow, PassRow, PersonRow
from community.snapshot import CHINA_TZ, RESIDENT_ROLES
from privacy.erasure import withdraw_face_consent

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_LOCAL = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


def _local(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, CHINA_TZ).strftime(_LOCAL)


def _parse_local(text: str) -> float | None:
    try:
        return dt.datetime.strptime(text, _LOCAL).replace(tzinfo=CHINA_TZ).timestamp()
    except ValueError:
        return None


def resident(session: Session) -> None:
    require_role(session, *sorted(RESIDENT_ROLES))


async def _household_entries(console: ConsoleServices, person: PersonRow) -> list[AccessDecisionRow]:
    """The newest entries of my household (only mine when I belong to none)."""
    site = console.community.store.site
    members = [person.id]
    if person.household_id:
        members = [
            str(pid)
            for pid in await PersonRow.filter(site=site, household_id=person.household_id).values_list("id", flat=True)
        ]
    return await AccessDecisionRow.filter(site=site, subject_id__in=members).order_by("-ts").limit(20)


async def _me_page(
    request: Request,
    session: Session,
    console: ConsoleServices,
    error: str | None = None,
    notice: str | None = None,
    pin: str | None = None,
) -> Response:
    now = console.clock()
    passes = (
        await PassRow.filter(issued_by=session.person.id, site=console.community.store.site)
        .order_by("-created_at")
        .limit(50)
    )
    person = await console.community.store.people.person(session.person.id)
    ways_in = sorted(set(await CredentialRow.filter(person_id=person.id, revoked=False).values_list("kind", flat=True)))
    entries = await _household_entries(console, person)
    await console.audit(session, "view_access_history", person.household_id or person.id, results=len(entries))
    return page(
        request,
        "me.html",
        status=200 if error is None else 400,
        passes=passes,
        entries=entries,
        now=now,
        error=error,
        notice=notice,
        pin=pin,
        face_consent=person.face_consent,
        ways_in=ways_in,
        default_from=_local(now),
        default_until=_local(now + 86400),
    )


@router.get("/me")
async def me(request: Request, session: SignedIn, console: Console) -> Response:
    """My visitor passes (issue, show, revoke), my household's recent entries, my face consent."""
    resident(session)
    return await _me_page(request, session, console)


@router.post("/me/face-consent/withdraw")
async def withdraw_my_face_consent(request: Request, session: Csrf, console: Console) -> Response:
    """Withdraw my face consent: templates and face images deleted at once, the doors' lists resealed; my card,
    PIN and passes keep working, and if I had none of them a PIN is made and shown on this page once."""
    resident(session)
    report = await withdraw_face_consent(console.community.store, session.person.id, now=console.clock())
    await console.audit(session, "withdraw_face_consent", session.person.id, **report.removed)
    notice = "Face recognition is off: your face data was deleted and no door will recognise your face."
    return await _me_page(request, session, console, notice=notice, pin=report.pin)


@router.post("/me/passes")
async def issue_pass(
    request: Request,
    session: Csrf,
    console: Console,
    valid_from: Annotated[str, Form(max_length=32)],
    valid_until: Annotated[str, Form(max_length=32)],
    uses: Annotated[int, Form(ge=1, le=100)] = 1,
    visitor: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Issue a visitor pass for my own doors and gates."""
    resident(session)
    start, end = _parse_local(valid_from), _parse_local(valid_until)
    if start is None or end is None:
        return await _me_page(request, session, console, "Give the start and end as date and time.")
    try:
        row, _ = await console.community.store.passes.issue_pass(
            session.person.id,
            valid_from=start,
            valid_until=end,
            doors=None,
            max_uses=uses,
            now=console.clock(),
            visitor_name=visitor or None,
        )
    except CommunityError as exc:
        return await _me_page(request, session, console, exc.message)
    return RedirectResponse(f"{PREFIX}/me#pass-{row.id}", status_code=303)


async def _own_pass(session: Session, console: ConsoleServices, pass_id: str) -> PassRow:
    row = await PassRow.get_or_none(id=pass_id, site=console.community.store.site)
    if row is None or row.issued_by != session.person.id:
        raise NotFound("pass_not_found", f"no pass {pass_id}")
    return row


@router.post("/me/passes/{pass_id}/revoke")
async def revoke_pass(pass_id: str, session: Csrf, console: Console) -> Response:
    """Revoke one of my passes: the next scan is refused."""
    resident(session)
    await _own_pass(session, console, pass_id)
    await console.community.store.passes.revoke_pass(pass_id, by=session.person, now=console.clock())
    return RedirectResponse(f"{PREFIX}/me", status_code=303)


@router.get("/me/passes/{pass_id}/qr.png")
async def pass_qr(pass_id: str, session: SignedIn, console: Console) -> Response:
    """The pass's signed payload as a QR code to show the door or send the visitor."""
    resident(session)
    row = await _own_pass(session, console, pass_id)
    out = io.BytesIO()
    segno.make(console.community.store.passes.payload_of(row), error="m").save(out, kind="png", scale=8, border=4)
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get("/residents")
async def residents(request: Request, session: SignedIn) -> Response:
    """Staff: send a resident the link to their phone page."""
    require_role(session, "staff")
    return page(request, "residents.html", link=None, qr=None, person="", error=None)


@router.post("/residents/link")
async def resident_link(
    request: Request, session: Csrf, console: Console, person: Annotated[str, Form(max_length=64)]
) -> Response:
    """A one-time sign-in link (and its QR code) for a resident's phone."""
    require_role(session, "staff")
    try:
        token = await console.store.issue_link(person, created_by=session.person.id, now=console.clock())
    except ConsoleUserError as exc:
        return page(request, "residents.html", status=400, link=None, qr=None, person=person, error=str(exc))
    await console.audit(session, "issue_sign_in_link", person)
    link = f"{str(request.base_url).rstrip('/')}{PREFIX}/r/{token}"
    qr = segno.make(link, error="m").png_data_uri(scale=5, border=4)
    return page(request, "residents.html", link=link, qr=qr, person=person, error=None)
