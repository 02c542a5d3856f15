"""Access records: captures, decisions, alarms, API tokens (:mod:`community.tokens`), the audit log, retention.

Thin IO adapter over the Tortoise models; the clock is passed in.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from community.decisions import Capture, Decision
from community.models import AccessDecisionRow, AuditRow, CaptureRow
from community.tokens import TokenPolicy, TokenStore, hash_token
from privacy.audit import purpose_of
from privacy.purge import RetentionPolicy, purge, trim_jsonl

__all__ = ["AccessRecords", "Retention", "hash_token"]


@dataclass(frozen=True, slots=True)
class Retention:
    """How long records are kept, in days."""

    captures_days: float = 30.0
    decisions_days: float = 90.0
    audit_days: float = 365.0
    passes_days: float = 30.0
    strangers_days: float = 7.0  # captures that matched nobody
    location_days: float = 30.0  # raw tag/MAC/tracker sightings (daily counts are kept)
    #: JSON-lines files of the platform (the rule audit) whose lines older than ``audit_days`` go too
    jsonl_files: tuple[Path, ...] = ()
    events_days: float = 365.0  # device events other than location tracks


class AccessRecords:
    """Writes and searches of access records for one site."""

    def __init__(self, site: str, token_policy: TokenPolicy | None = None) -> None:
        self.site = site
        self.tokens = TokenStore(site, token_policy)

    async def record_capture(self, capture: Capture, *, ts: float, subject: str | None, score: float | None) -> str:
        """Store a capture (plate text, matched subject, snapshot reference — never the image)."""
        cid = uuid.uuid4().hex
        await CaptureRow.create(
            id=cid,
            site=self.site,
            ts=ts,
            device_id=capture.device_id,
            camera=capture.camera,
            credential_kind=capture.kind,
            plate=capture.credential if capture.kind == "plate" else None,
            subject_id=subject,
            score=score,
            snapshot_ref=capture.snapshot_ref,
        )
        return cid

    async def record_decision(
        self,
        decision: Decision,
        *,
        ts: float,
        mode: str,
        device_id: str,
        capture_id: str | None = None,
        command_ok: bool | None = None,
    ) -> str:
        """Store one access decision."""
        did = uuid.uuid4().hex
        await AccessDecisionRow.create(
            id=did,
            site=self.site,
            ts=ts,
            device_id=device_id,
            mode=mode,
            allowed=decision.allowed,
            reason=decision.reason,
            subject_id=decision.subject,
            subject_role=decision.subject_role,
            credential_kind=decision.credential_kind,
            credential_ref=decision.credential_ref,
            score=decision.score,
            pass_id=decision.pass_id,
            capture_id=capture_id,
            command_ok=command_ok,
        )
        return did

    async def search_decisions(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        device: str | None = None,
        plate: str | None = None,
        subject: str | None = None,
        allowed: bool | None = None,
        limit: int = 100,
    ) -> list[AccessDecisionRow]:
        """Decisions filtered by time, place, plate and person, newest first."""
        q = AccessDecisionRow.filter(site=self.site)
        if since is not None:
            q = q.filter(ts__gte=since)
        if until is not None:
            q = q.filter(ts__lt=until)
        if device:
            q = q.filter(device_id=device)
        if plate:
            q = q.filter(credential_kind="plate", credential_ref=plate)
        if subject:
            q = q.filter(subject_id=subject)
        if allowed is not None:
            q = q.filter(allowed=allowed)
        return await q.order_by("-ts").limit(limit)

    async def search_captures(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        device: str | None = None,
        plate: str | None = None,
        subject: str | None = None,
        limit: int = 100,
    ) -> list[CaptureRow]:
        """Captures filtered by time, place, plate and person, newest first."""
        q = CaptureRow.filter(site=self.site)
        if since is not None:
            q = q.filter(ts__gte=since)
        if until is not None:
            q = q.filter(ts__lt=until)
        if device:
            q = q.filter(device_id=device)
        if plate:
            q = q.filter(plate=plate)
        if subject:
            q = q.filter(subject_id=subject)
        return await q.order_by("-ts").limit(limit)

    async def audit(
        self,
        *,
        actor: str,
        actor_role: str | None,
        action: str,
        target: str | None,
        now: float,
        detail: dict[str, Any] | None = None,
        purpose: str | None = None,
    ) -> None:
        """Append to the audit log of personal-data access (``purpose``: by default the one the action
        serves, :func:`privacy.audit.purpose_of`). ``target`` is an id or a keyed reference, never a value."""
        await AuditRow.create(
            id=uuid.uuid4().hex,
            ts=now,
            actor=actor,
            actor_role=actor_role,
            action=action,
            purpose=purpose or purpose_of(action),
            target=target,
            detail=json.dumps(detail, ensure_ascii=False) if detail else None,
        )

    async def create_token(self, person_id: str, *, label: str | None, now: float) -> str:
        """Issue an API bearer token for a person with the role's default lifetime; returns the token."""
        _info, token = await self.tokens.create(person_id, label=label, now=now)
        return token

    async def purge(self, now: float, retention: Retention) -> dict[str, int]:
        """Delete records older than their retention (:func:`privacy.purge.purge`); returns counts per kind."""
        policy = RetentionPolicy(
            strangers_days=retention.strangers_days,
            captures_days=retention.captures_days,
            decisions_days=retention.decisions_days,
            location_days=retention.location_days,
            audit_days=retention.audit_days,
            passes_days=retention.passes_days,
            events_days=retention.events_days,
        )
        removed = (await purge(CaptureRow._meta.db, self.site, policy, now)).removed
        out = dict(removed)
        out["captures"] = removed.get("captures", 0) + removed.pop("captures_strangers", 0)
        out.pop("captures_strangers", None)
        before = now - retention.audit_days * 86400.0
        lines = 0
        for path in retention.jsonl_files:
            # on the event loop on purpose: the rule audit appends from it too, so no line slips in between
            lines += trim_jsonl(path, before)
        if lines:
            out["rule_audit_lines"] = lines
        return out
