"""Signing in and out: staff and police with a user name and password, residents through a one-time link."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from anfang.console.web import COOKIE, PREFIX, Console, Csrf, SignedIn, page, set_session_cookie
from community.api.deps import client_address

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_TOO_MANY = "Too many sign-in attempts from this address; wait a minute and try again."

#: Paths that answer without a session (everything else under /console refuses).
PUBLIC_PATHS = frozenset({f"{PREFIX}/login", f"{PREFIX}/r/{{token}}", f"{PREFIX}/static"})


def _safe_next(target: str | None, default: str) -> str:
    """Only a path inside the console (never another site) to go to after signing in."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def _home(role: str) -> str:
    return f"{PREFIX}/alarms" if role in ("staff", "police") else f"{PREFIX}/me"


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    """The sign-in form (staff and police)."""
    return page(request, "login.html", next=_safe_next(next, ""), error=None)


@router.post("/login")
async def login(
    request: Request,
    console: Console,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=512)] = "",
) -> Response:
    """Check the password; start a session. Failures say nothing about which part was wrong.

    Rate limited per client address (``api.signin_per_min``) before the (slow) password check: 429 with
    Retry-After."""
    wait = console.community.limits.signin.check(client_address(request), console.clock())
    if wait is not None:
        log.info("console sign-in rate limited")
        headers = {"Retry-After": str(int(wait))}
        return page(request, "login.html", status=429, next=_safe_next(next, ""), error=_TOO_MANY, headers=headers)
    person = await console.store.check_password(username, password)
    if person is None:
        log.info("console sign-in refused")
        return page(request, "login.html", status=401, next=_safe_next(next, ""), error="Wrong user name or password.")
    token = await console.store.start_session(person, "password", now=console.clock())
    response = RedirectResponse(_safe_next(next, _home(person.role)), status_code=303)
    set_session_cookie(response, token, console.settings)
    log.info("console sign-in of %s (%s)", person.id, person.role)
    return response


@router.get("/r/{token}")
async def resident_link(token: str, console: Console) -> Response:
    """A resident's one-time sign-in link: a session, then the resident's page."""
    session_token = await console.store.redeem_link(token, now=console.clock())
    if session_token is None:
        return RedirectResponse(f"{PREFIX}/login?expired=1", status_code=303)
    response = RedirectResponse(f"{PREFIX}/me", status_code=303)
    set_session_cookie(response, session_token, console.settings)
    return response


@router.post("/logout")
async def logout(session: Csrf, console: Console) -> Response:
    """Sign out: the session ends at once."""
    await console.store.end_session(session.token, now=console.clock())
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("/")
async def home(session: SignedIn) -> Response:
    """Where a signed-in person starts."""
    return RedirectResponse(_home(session.role), status_code=303)
