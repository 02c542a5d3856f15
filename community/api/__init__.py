"""HTTP API of community access control (FastAPI routers, served by ``anfang run`` on ``api_bind``).

Roles: residents (owner, family, tenant, elderly_alone, child) see their own household, issue and
revoke visitor passes and read their own access history; property staff register residents,
tenants and vehicles; community police search captures and decisions, manage the watchlist and
acknowledge its alarms. Every read of personal data writes an audit row. Bearer tokens come from
``anfang community token``; only their hashes are stored. Access rules: docs/access.md.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from community.api import alarms, police, requests, residents, staff, tokens
from community.api.alarms import AlarmDesk
from community.api.deps import CommunityServices, Unauthorized
from community.api.limits import BodyLimit, RateLimited
from community.api.schemas import ErrorOut
from community.errors import CommunityError

__all__ = [
    "ERROR_RESPONSES",
    "AlarmDesk",
    "CommunityServices",
    "Unauthorized",
    "create_app",
    "install",
    "limit_body_size",
    "routers",
]

#: Error bodies every route may answer with (for the OpenAPI document).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorOut} for code in (401, 403, 404, 409, 413, 422)
}


def routers() -> list[APIRouter]:
    """The community API's routers, one per audience."""
    return [residents.router, staff.router, police.router, alarms.router, requests.router, tokens.router]


async def _community_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CommunityError)
    headers = {"Retry-After": str(int(exc.retry_after))} if isinstance(exc, RateLimited) else None
    body = {"code": exc.code, "message": exc.message, "field": exc.field}
    return JSONResponse(body, status_code=exc.status, headers=headers)


def install(app: FastAPI, services: CommunityServices, alarm_desk: AlarmDesk | None = None) -> None:
    """Mount the community API on ``app`` (Tortoise must be initialised while it serves)."""
    app.state.community = services
    app.state.alarm_desk = alarm_desk
    app.add_exception_handler(CommunityError, _community_error)
    for router in routers():
        app.include_router(router, responses=ERROR_RESPONSES)


def create_app(services: CommunityServices, alarm_desk: AlarmDesk | None = None) -> FastAPI:
    """The community API alone (the platform serves it inside :func:`anfang.web.create_platform_app`)."""
    app = FastAPI(title="anfang community access", version="1.0")
    install(app, services, alarm_desk)
    limit_body_size(app, services)
    return app


def limit_body_size(app: FastAPI, services: CommunityServices) -> None:
    """Refuse request bodies over ``services.limits.max_body_bytes`` with 413 before anything reads them;
    call it last, so that this middleware is the outermost."""
    app.add_middleware(BodyLimit, max_bytes=services.limits.max_body_bytes)
