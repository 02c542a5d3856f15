"""Routes for API tokens: list mine (staff: the site's), issue one, revoke one (docs/access.md, role matrix)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from community.api.deps import Audit, Id, Services, Text, User, limit_token_issue
from community.api.schemas import ErrorOut, TokenCreated, TokenIn, TokenOut, token_out
from community.errors import Forbidden
from community.models import PersonRow
from community.snapshot import RESIDENT_ROLES

router = APIRouter(tags=["tokens"])
AuditLog = Annotated[Audit, Depends()]


@router.get("/tokens", response_model=list[TokenOut])
async def list_tokens(
    user: User,
    services: Services,
    audit: AuditLog,
    person: Text = None,
    ended: Annotated[bool, Query(description="also revoked and expired ones")] = False,
) -> list[TokenOut]:
    """My tokens; staff: the site's (of ``person``)."""
    if user.role != "staff":
        if person not in (None, user.id):
            raise Forbidden("not_your_token", "only staff see other people's tokens")
        person = user.id
    tokens = await services.records.tokens.list(person_id=person, now=services.clock(), ended=ended)
    await audit(user, "list_tokens", person, results=len(tokens))
    return [token_out(t) for t in tokens]


@router.post(
    "/tokens",
    response_model=TokenCreated,
    status_code=201,
    dependencies=[Depends(limit_token_issue)],
    responses={429: {"model": ErrorOut, "description": "too many tokens asked for; see Retry-After"}},
)
async def create_token(body: TokenIn, user: User, services: Services, audit: AuditLog) -> TokenCreated:
    """A new token for myself, or (staff) for a resident of the site; the token is shown once.

    Rate limited per client address (``api.token_issue_per_min``): 429 with Retry-After."""
    person_id = body.person_id or user.id
    if person_id != user.id:
        if user.role != "staff":
            raise Forbidden("not_your_token", "only staff issue tokens for other people")
        target = await PersonRow.get_or_none(id=person_id, site=services.store.site)
        if target is not None and target.role not in RESIDENT_ROLES:
            # staff and police tokens come from the operator (anfang community token create)
            raise Forbidden("residents_only", "staff issue tokens for residents only")
    ttl = None if body.ttl_hours is None else body.ttl_hours * 3600
    info, token = await services.records.tokens.create(
        person_id, now=services.clock(), label=body.label, ttl_s=ttl, created_by=user.id
    )
    await audit(user, "create_token", person_id, token=info.id)
    return TokenCreated(token=token, **token_out(info).model_dump())


@router.delete("/tokens/{token_id}", status_code=204)
async def revoke_token(token_id: Id, user: User, services: Services, audit: AuditLog) -> None:
    """Revoke a token of mine (staff: any of the site's), from the next request on."""
    tokens = services.records.tokens
    info = await tokens.get(token_id)
    if info.person_id != user.id and user.role != "staff":
        raise Forbidden("not_your_token", "only staff revoke other people's tokens")
    await tokens.revoke(token_id, now=services.clock())
    await audit(user, "revoke_token", info.person_id, token=token_id)
