"""The web console: alarm desk for staff and police, the police watchlist, the residents' phone page.

Server-rendered pages (Jinja2) with htmx and Server-Sent Events, served under ``/console`` by the
platform's HTTP app (:func:`anfang.web.create_platform_app`); see docs/console.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from anfang.console import (
    routes_access,
    routes_alarms,
    routes_auth,
    routes_evidence,
    routes_police,
    routes_resident,
    routes_site,
)
from anfang.console.sitemap import Plan
from anfang.console.store import ConsoleStore, ConsoleUserError, Session
from anfang.console.web import (
    PREFIX,
    ConsoleServices,
    CsrfRefused,
    NotSignedIn,
    RoleRefused,
    csrf_refused,
    not_signed_in,
    role_refused,
)
from twins.site import SiteModel

__all__ = [
    "PREFIX",
    "ConsoleServices",
    "ConsoleStore",
    "ConsoleUserError",
    "Session",
    "install",
    "routers",
    "site_plan",
]

log = logging.getLogger(__name__)
_STATIC = Path(__file__).resolve().parent / "static"


def site_plan(model: SiteModel | None) -> Plan:
    """The plan the map draws, from the site model the platform runs with (fences, zones, buildings);
    an empty plan without one (devices are still drawn)."""
    if model is None:
        return Plan((), ())
    return Plan(
        [(z.id, z.name, z.kind, [(float(x), float(y)) for x, y in z.polygon]) for z in model.zones],
        [(b.id, b.name, (float(b.position[0]), float(b.position[1]))) for b in model.buildings if b.position],
    )


def routers() -> list[APIRouter]:
    """The console's routers."""
    return [
        routes_auth.router,
        routes_alarms.router,
        routes_evidence.router,
        routes_resident.router,
        routes_police.router,
        routes_access.router,
        routes_site.router,
    ]


def install(app: FastAPI, console: ConsoleServices) -> None:
    """Mount the console on ``app`` under ``/console``."""
    app.state.console = console
    app.add_exception_handler(NotSignedIn, not_signed_in)
    app.add_exception_handler(RoleRefused, role_refused)
    app.add_exception_handler(CsrfRefused, csrf_refused)
    for router in routers():
        app.include_router(router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=_STATIC), name="console-static")
