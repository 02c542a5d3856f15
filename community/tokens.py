"""API bearer tokens: bound to a site and a role, with an expiry, stored as SHA-256 hashes, revocable.

A token is shown once, when it is created; the database keeps its SHA-256 (tokens are 256 random
bits, so no key or salt is needed) and a public id (``tok_...``) to list and revoke it by. Every
request looks its token up again, so a revocation holds from the next request on, in every process.

Refusals: an unknown, revoked or expired token, a token whose person is inactive or whose person's
role changed since it was issued → :class:`TokenRefused` (401); a token of another site →
:class:`~community.errors.Forbidden` ``wrong_site`` (403).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from community.errors import CommunityError, Forbidden, NotFound
from community.models import ApiTokenRow, PersonRow
from community.snapshot import STAFF_ROLES

__all__ = ["TokenInfo", "TokenPolicy", "TokenRefused", "TokenStore", "hash_token"]

HOUR = 3600.0


def hash_token(token: str) -> str:
    """SHA-256 hex of an API token (tokens are random, so no key is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRefused(CommunityError):
    """The bearer token is unknown, revoked or expired, or no longer fits its person (401)."""

    status = 401


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """How long tokens live: ``staff_ttl_s`` for staff and police (one shift), ``resident_ttl_s`` for residents.

    A requested lifetime is capped at the role's.
    """

    staff_ttl_s: float = 12 * HOUR
    resident_ttl_s: float = 30 * 24 * HOUR

    def ttl_for(self, role: str, requested_s: float | None = None) -> float:
        """The lifetime of a new token for ``role`` (``requested_s`` capped at the role's)."""
        limit = self.staff_ttl_s if role in STAFF_ROLES else self.resident_ttl_s
        return limit if requested_s is None else max(1.0, min(requested_s, limit))


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a token (never the token or its hash)."""

    id: str
    person_id: str
    site: str
    role: str
    label: str | None
    created_at: float
    expires_at: float
    revoked: bool
    revoked_at: float | None
    created_by: str | None

    @classmethod
    def of(cls, row: ApiTokenRow) -> TokenInfo:
        """The information of a stored token."""
        return cls(
            row.id or "",
            row.person_id,
            row.site or "",
            row.role or "",
            row.label,
            row.created_at,
            row.expires_at or row.created_at,
            row.revoked,
            row.revoked_at,
            row.created_by,
        )


class TokenStore:
    """Tokens of one site."""

    def __init__(self, site: str, policy: TokenPolicy | None = None) -> None:
        self.site = site
        self.policy = policy or TokenPolicy()

    async def create(
        self,
        person_id: str,
        *,
        now: float,
        label: str | None = None,
        ttl_s: float | None = None,
        created_by: str | None = None,
    ) -> tuple[TokenInfo, str]:
        """Issue a token for a person of this site, bound to the site and the person's role.

        Returns its information and the token (shown once). Raises:
            NotFound: no active person ``person_id`` at this site.
        """
        person = await PersonRow.get_or_none(id=person_id, site=self.site, active=True)
        if person is None:
            raise NotFound("person_not_found", f"no person {person_id}")
        token = "afc_" + secrets.token_urlsafe(32)
        row = await ApiTokenRow.create(
            token_hash=hash_token(token),
            id="tok_" + secrets.token_hex(8),
            person_id=person_id,
            site=self.site,
            role=person.role,
            label=label,
            created_at=now,
            expires_at=now + self.policy.ttl_for(person.role, ttl_s),
            created_by=created_by,
        )
        return TokenInfo.of(row), token

    async def authenticate(self, token: str, *, now: float) -> PersonRow:
        """The person a token of this site belongs to. Raises :class:`TokenRefused` or ``Forbidden`` (module doc)."""
        row = await ApiTokenRow.get_or_none(token_hash=hash_token(token))
        if row is None:
            raise TokenRefused("bad_token", "unknown token")
        if row.revoked:
            raise TokenRefused("token_revoked", "the token was revoked")
        if row.site != self.site:
            raise Forbidden("wrong_site", "the token belongs to another site")
        if row.expires_at is None or row.expires_at <= now:
            raise TokenRefused("token_expired", "the token has expired")
        person = await PersonRow.get_or_none(id=row.person_id, site=self.site, active=True)
        if person is None:
            raise TokenRefused("bad_token", "the token's person is no longer active")
        if person.role != row.role:
            raise TokenRefused("role_changed", "the person's role changed since the token was issued")
        return person

    async def get(self, token_id: str) -> TokenInfo:
        """One token of this site by id; NotFound otherwise."""
        row = await ApiTokenRow.get_or_none(id=token_id, site=self.site)
        if row is None:
            raise NotFound("token_not_found", f"no token {token_id}")
        return TokenInfo.of(row)

    async def list(self, *, person_id: str | None = None, now: float, ended: bool = False) -> list[TokenInfo]:
        """This site's tokens (of one person), oldest first; revoked and expired ones only with ``ended``."""
        q = ApiTokenRow.filter(site=self.site)
        if person_id is not None:
            q = q.filter(person_id=person_id)
        if not ended:
            q = q.filter(revoked=False, expires_at__gt=now)
        return [TokenInfo.of(r) for r in await q.order_by("created_at")]

    async def revoke(self, token_id: str, *, now: float) -> TokenInfo:
        """Revoke a token of this site (from the next request on); NotFound otherwise."""
        live = ApiTokenRow.filter(id=token_id, site=self.site, revoked=False)
        if not await live.update(revoked=True, revoked_at=now):
            await self.get(token_id)  # NotFound, or revoked already: nothing to do
        return await self.get(token_id)
