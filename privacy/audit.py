"""The audit log of personal-data access: purposes, subject references, and reading it back.

One table, ``community_audit_log``, written by the API (:class:`community.api.deps.Audit`), the web
console and the CLI through :meth:`community.records.AccessRecords.audit`. A row names who (actor and
role), why (purpose), what (action), about whom (target: a person, pass, watchlist or alarm id, or a keyed
reference such as ``plate:…``, never a value) and when. The table is append-only: migration 0062 refuses
every UPDATE with a trigger (SQLite and PostgreSQL); only the retention purge deletes rows.

:func:`purpose_of` is pure: the purpose an action serves when the caller names none.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PURPOSES", "AuditEntry", "plate_ref", "purpose_of", "search_audit"]

#: action (without a ``console_`` prefix) → the purpose it serves (PIPL art. 6: a stated, limited purpose)
PURPOSES: dict[str, str] = {
    "view_person": "resident_administration",
    "view_household": "resident_administration",
    "register_person": "resident_administration",
    "register_tenant": "resident_administration",
    "register_vehicle": "resident_administration",
    "import_community": "resident_administration",
    "enrol_face": "face_enrolment",
    "issue_pass": "visitor_access",
    "list_passes": "visitor_access",
    "revoke_pass": "visitor_access",
    "view_access_history": "data_subject_access",
    "withdraw_face_consent": "data_subject_request",
    "deactivate_person": "data_subject_request",
    "erase_person": "data_subject_request",
    "search_decisions": "security_investigation",
    "export_decisions": "security_investigation",
    "search_captures": "security_investigation",
    "open_capture": "security_investigation",
    "view_capture": "security_investigation",
    "view_tag_positions": "safety_of_residents",
    "view_tag_history": "safety_of_residents",
    "view_watchlist": "police_watchlist",
    "add_watch": "police_watchlist",
    "remove_watch": "police_watchlist",
    "close_case": "police_watchlist",
    "view_alarms": "alarm_handling",
    "view_alarm": "alarm_handling",
    "search_alarms": "alarm_handling",
    "watch_alarms": "alarm_handling",
    "create_token": "account_administration",
    "list_tokens": "account_administration",
    "revoke_token": "account_administration",
    "issue_sign_in_link": "account_administration",
}


def purpose_of(action: str) -> str:
    """The purpose ``action`` serves (``other`` for an action not in :data:`PURPOSES`)."""
    return PURPOSES.get(action.removeprefix("console_"), "other")


def plate_ref(lookup_hash: Callable[[str, str], str], plate: str) -> str:
    """What an audit row keeps of a plate someone searched for: a keyed reference, not the plate."""
    return "plate:" + lookup_hash(plate.strip().upper(), "plate")[:16]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log, as ``anfang audit`` prints it."""

    ts: float
    actor: str
    actor_role: str | None
    action: str
    purpose: str | None
    subject: str | None
    detail: dict[str, Any] | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "actor": self.actor,
            "role": self.actor_role,
            "action": self.action,
            "purpose": self.purpose,
            "subject": self.subject,
            "detail": self.detail,
        }


async def search_audit(
    *,
    actor: str | None = None,
    subject: str | None = None,
    action: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Audit rows matching every filter given, newest first (``action`` also matches its console form)."""
    from community.models import AuditRow  # the models load with the database

    q = AuditRow.all()
    if actor is not None:
        q = q.filter(actor=actor)
    if subject is not None:
        q = q.filter(target=subject)
    if action is not None:
        q = q.filter(action__in=[action, f"console_{action}"])
    if since is not None:
        q = q.filter(ts__gte=since)
    if until is not None:
        q = q.filter(ts__lt=until)
    rows = await q.order_by("-ts").limit(limit)
    return [
        AuditEntry(
            r.ts,
            r.actor,
            r.actor_role,
            r.action,
            r.purpose,
            r.target,
            json.loads(r.detail) if r.detail else None,
        )
        for r in rows
    ]
