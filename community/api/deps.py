"""What every route of the community API depends on: the services, the signed-in user, roles, audit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from community.api.limits import ApiLimits, RateLimited
from community.errors import CommunityError, Forbidden
from community.models import PersonRow
from community.records import AccessRecords
from community.store import CommunityStore
from vision.gallery import DEFAULT_THRESHOLD

__all__ = [
    "Audit",
    "CommunityServices",
    "Id",
    "Limit",
    "Services",
    "Since",
    "Text",
    "Unauthorized",
    "User",
    "client_address",
    "current_user",
    "limit_token_issue",
    "require",
]


@dataclass
class CommunityServices:
    """What the API needs: the registry, the records and a clock."""

    store: CommunityStore
    records: AccessRecords
    clock: Callable[[], float] = field(default=time.time)
    face_threshold: float = DEFAULT_THRESHOLD  # the site's vision.face_threshold (人证合一 default)
    limits: ApiLimits = field(default_factory=ApiLimits)  # body size and rate limits (api.* settings)


class Unauthorized(CommunityError):
    """Missing or invalid bearer token."""

    status = 401


def get_services(request: Request) -> CommunityServices:
    """The services the application was built with."""
    services: CommunityServices = request.app.state.community
    return services


Services = Annotated[CommunityServices, Depends(get_services)]
_bearer = HTTPBearer(auto_error=False)


async def current_user(
    services: Services, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> PersonRow:
    """The person a request's bearer token belongs to (401 otherwise)."""
    if cred is None or cred.scheme.lower() != "bearer":
        raise Unauthorized("no_token", "bearer token required")
    # 401 unknown, revoked or expired; 403 wrong_site for another site's token (community/tokens.py)
    person = await services.records.tokens.authenticate(cred.credentials, now=services.clock())
    if person.lease_end is not None and person.lease_end <= services.clock():
        # a tenant whose lease ended reads nobody's data any more, the new tenant's least of all
        raise Forbidden("lease_ended", "the lease has ended")
    return person


User = Annotated[PersonRow, Depends(current_user)]
Since = Annotated[float | None, Query(ge=0, le=4102444800)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Text = Annotated[str | None, Query(max_length=64)]
#: Ids in paths: the id columns hold at most 64 characters (longer ones cannot exist).
Id = Annotated[str, Path(max_length=64)]


def require(user: PersonRow, *roles: str) -> None:
    """Refuse (403) unless the user has one of ``roles``."""
    if user.role not in roles:
        raise Forbidden("role_not_allowed", f"requires role {' or '.join(roles)}")


def client_address(request: Request) -> str:
    """The address rate limits count per (the peer; a proxy in front would need its header trusted)."""
    return request.client.host if request.client else "unknown"


async def limit_token_issue(request: Request, services: Services) -> None:
    """429 with Retry-After when this address asks for too many tokens (``api.token_issue_per_min``)."""
    wait = services.limits.token_issue.check(client_address(request), services.clock())
    if wait is not None:
        raise RateLimited(wait)


class Audit:
    """Writes one audit row per read or change of personal data (dependency: ``audit: AuditLog``)."""

    def __init__(self, services: Services) -> None:
        self._records, self._clock = services.records, services.clock

    async def __call__(self, user: PersonRow, action: str, target: str | None, **detail: Any) -> None:
        await self._records.audit(
            actor=user.id,
            actor_role=user.role,
            action=action,
            target=target,
            now=self._clock(),
            detail={k: v for k, v in detail.items() if v is not None} or None,
        )
