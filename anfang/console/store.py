"""The console's accounts, sessions and one-time sign-in links in the site's database (``0070_console.sql``).

Raw SQL on the connection the platform opened (:class:`registry.sql.Sql`), so every process of a site
(the active worker, standbys, several workers sharing the port) sees the same sessions.
"""

from __future__ import annotations

from dataclasses import dataclass

from anfang.console.auth import hash_password, new_token, session_alive, token_hash, verify_password
from community.models import PersonRow
from registry.sql import Sql

__all__ = ["ConsoleStore", "ConsoleUserError", "Session"]

#: Roles that sign in with a password; residents sign in through a one-time link.
PASSWORD_ROLES = ("staff", "police")
_TOUCH_EVERY_S = 15.0  # last_seen is written at most this often per session (idle timeout is minutes)


class ConsoleUserError(Exception):
    """An account cannot be created or a link cannot be issued; the message says why."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in session: who, how (``password`` or ``link``), and its raw token (cookie value)."""

    token: str
    person: PersonRow
    via: str
    created_at: float

    @property
    def role(self) -> str:
        return self.person.role


class ConsoleStore:
    """Accounts, sessions and links of one site."""

    def __init__(self, sql: Sql, site: str, *, idle_s: float, max_age_s: float, link_ttl_s: float) -> None:
        self._sql, self.site = sql, site
        self.idle_s, self.max_age_s, self.link_ttl_s = idle_s, max_age_s, link_ttl_s

    @property
    def sql(self) -> Sql:
        """The site database (for the console's read-only pages)."""
        return self._sql

    # --- accounts -----------------------------------------------------------------------------------
    async def add_user(self, username: str, person_id: str, password: str, *, now: float) -> None:
        """A password account for a staff member or police officer (replaces the password if it exists)."""
        person = await PersonRow.get_or_none(id=person_id, site=self.site)
        if person is None:
            raise ConsoleUserError(f"no person {person_id} at site {self.site}")
        if person.role not in PASSWORD_ROLES:
            raise ConsoleUserError(f"{person_id} is {person.role}: only staff and police sign in with a password")
        if not username or len(username) > 64 or not username.isprintable() or " " in username:
            raise ConsoleUserError("a user name is 1 to 64 printable characters without spaces")
        if len(password) < 8:
            raise ConsoleUserError("a password has at least 8 characters")
        hashed = hash_password(password)
        await self._sql.execute("DELETE FROM console_users WHERE site = ? AND username = ?", [self.site, username])
        await self._sql.execute(
            "INSERT INTO console_users (site, username, person_id, password_hash, created_at, disabled) "
            "VALUES (?, ?, ?, ?, ?, 0)",
            [self.site, username, person_id, hashed, now],
        )

    async def check_password(self, username: str, password: str) -> PersonRow | None:
        """The active staff or police person of ``username`` if ``password`` is right."""
        rows = await self._sql.rows(
            "SELECT person_id, password_hash FROM console_users WHERE site = ? AND username = ? AND disabled = 0",
            [self.site, username],
        )
        if not rows:
            verify_password(password, hash_password("timing", n=2**14))  # same cost whether or not the user exists
            return None
        if not verify_password(password, str(rows[0]["password_hash"])):
            return None
        person = await PersonRow.get_or_none(id=rows[0]["person_id"], site=self.site, active=True)
        return person if person is not None and person.role in PASSWORD_ROLES else None

    # --- sessions -----------------------------------------------------------------------------------
    async def start_session(self, person: PersonRow, via: str, *, now: float) -> str:
        """A new session for ``person``; returns the token for the cookie."""
        token = new_token()
        # sign-ins are rare: forget sessions and links that can no longer be used while here
        await self._sql.execute(
            "DELETE FROM console_sessions WHERE site = ? AND (ended_at IS NOT NULL OR last_seen < ?)",
            [self.site, now - self.max_age_s],
        )
        await self._sql.execute("DELETE FROM console_links WHERE site = ? AND expires_at < ?", [self.site, now])
        await self._sql.execute(
            "INSERT INTO console_sessions (token_hash, site, person_id, via, created_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [token_hash(token), self.site, person.id, via, now, now],
        )
        return token

    async def session(self, token: str | None, *, now: float) -> Session | None:
        """The live session of a cookie (touched), or None: unknown, ended, idle too long, too old, its
        person no longer active, or a tenant's lease over."""
        if not token or len(token) > 128:
            return None
        rows = await self._sql.rows(
            "SELECT person_id, via, created_at, last_seen FROM console_sessions "
            "WHERE token_hash = ? AND site = ? AND ended_at IS NULL",
            [token_hash(token), self.site],
        )
        if not rows:
            return None
        row = rows[0]
        created, seen = float(row["created_at"]), float(row["last_seen"])
        if not session_alive(created, seen, now, idle_s=self.idle_s, max_age_s=self.max_age_s):
            await self.end_session(token, now=now)
            return None
        person = await PersonRow.get_or_none(id=row["person_id"], site=self.site, active=True)
        if person is None or (person.lease_end is not None and person.lease_end <= now):
            # moved out, or a tenant whose lease ended: as in the API, they read nothing any more
            return None
        if now - seen >= _TOUCH_EVERY_S:
            await self._sql.execute(
                "UPDATE console_sessions SET last_seen = ? WHERE token_hash = ?", [now, token_hash(token)]
            )
        return Session(token, person, str(row["via"]), created)

    async def end_session(self, token: str, *, now: float) -> None:
        """Sign out."""
        await self._sql.execute(
            "UPDATE console_sessions SET ended_at = ? WHERE token_hash = ? AND ended_at IS NULL",
            [now, token_hash(token)],
        )

    # --- residents' one-time links ------------------------------------------------------------------
    async def issue_link(self, person_id: str, *, created_by: str, now: float) -> str:
        """A one-time sign-in link token for a resident (valid ``link_ttl_s``)."""
        person = await PersonRow.get_or_none(id=person_id, site=self.site, active=True)
        if person is None:
            raise ConsoleUserError(f"no active person {person_id}")
        if person.role in PASSWORD_ROLES:
            raise ConsoleUserError("staff and police sign in with a user name and password")
        token = new_token()
        await self._sql.execute(
            "INSERT INTO console_links (token_hash, site, person_id, created_by, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [token_hash(token), self.site, person_id, created_by, now, now + self.link_ttl_s],
        )
        return token

    async def redeem_link(self, token: str, *, now: float) -> str | None:
        """A new session token for the link's resident, once; None for an unknown, used or expired link."""
        if not token or len(token) > 128:
            return None
        rows = await self._sql.rows(
            "SELECT person_id, expires_at, used_at FROM console_links WHERE token_hash = ? AND site = ?",
            [token_hash(token), self.site],
        )
        if not rows or rows[0]["used_at"] is not None or float(rows[0]["expires_at"]) <= now:
            return None
        changed, _ = await self._sql.conn.execute_query(
            self._sql.q("UPDATE console_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL"),
            [now, token_hash(token)],
        )
        if changed != 1:  # another request redeemed it first
            return None
        person = await PersonRow.get_or_none(id=rows[0]["person_id"], site=self.site, active=True)
        if person is None:
            return None
        return await self.start_session(person, "link", now=now)
