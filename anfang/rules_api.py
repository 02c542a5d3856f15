"""HTTP routes of the rules engine for property staff: the newest trace entries of each rule.

``GET /rules/traces`` lists the rules that have traces; ``GET /rules/{rule_id}/traces`` answers why a
rule fired, waited, was cancelled or did not match, newest last. Staff only (``require(user,
"staff")``, as the other operations routes of docs/access.md); every read writes an audit row (the
entries name subjects: people, plates, tags). They come from the registry database (``rule_traces``,
written by the engine once per tick), so any process of the site answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel

from community.api.deps import Audit, Id, User, require
from community.errors import NotFound
from rules.db_traces import DatabaseTraceStore

__all__ = ["install", "router"]

router = APIRouter(prefix="/rules", tags=["rules"])
AuditLog = Annotated[Audit, Depends(Audit)]


class TraceOut(BaseModel):
    ts: float
    rule_id: str
    input: str
    outcome: str  # fired, no_match, counting, condition_false, pending, cancelled, cooldown, error, invalid, ...
    detail: str


def _store(request: Request) -> DatabaseTraceStore:
    store: DatabaseTraceStore = request.app.state.rule_traces
    return store


Store = Annotated[DatabaseTraceStore, Depends(_store)]


@router.get("/traces", response_model=list[str])
async def traced_rules(user: User, store: Store) -> list[str]:
    """Staff: ids of the rules that have trace entries."""
    require(user, "staff")
    return await store.rule_ids()


@router.get("/{rule_id}/traces", response_model=list[TraceOut])
async def rule_traces(
    rule_id: Id,
    user: User,
    store: Store,
    audit: AuditLog,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    outcome: Annotated[str | None, Query(max_length=32, description="only entries with this outcome")] = None,
) -> list[TraceOut]:
    """Staff: the newest trace entries of one rule, oldest first (what it made of each input)."""
    require(user, "staff")
    entries = await store.read(rule_id)
    if entries is None:
        raise NotFound("unknown_rule", f"no traces for rule {rule_id}")
    await audit(user, "rule_traces", rule_id)
    chosen = [e for e in entries if outcome is None or e.outcome == outcome][-limit:]
    return [TraceOut(ts=e.ts, rule_id=e.rule_id, input=e.input, outcome=e.outcome, detail=e.detail) for e in chosen]


def install(app: FastAPI, store: DatabaseTraceStore) -> None:
    """Mount the routes; ``store`` reads the site's ``rule_traces``."""
    app.state.rule_traces = store
    app.include_router(router)
