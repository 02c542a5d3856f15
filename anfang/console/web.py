"""What every console page depends on: the services, the session, roles, CSRF, rendering.

Every route except sign-in, the residents' link and the static files depends on :func:`signed_in`;
a request without a live session is refused (a page request is sent to the sign-in page, anything
else gets 401). Every POST depends on :func:`csrf_checked`. Roles are those of the HTTP API
(docs/access.md): staff and police on duty, police alone for the watchlist, residents their own page.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from anfang.config import ConsoleSettings
from anfang.console.auth import csrf_token, verify_csrf
from anfang.console.sitemap import Plan
from anfang.console.store import ConsoleStore, Session
from community.api.alarms import AlarmDesk
from community.api.deps import CommunityServices
from community.snapshot import CHINA_TZ, STAFF_ROLES
from twins.hooks import PlatformActions

__all__ = [
    "COOKIE",
    "ConsoleServices",
    "Csrf",
    "NotSignedIn",
    "RoleRefused",
    "SignedIn",
    "console_of",
    "page",
    "require_role",
]

COOKIE = "anfang_console"
PREFIX = "/console"
_HERE = Path(__file__).resolve().parent
#: Scripts and styles only from the console itself; QR images are served by the console too.
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
_SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class ConsoleServices:
    """What the console needs: its sessions, the community registry and records, the alarm desk, the site
    plan, and the platform worker of this process (None in a standby) for setting desired state."""

    store: ConsoleStore
    community: CommunityServices
    desk: AlarmDesk | None
    settings: ConsoleSettings = field(default_factory=ConsoleSettings)
    clock: Callable[[], float] = field(default=time.time)
    plan: Plan = field(default_factory=lambda: Plan((), ()))  # the site plan the map draws
    actions: Callable[[], PlatformActions | None] = field(default=lambda: None)  # this process's active worker

    async def audit(self, session: Session, action: str, target: str | None, **detail: Any) -> None:
        """One row in the audit log of personal-data reads, as the API writes for its reads."""
        await self.community.records.audit(
            actor=session.person.id,
            actor_role=session.role,
            action=f"console_{action}",
            target=target,
            now=self.clock(),
            detail={k: v for k, v in detail.items() if v is not None} or None,
        )


class NotSignedIn(Exception):
    """No live session."""


class RoleRefused(Exception):
    """Signed in, but the role may not see this."""


class CsrfRefused(Exception):
    """A form or request without the session's CSRF token."""


def console_of(request: Request) -> ConsoleServices:
    services: ConsoleServices = request.app.state.console
    return services


Console = Annotated[ConsoleServices, Depends(console_of)]


async def signed_in(request: Request, console: Console) -> Session:
    """The request's live session (refused otherwise)."""
    session = await console.store.session(request.cookies.get(COOKIE), now=console.clock())
    if session is None:
        raise NotSignedIn()
    request.state.session = session
    return session


SignedIn = Annotated[Session, Depends(signed_in)]


async def csrf_checked(request: Request, session: SignedIn) -> Session:
    """The session, if the request carries its CSRF token (form field ``csrf`` or header ``X-CSRF-Token``)."""
    presented = request.headers.get("x-csrf-token")
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get("csrf")
        presented = value if isinstance(value, str) else None
    if not verify_csrf(session.token, presented):
        raise CsrfRefused()
    return session


Csrf = Annotated[Session, Depends(csrf_checked)]


def require_role(session: Session, *roles: str) -> None:
    """Refuse (403) unless the session's person has one of ``roles``."""
    if session.role not in roles:
        raise RoleRefused()


def on_duty(session: Session) -> None:
    """Staff and police only."""
    require_role(session, *sorted(STAFF_ROLES))


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)
_templates.filters["when"] = _when


def render(name: str, **context: Any) -> str:
    """A template rendered to text."""
    return _templates.get_template(name).render(**context)


def page(
    request: Request, name: str, *, status: int = 200, headers: Mapping[str, str] | None = None, **context: Any
) -> HTMLResponse:
    """A full page (or an htmx fragment) with the session's CSRF token and the console's security headers."""
    session: Session | None = getattr(request.state, "session", None)
    console = console_of(request)
    body = render(
        name,
        session=session,
        csrf=csrf_token(session.token) if session else "",
        grafana=console.settings.grafana_url,
        prefix=PREFIX,
        **context,
    )
    return HTMLResponse(body, status_code=status, headers={**_SECURITY_HEADERS, **(headers or {})})


def _refused(request: Request, status: int, text: str) -> Response:
    if request.method == "GET" and status == 401:
        target = quote(request.url.path, safe="/")
        response: Response = RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response
    return HTMLResponse(render("refused.html", text=text, prefix=PREFIX), status_code=status, headers=_SECURITY_HEADERS)


async def not_signed_in(request: Request, _: Exception) -> Response:
    return _refused(request, 401, "Please sign in.")


async def role_refused(request: Request, _: Exception) -> Response:
    return _refused(request, 403, "Your role may not open this page.")


async def csrf_refused(request: Request, _: Exception) -> Response:
    return _refused(request, 403, "The form was not sent from this console (CSRF token missing or wrong).")


def set_session_cookie(response: Response, token: str, settings: ConsoleSettings) -> None:
    """The session cookie: HttpOnly, SameSite=Lax (no cross-site POST carries it), only for the console."""
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",  # a resident opens the sign-in link from a chat app: a top-level GET
        secure=settings.secure_cookie,
        path=PREFIX,
        max_age=int(settings.session_max_age_s),
    )
