"""A data subject's requests through the API (docs/privacy.md, "How a data subject's request is served").

Staff withdraw a person's face consent, deactivate a person who moved out and erase a person (PIPL art.
47); a resident withdraws their own face consent. The work is :mod:`privacy.erasure`; every request is
written to the audit log with counts only.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from community.api.deps import Audit, Id, Services, User, require
from community.models import PersonRow
from privacy.erasure import RequestReport, deactivate_person, erase_person, withdraw_face_consent

router = APIRouter(tags=["data subject requests"])
AuditLog = Annotated[Audit, Depends()]


class RequestOut(BaseModel):
    """What serving the request changed (counts per kind); ``pin`` is shown once when one was given."""

    person_id: str
    action: str
    removed: dict[str, int]
    pin: str | None = None


async def _done(report: RequestReport, user: PersonRow, audit: Audit) -> RequestOut:
    await audit(user, report.action, report.person_id, **report.removed)
    return RequestOut(person_id=report.person_id, action=report.action, removed=report.removed, pin=report.pin)


@router.delete("/me/face-consent", response_model=RequestOut)
async def withdraw_my_face_consent(user: User, services: Services, audit: AuditLog) -> RequestOut:
    """Withdraw my own face consent: templates and face images deleted at once; card, PIN and passes stay."""
    return await _done(await withdraw_face_consent(services.store, user.id, now=services.clock()), user, audit)


@router.delete("/people/{person_id}/face-consent", response_model=RequestOut)
async def withdraw_person_face_consent(person_id: Id, user: User, services: Services, audit: AuditLog) -> RequestOut:
    """Withdraw a person's face consent on their request (staff)."""
    require(user, "staff")
    return await _done(await withdraw_face_consent(services.store, person_id, now=services.clock()), user, audit)


@router.post("/people/{person_id}/deactivate", response_model=RequestOut)
async def deactivate(person_id: Id, user: User, services: Services, audit: AuditLog) -> RequestOut:
    """A resident moved out: no door opens for them, tokens and console sign-in end (staff)."""
    require(user, "staff")
    return await _done(await deactivate_person(services.store, person_id, now=services.clock()), user, audit)


@router.delete("/people/{person_id}", response_model=RequestOut)
async def erase(person_id: Id, user: User, services: Services, audit: AuditLog) -> RequestOut:
    """Erase a person's personal data (staff; irreversible). Access statistics stay, anonymised."""
    require(user, "staff")
    return await _done(await erase_person(services.store, person_id, now=services.clock()), user, audit)
