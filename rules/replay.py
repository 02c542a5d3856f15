"""``anfang rules replay``: run recorded inputs through a rule set and say what would have fired.

How a new rule is tried on last week's real data before it is enabled. The inputs are the site's
recorded device events (``device_events``), the access decisions of the platform (``access_decisions``,
replayed as the ``access_decided`` events the platform emitted) and the twins' recorded changes
(``twin_history``: reported changes as the twin changes the platform dispatched, connection changes as
``status``; desired changes only shape the desired state later changes carry). They run in time order on
a simulated clock through a fresh engine whose actions go nowhere, with per-condition verdicts in the
trace. The twins start from their state at ``since``, folded from the history kept before it.
:func:`replay` is pure apart from the engine's in-memory fakes; :func:`load_recorded` is the database side.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.alarms import InMemoryAlarmStore
from registry.history import HistoryStore, SiteHistoryEntry
from registry.sql import Sql
from rules.db_events import json_object
from rules.derive import StoredTwin
from rules.engine import RulesEngine
from rules.loader import Rule
from rules.recording import RecordingActions
from rules.sinks import InMemoryAuditLog, RecordingWebhookSender
from rules.site import SitePlan
from rules.trace import Firing, TraceEntry
from twins.document import merge
from twins.hooks import DeviceEvent, TwinChange


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded input, in the form the engine takes it; a ``baseline`` twin change is not an input
    but a twin's state at the start (restored into the engine before it starts)."""

    ts: float
    event: DeviceEvent | TwinChange
    baseline: bool = False


@dataclass
class ReplayReport:
    """What the rules made of the recorded inputs."""

    inputs: int = 0
    firings: list[Firing] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)

    def fired_counts(self) -> dict[str, int]:
        """Rule id → how many times it would have fired."""
        out: dict[str, int] = {}
        for f in self.firings:
            out[f.rule_id] = out.get(f.rule_id, 0) + 1
        return out


async def replay(rules: list[Rule], site: SitePlan, records: Iterable[Recorded], since: float) -> ReplayReport:
    """Run ``records`` (any order) through ``rules`` on a simulated clock starting at ``since``."""
    report = ReplayReport()
    acts = RecordingActions(clock=since, command_results={})
    engine = RulesEngine(
        rules,
        site,
        actions=acts,
        alarm_store=InMemoryAlarmStore(),
        webhooks=RecordingWebhookSender(),
        audit=InMemoryAuditLog(),
        trace_size=1_000_000,
        observer=report.firings.append,
        verdicts=True,
    )
    records = sorted(records, key=lambda r: r.ts)
    bases = [r.event for r in records if r.baseline and isinstance(r.event, TwinChange)]
    engine.restore_twins([StoredTwin(c.device_id, c.kind, c.reported) for c in bases])
    engine.start(since)

    async def advance(to: float) -> None:
        while (due := engine.next_due()) is not None and due <= to:
            acts.clock = max(acts.clock, due)
            await engine.tick(acts.clock, acts)
        acts.clock = max(acts.clock, to)
        await engine.tick(acts.clock, acts)

    for rec in records:
        if rec.baseline:
            continue
        await advance(rec.ts)
        report.inputs += 1
        if isinstance(rec.event, TwinChange):
            await engine.on_twin_change(rec.event, acts)
        elif rec.event.type == "status":
            await engine.on_status(rec.event.device_id, rec.event.kind, str(rec.event.data.get("status")), acts)
        else:
            await engine.on_event(rec.event, acts)
    report.trace = list(engine.trace)
    return report


def twin_inputs(site: str, entries: Iterable[SiteHistoryEntry], since: float) -> list[Recorded]:
    """The recorded twin changes (oldest first) as the engine's inputs from ``since`` on: each device's
    state folded from its entries, those before ``since`` only into the baseline it starts from. Pure."""
    reported: dict[str, dict[str, Any]] = {}
    desired: dict[str, dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    out: list[Recorded] = []
    started = False

    def baselines() -> list[Recorded]:
        changes = [TwinChange(site, d, kinds[d], 0, since, s, s, desired.get(d, {}), {}) for d, s in reported.items()]
        return [Recorded(since, change, baseline=True) for change in changes]

    for item in entries:
        h, dev = item.entry, item.entry.device_id
        kinds[dev] = item.kind
        if not started and h.ts >= since:
            started = True
            out += baselines()
        before = reported.get(dev, {})
        if h.source == "reported":
            reported[dev] = merge(before, h.changed)
        elif h.source == "desired":
            desired[dev] = merge(desired.get(dev, {}), h.changed)
        if not started:
            continue
        if h.source == "reported":
            now, wanted = reported[dev], desired.get(dev, {})
            change = TwinChange(site, dev, item.kind, h.version, h.ts, now, before, wanted, h.changed)
            out.append(Recorded(h.ts, change))
        elif h.source == "status":
            status = DeviceEvent(
                site, dev, item.kind, "status", f"status-{dev}-{h.version}", h.ts, {"status": h.changed.get("status")}
            )
            out.append(Recorded(h.ts, status))
    return out if started else out + baselines()


async def load_recorded(conn: BaseDBAsyncClient, site: str, since: float, until: float) -> list[Recorded]:
    """The site's recorded device events, central access decisions and twin changes in [since, until),
    with each twin's state at ``since`` as a baseline."""
    sql = Sql(conn)
    out: list[Recorded] = twin_inputs(site, await HistoryStore(conn, site).changes_before(until), since)
    rows = await sql.rows(
        "SELECT e.device_id, d.kind, e.event_id, e.type, COALESCE(e.ts, e.received_at) AS t, e.data "
        "FROM device_events e JOIN devices d ON d.id = e.device_id "
        "WHERE d.site_id = ? AND COALESCE(e.ts, e.received_at) >= ? AND COALESCE(e.ts, e.received_at) < ?",
        [site, since, until],
    )
    for r in rows:
        data = json_object(r["data"])
        ts = float(r["t"])
        out.append(Recorded(ts, DeviceEvent(site, r["device_id"], r["kind"], r["type"], r["event_id"], ts, data)))
    rows = await sql.rows(
        "SELECT id, ts, device_id, allowed, reason, subject_id, subject_role, credential_kind, score "
        "FROM access_decisions WHERE site = ? AND mode <> 'edge' AND ts >= ? AND ts < ?",
        [site, since, until],
    )
    for r in rows:
        data = {
            "device": r["device_id"],
            "allowed": bool(r["allowed"]),
            "subject": r["subject_id"],
            "subject_role": r["subject_role"],
            "credential_kind": r["credential_kind"],
            "reason": r["reason"],
            "score": r["score"],
        }
        ts = float(r["ts"])
        event = DeviceEvent(site, str(r["device_id"]), "platform", "access_decided", f"decision-{r['id']}", ts, data)
        out.append(Recorded(ts, event))
    return out
