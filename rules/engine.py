"""The rules engine: a :class:`~twins.hooks.PlatformHandler` that coordinates rules.

Each rule's triggers are attached to the engine's :class:`~rules.triggers.InputBus` by their own
module (:mod:`rules.triggers`, one per trigger type); the engine normalises inputs (events, twin
changes, telemetry, status), hands them to the subscribed triggers, and runs what follows a match:
conditions (``if``), delay (``for``), rate limit (``cooldown``) and actions (``then``). Timers
persist through a :class:`TimerStore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from registry.alarms import Alarm, AlarmManager, AlarmStore, InMemoryAlarmStore
from rules.actions import ActionRunner
from rules.catch_up import AtTime, InputMark, event_cause
from rules.context import FunctionSet, build_names
from rules.derive import StoredTwin, derive_for_timers
from rules.event_time import DEFAULT_MAX_SKEW_S, EventClock, elapsed_event_time
from rules.geo import TagTracker
from rules.health import RuleHealth
from rules.kinds import STATUS_EVENT
from rules.loader import Diagnostic, Rule, load_rules, rule_files
from rules.model import SilenceTrigger
from rules.patterns import Connection, connection_names
from rules.reload import ReloadReport, diff, merge_reload
from rules.routing import Ownership, RuleRoute, Scope, entity_of, route_rule
from rules.sinks import AuditLog, InMemoryAuditLog, WebhookSender
from rules.site import DeviceInfo, SitePlan
from rules.state_store import StateMirror, expire
from rules.timerqueue import TimerQueue
from rules.timers import InMemoryTimerStore, Timer, TimerStore, TimerStoreError
from rules.trace import Firing, Trace, TraceEntry
from rules.triggers import Detach, Input, InputBus, Sub, TriggerState, attach_rule
from rules.triggers.silence import touch_activity
from rules.triggers.zone import observe_tag
from twins.hooks import DeviceEvent, PlatformActions, TwinChange

log = logging.getLogger(__name__)


class TraceWriter(Protocol):
    """Where the newest trace entries of each rule are kept for readers (:mod:`rules.db_traces`)."""

    async def write(self, recent: Mapping[str, Sequence[TraceEntry]]) -> None: ...


__all__ = ["ReloadReport", "RulesEngine"]

#: Routes of inputs remembered (:meth:`RulesEngine.routes`) before the table starts afresh.
_ROUTE_CACHE = 50_000
#: A trigger's reason for not matching that names an outcome of its own (else it is ``no_match``).
_OUTCOMES = frozenset({"counting", "pending", "cancelled"})


class RulesEngine:
    """Evaluates rules against platform inputs; implements the platform hook interface."""

    def __init__(
        self,
        rules: list[Rule],
        site: SitePlan,
        *,
        actions: PlatformActions | None = None,
        alarm_store: AlarmStore | None = None,
        timer_store: TimerStore | None = None,
        webhooks: WebhookSender | None = None,
        audit: AuditLog | None = None,
        tracker: TagTracker | None = None,
        trace_size: int = 1000,
        rules_path: Path | None = None,
        new_alarm_id: Callable[[], str] | None = None,
        observer: Callable[[Firing], None] | None = None,
        problems: list[Diagnostic] | None = None,
        trace_store: TraceWriter | None = None,
        verdicts: bool = False,
        max_event_skew: float = DEFAULT_MAX_SKEW_S,
        ownership: Ownership | None = None,
    ) -> None:
        self.site = site
        #: The partition this engine serves when several workers serve the site (:mod:`rules.routing`):
        #: it evaluates a rule for an input only if it owns the entity the rule keys that input on.
        self.ownership = ownership or Ownership()
        self._routes: dict[str, RuleRoute] = {}
        self._wide_owners: dict[str, set[int]] = {}
        self._route_cache: dict[tuple[Any, ...], frozenset[int]] = {}
        #: Inputs forwarded to other partitions' owners (feed rows), for ``/metrics``.
        self.forwarded = 0
        self.actions = actions
        self.alarms = AlarmManager(site.site, alarm_store or InMemoryAlarmStore(), new_alarm_id)
        self.timers = TimerQueue(timer_store or InMemoryTimerStore())
        self.audit = audit or InMemoryAuditLog()
        self.tracker = tracker or TagTracker()
        self.trace = Trace(trace_size)
        self.health = RuleHealth(self.alarms)
        self.health.set_problems(problems or [], [])
        self.rules_path = rules_path
        self.observer = observer
        self.trace_store = trace_store
        #: Trace every condition's verdict, not only the first false one (``anfang rules replay``).
        self.verdicts = verdicts
        self._last_verdicts: dict[str, str] = {}
        self.bus = InputBus()
        self.state = TriggerState()
        self.clock = EventClock(max_event_skew)
        self.twins: dict[str, dict[str, Any]] = {}
        #: Device connection as conditions see it (``device.online``, ``online(id)``, ...).
        self.connections: dict[str, Connection] = {}
        self._runner = ActionRunner(self.alarms, self.audit, webhooks)
        self._rules: dict[str, Rule] = {}
        self._detach: dict[str, Detach] = {}
        self._kinds: dict[str, str] = {d.id: d.kind for d in site.devices.values()}
        self._last_fired: dict[tuple[str, str], float] = {}
        self._memo = StateMirror(self.timers)
        # one input at a time against the state snapshot of a tick: the state written is that of whole
        # inputs, the ones up to the input mark (rules.catch_up)
        self._inputs = asyncio.Lock()
        self._replayed: set[tuple[str, str]] = set()  # stored events fed by catch_up, skipped if live
        #: device → reported path → time (restored twins), until :meth:`start` derives the ``for`` timers
        self.stamps: dict[str, dict[str, float]] = {}
        self._started = False
        self._mtimes: dict[Path, float] = {}
        self._set_rules(rules)

    # --- rule set ---------------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        """The loaded rules."""
        return list(self._rules.values())

    @property
    def faults(self) -> dict[str, str]:
        """Rules that failed at run time since they were loaded: id → the last error."""
        return {rid: f.last for rid, f in self.health.faults.items()}

    def _set_rules(self, rules: list[Rule]) -> None:
        # re-attach in the new order: subscriptions are dispatched in rule order
        for detach in self._detach.values():
            detach()
        self._rules = {r.id: r for r in rules}
        self._routes = {r.id: route_rule([t.spec for t in r.triggers], r.raw, r.dedupe is not None) for r in rules}
        self._route_cache.clear()
        #: the owners of the wide rules, by what they must receive of the whole site (rules.routing.wide_needs)
        self._wide_owners = {
            need: {self.ownership.owner(f"rule:{rid}") for rid, rt in self._routes.items() if need in rt.needs}
            for need in ("tags", "twins", "all")
        }
        self._detach = {r.id: attach_rule(self, r) for r in rules}

    def reload(self, rules: list[Rule], now: float | None = None) -> ReloadReport:
        """Swap the rule set; unchanged rules (same definition hash) keep their timers and state."""
        report = diff(self._rules, rules)
        for rid in report.removed + report.changed:
            self.timers.drop_rule(rid)
            self.state.forget(rid)
            for k in [k for k in self._last_fired if k[0] == rid]:
                del self._last_fired[k]
            self.health.forget(rid)
        self._set_rules(rules)
        if now is None and self.actions is not None:
            now = self.actions.now()
        if self._started and now is not None:
            for rid in report.added + report.changed:
                self._arm_rule(self._rules[rid], now)
        return report

    def reload_from_path(self, now: float) -> ReloadReport | None:
        """Reload when a rule file changed (mtime).

        A file with a problem keeps its rules at their last valid version (:mod:`rules.reload`); the
        problems are logged, traced, counted and raised as an alarm per file at the next :meth:`tick`.
        """
        if self.rules_path is None:
            return None
        mtimes = {f: f.stat().st_mtime for f in rule_files(self.rules_path) if f.exists()}
        if mtimes == self._mtimes:
            return None
        first = not self._mtimes
        self._mtimes = mtimes
        if first and self._rules:
            return None
        result = load_rules(self.rules_path, self.site)
        rules, stale = merge_reload(self._rules, result)
        for d in result.diagnostics:
            self.trace.add(now, d.rule_id or "-", f"reload {d.file}", "invalid", d.format())
        self.health.set_problems(result.diagnostics, stale)
        report = self.reload(rules, now)
        report.stale, report.problems = stale, list(result.diagnostics)
        self.health.reloads += 1
        log.info("rules reloaded from %s: %s", self.rules_path, report.summary())
        return report

    # --- timers -----------------------------------------------------------------------------

    def next_due(self) -> float | None:
        """When the earliest armed timer is due (for simulated clocks)."""
        return self.timers.next_due()

    def start(self, now: float) -> None:
        """Reload persisted timers (dropping those of changed rules) and arm silences/schedules.

        What this changes in the timer store is made durable by the next :meth:`tick`.
        """
        if self._started:
            return
        self._started = True
        self.timers.load({r.id: r.hash for r in self._rules.values()})
        if not self.ownership.single:
            for timer in self.timers:  # state of entities another partition owns now (the partitions changed)
                if not self._owns_timer(timer):
                    self.timers.drop(timer.key)
        self._memo.restore(self.state, self._last_fired, self._rules)
        self._rearm_silences(now)
        owns = None if self.ownership.single else lambda rule, idx, dev: self.owns(rule, idx, dev, dev)
        derive_for_timers(self.rules, self.twins, self.stamps, self.timers, now, self._kinds, owns)
        self.stamps = {}  # needed for that only: a dict per stored twin is not kept for the process's life
        for rule in self._rules.values():
            self._arm_rule(rule, now)

    def _rearm_silences(self, now: float) -> None:
        """Silence timers count from the engine's start, not from the last report before it.

        While the platform was down nothing could be heard: a device that reported a minute before the
        stop is not silent for the whole downtime. Every watched subject gets a full period from ``now``
        (the silence clocks start empty and are filled at ``now``); one that already alarmed (a stored
        ``fired`` timer) stays so until the subject is heard again.
        """
        for timer in self.timers:
            rule = self._rules.get(timer.rule_id)
            if timer.kind != "silence" or timer.state != "armed" or rule is None:
                continue
            # stored by a version that kept a timer per waited-on subject: its clock waits on it now
            idx = int(timer.context.get("idx", 0))
            spec = rule.triggers[idx].spec
            if not self.owns(rule, idx, timer.subject, timer.subject):
                continue  # its owner's engine takes it
            self.timers.drop(timer.key)
            if isinstance(spec, SilenceTrigger):
                self.timers.clock(rule.id, rule.hash, idx, spec.for_).watch(timer.subject, now)

    def restore_twins(self, twins: list[StoredTwin]) -> None:
        """The twins stored in the registry, before :meth:`start`: conditions see them at once, and a
        ``for`` timer whose twin change was stored but not the timer (a crash between the two) is
        re-derived from them at start (:func:`rules.derive.derive_for_timers`)."""
        for twin in twins:  # the caller's dicts, not copies: read only here, as the twin core's are
            self.twins.setdefault(twin.device_id, twin.reported)
            self.stamps[twin.device_id] = twin.stamps
            self._kinds.setdefault(twin.device_id, twin.kind)

    def register_devices(self, devices: list[DeviceInfo], now: float | None = None) -> None:
        """Devices registered since the start (the plan has those of the start): silence rules watch them
        too, placed in the site model or not."""
        new = [d for d in devices if d.id not in self.site.devices and not d.virtual]
        for dev in new:
            self.site.devices[dev.id] = dev
            self._kinds.setdefault(dev.id, dev.kind)
        virtual = {d.id for d in devices if d.virtual} - self.ownership.virtual
        if virtual:
            self.ownership.virtual.update(virtual)
            self._route_cache.clear()
        if self._started and new and now is not None:
            for rule in self._rules.values():
                self._arm_rule(rule, now)

    def _arm_rule(self, rule: Rule, now: float) -> None:
        for i in range(len(rule.triggers)):
            # a rule-wide trigger's timers (schedules, edges) are armed by the rule's owner only; the others
            # arm per device or subject, each checking its owner (rules.triggers.silence)
            if self._scope(rule, i) is not Scope.RULE or self.owns(rule, i, "", ""):
                self.bus.arm(rule.id, i, now)

    # --- ownership (several workers per site: rules.routing) ---------------------------------

    def _scope(self, rule: Rule, idx: int) -> Scope:
        route = self._routes.get(rule.id)
        return route.scopes[idx] if route is not None and idx < len(route.scopes) else Scope.RULE

    def owns(self, rule: Rule, idx: int, device_id: str, subject: str) -> bool:
        """Is the state of ``rule``'s ``idx``-th trigger for this input (device, subject) this engine's?"""
        if self.ownership.single:
            return True
        return self.ownership.owns(entity_of(self._scope(rule, idx), rule.id, device_id, subject))

    def _owns_timer(self, timer: Timer) -> bool:
        """Is a stored timer or memo of an entity this engine owns? (Site-wide memos and those of rules not
        loaded are left to the restore.)"""
        rule = self._rules.get(timer.rule_id)
        if rule is None:
            return True
        if timer.kind != "memo":
            return self.owns(rule, int(timer.context.get("idx", 0)), timer.subject, timer.subject)
        part = timer.key.split("|")
        if part[1] == "cool":  # memo|cool|<rule>|<dedupe>: the match key, unless the rule is routed whole
            key = "|".join(part[3:])
            return self.owns(rule, 0, key, key)
        if part[1] in ("count", "distinct", "seq", "side") and len(part) > 4:
            key = "|".join(part[4:])
            return self.owns(rule, int(part[3]), key, key)
        return True

    def owns_entity(self, entity: str) -> bool:
        """Does this engine hold ``entity`` (a device, a subject, ``rule:<id>``)?"""
        return self.ownership.owns(entity)

    def forward_targets(self, item: DeviceEvent | TwinChange) -> set[int]:
        """The other partitions an input of one of this engine's devices is forwarded to (:meth:`routes`)."""
        routes = self.routes(item)
        if not routes:  # the usual case
            return set()
        targets = set(routes)
        targets.discard(self.ownership.part)
        self.forwarded += len(targets)
        return targets

    def needs(self, event: DeviceEvent) -> bool:
        """Is this stored event one this engine evaluates (its device's, or forwarded to it)? For the catch-up."""
        own = self.ownership
        return own.single or own.owns(event.device_id) or own.part in self.routes(event)

    def routes(self, item: DeviceEvent | TwinChange) -> frozenset[int]:
        """The partitions whose owners must see this input (its device's owner aside): the owners of the
        entities some loaded rule keys it on, of a tag's virtual twin (partition 0 derives it) and of the
        wide rules. Decided from the trigger index alone (no ``where``): a target that then finds
        nothing to do costs a feed row, a missing one would lose an evaluation. On the ingest path:
        remembered per (input type, device, kind, subject or fields) until the rules or devices change."""
        if self.ownership.single:
            return frozenset()
        key: tuple[Any, ...]
        if isinstance(item, TwinChange):
            key = ("twin", item.device_id, *item.changed)
        elif item.type == "telemetry":
            key = ("telemetry", item.device_id, item.kind, *item.data)
        else:
            tag = item.data.get("tag") if item.type == "tag_seen" else None
            key = (item.type, item.device_id, item.kind, self._event_subject(item), tag)
        known = self._route_cache.get(key)
        if known is None:
            if len(self._route_cache) >= _ROUTE_CACHE:
                self._route_cache.clear()
            known = self._route_cache[key] = frozenset(self._routes_of(item))
        return known

    def _routes_of(self, item: DeviceEvent | TwinChange) -> set[int]:
        own = self.ownership
        targets = set(self._wide_owners["all"])
        if isinstance(item, TwinChange):
            targets |= self._wide_owners["twins"]
            subs = self.bus.for_fields(self.bus.twin, item.changed)
            subs = subs + self.bus.for_fields(self.bus.threshold_field, item.changed)
            for sub in subs:
                targets.add(
                    own.owner(entity_of(self._scope(sub.rule, sub.idx), sub.rule.id, item.device_id, item.device_id))
                )
        else:
            self._event_targets(item, targets)
        return targets

    def _event_targets(self, event: DeviceEvent, targets: set[int]) -> None:
        own = self.ownership
        dev = event.device_id
        if event.type == "telemetry":
            metrics = event.data if isinstance(event.data, dict) else {}
            for sub in self.bus.for_fields(self.bus.threshold_metric, metrics):
                targets.add(own.owner(entity_of(self._scope(sub.rule, sub.idx), sub.rule.id, dev, dev)))
            return
        etype = STATUS_EVENT if event.type == "status" else event.type
        subject = dev if event.type == "status" else self._event_subject(event)
        for sub in self.bus.for_event(etype, dev, event.kind):
            targets.add(own.owner(entity_of(self._scope(sub.rule, sub.idx), sub.rule.id, dev, subject)))
        if subject != dev:
            for asub in self.bus.activity_subject.get("*", ()):
                targets.add(own.owner(entity_of(self._scope(asub.rule, asub.idx), asub.rule.id, dev, subject)))
        if etype == "tag_seen" and isinstance(event.data.get("tag"), str):
            targets.add(own.owner(str(event.data["tag"])))  # its virtual twin
            targets |= self._wide_owners["tags"]
            for subs in self.bus.zones.values():
                for sub in subs:
                    targets.add(own.owner(entity_of(self._scope(sub.rule, sub.idx), sub.rule.id, dev, subject)))

    async def tick(self, now: float | None = None, actions: PlatformActions | None = None) -> None:
        """Fire due timers (``for``, silence, schedules) and flush the timer store (once per tick)."""
        acts = self._acts(actions)
        now = acts.now() if now is None else now
        self.start(now)
        await self._fire_due(now, acts)
        await self.health.sync_alarms(acts, now)
        await self._save_traces()
        async with self._inputs:
            expire(self.state, self._last_fired, self._rules, now, self.clock.max_skew)
            self._memo.save(self.state, self._last_fired, self._rules, now)
            try:
                await self.timers.flush()
            except TimerStoreError as exc:
                # the store keeps the unwritten changes: the next tick writes them (the database may be back)
                log.error("rule timers not saved, retrying at the next tick: %s", exc)

    async def _fire_due(self, now: float, acts: PlatformActions) -> None:
        while (timer := self.timers.pop_due(now)) is not None:
            rule = self._rules.get(timer.rule_id)
            if rule is None:
                self.timers.drop(timer.key)
                continue
            try:
                await self._on_timer(rule, timer, now, acts)
            except Exception as exc:  # a rule's fault ends this evaluation only
                if timer.kind == "for":
                    self.timers.drop(timer.key)
                self.fault(rule, now, f"{timer.kind} timer for {timer.subject}", exc)

    @property
    def input_mark(self) -> InputMark:
        """How far the stored events are processed (restored at :meth:`start`, written by :meth:`tick`)."""
        return self._memo.mark

    async def catch_up(self, events: Sequence[DeviceEvent], actions: PlatformActions) -> int:
        """Feed the stored events after the input mark (:func:`rules.db_events.events_after`) before live
        inputs, each at the time it was received, firing the timers that fell due in between; the same
        events arriving live afterwards are skipped. Returns how many were fed."""
        now = actions.now()
        self.start(now)
        for event in events:
            at = min(now, float(event.received_at if event.received_at is not None else now))
            past = AtTime(actions, at)
            async with self._inputs:
                await self._fire_due(at, past)
                await self._on_event(event, past)
            self._replayed.add((event.device_id, event.id))
        return len(events)

    async def _save_traces(self) -> None:
        if self.trace_store is None or not self.trace.changed:
            return
        changed = self.trace.take_changed()
        try:
            await self.trace_store.write(changed)
        except Exception as exc:  # traces are for reading only: never stop the rules for them
            self.trace.changed |= changed.keys()
            log.warning("rule traces not saved, retrying at the next tick: %s", exc)

    async def _on_timer(self, rule: Rule, timer: Timer, now: float, acts: PlatformActions) -> None:
        idx = int(timer.context.get("idx", 0))
        if timer.kind == "for":
            self.timers.drop(timer.key)
            names = dict(timer.context.get("names", {}))
            at = self._timer_time(timer, now)
            ctx = self.names(rule, names.get("subject_id", timer.subject), at, base=names)
            if not self._holds(rule, idx, timer, ctx):
                label = f"for timer for {timer.subject}"
                self.trace.add(now, rule.id, label, "cancelled", "condition no longer holds at the due time")
                return
            # kept as done until the state stops holding: a restart does not derive (and fire) it again
            timer.state = "done"
            self.timers.put(timer)
            await self._fire(rule, ctx, timer.subject, f"for timer for {timer.subject}", now, acts)
            return
        handler = self.bus.timer_handler(rule.id, idx)
        if handler is None:
            self.timers.drop(timer.key)
            return
        await handler(timer, now, acts)

    # --- hook interface ---------------------------------------------------------------------

    def _acts(self, actions: PlatformActions | None) -> PlatformActions:
        acts = actions or self.actions
        if acts is None:
            raise RuntimeError("RulesEngine needs PlatformActions (constructor or call argument)")
        self.actions = acts
        return acts

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """An accepted device or platform event."""
        if event.received_at is not None and (event.device_id, event.id) in self._replayed:
            self._replayed.discard((event.device_id, event.id))  # fed by catch_up already
            return
        async with self._inputs:
            await self._on_event(event, actions)

    async def _on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        now = actions.now()
        self.start(now)
        at = self.clock.time_of(event.ts, now)
        self._kinds.setdefault(event.device_id, event.kind)
        if event.kind != "platform":
            self._seen(event.device_id, now)
        subject = self._event_subject(event)
        label = f"event {event.type} {event.id} from {event.device_id}"
        inp = Input("event", at, event.device_id, event.kind, label, subject, event=event)
        await touch_activity(self, event.device_id, event.kind, event.type, subject, now, actions)
        if event.type == "tag_seen":
            await observe_tag(self, event, at, now, actions)
        await self.dispatch(self.bus.for_event(event.type, event.device_id, event.kind), inp, now, actions)
        await self._recheck_pending({event.device_id, subject}, now, at)
        if self.ownership.single or self.ownership.owns(event.device_id):
            # the mark is of this partition's stored events; forwarded ones are replayed by their targets
            self._memo.mark.advance(event)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        """An accepted reported-state change."""
        async with self._inputs:
            await self._on_twin_change(change, actions)

    async def _on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        now = actions.now()
        self.start(now)
        self._kinds.setdefault(change.device_id, change.kind)
        self._seen(change.device_id, now)
        # the changed document's own dict, not a copy: the twin core never changes a document's dicts in
        # place (twins.document.merge makes new ones), and the engine only reads them
        self.twins[change.device_id] = change.reported
        at = self.clock.time_of(change.ts, now)
        label = f"twin {change.device_id} v{change.version} {sorted(change.changed)}"
        inp = Input("twin", at, change.device_id, change.kind, label, change.device_id, change=change)
        await touch_activity(self, change.device_id, change.kind, None, change.device_id, now, actions)
        subs = self.bus.for_fields(self.bus.twin, change.changed)
        subs = subs + self.bus.for_fields(self.bus.threshold_field, change.changed)
        await self.dispatch(subs, inp, now, actions)
        await self._recheck_pending({change.device_id}, now, at)

    async def on_telemetry(self, device_id: str, kind: str, metrics: dict[str, Any], actions: PlatformActions) -> None:
        """A telemetry sample (the platform forwards these; threshold rules on ``metric``)."""
        async with self._inputs:
            await self._on_telemetry(device_id, kind, metrics, actions)

    async def _on_telemetry(self, device_id: str, kind: str, metrics: dict[str, Any], actions: PlatformActions) -> None:
        now = actions.now()
        self.start(now)
        self._kinds.setdefault(device_id, kind)
        self._seen(device_id, now)
        label = f"telemetry {device_id} {sorted(metrics)}"
        inp = Input("telemetry", now, device_id, kind, label, device_id, metrics=dict(metrics))
        await touch_activity(self, device_id, kind, None, device_id, now, actions)
        await self.dispatch(self.bus.for_fields(self.bus.threshold_metric, metrics), inp, now, actions)

    async def on_status(self, device_id: str, kind: str, status: str, actions: PlatformActions) -> None:
        """The retained ``status`` topic changed; delivered to rules as event type ``status``."""
        async with self._inputs:
            await self._on_status(device_id, kind, status, actions)

    async def _on_status(self, device_id: str, kind: str, status: str, actions: PlatformActions) -> None:
        now = actions.now()
        data = {"status": status}
        old = self.connections.get(device_id)
        if old is None or old.status != status:
            self.connections[device_id] = Connection(
                status, now, now if status == "online" or old is None else old.last_seen
            )
        event = DeviceEvent(self.site.site, device_id, kind, STATUS_EVENT, f"status-{device_id}-{now}", now, data)
        if status == "online":
            await self._on_event(event, actions)
            return
        # "offline" is the absence of the device, not activity: it must not re-arm its silence timer
        self.start(now)
        inp = Input("event", now, device_id, kind, f"status {status} from {device_id}", device_id, event=event)
        await self.dispatch(self.bus.for_event(STATUS_EVENT, device_id, kind), inp, now, actions)

    # --- alarms by hand ---------------------------------------------------------------------

    async def acknowledge(self, alarm_id: str, by: str, actions: PlatformActions | None = None) -> Alarm:
        """An operator acknowledged an alarm."""
        acts = self._acts(actions)
        return await self.alarms.acknowledge(acts, alarm_id, by=by, now=acts.now())

    async def clear_alarm(
        self, alarm_id: str, by: str, reason: str = "cleared by hand", actions: PlatformActions | None = None
    ) -> Alarm:
        """An operator cleared an alarm."""
        acts = self._acts(actions)
        return await self.alarms.clear(acts, alarm_id, by=by, now=acts.now(), reason=reason)

    def _seen(self, device_id: str, now: float) -> None:
        """A device sent something: it is online (a retained ``offline`` is out of date) and seen now."""
        old = self.connections.get(device_id)
        since = old.since if old is not None and old.status == "online" else now
        self.connections[device_id] = Connection("online", since, now)

    def _event_subject(self, event: DeviceEvent) -> str:
        data = event.data
        if isinstance(data.get("subject"), str) and data["subject"]:
            return str(data["subject"])
        if isinstance(data.get("tag"), str):
            person = self.site.person_for_tag(data["tag"])
            return person.id if person else str(data["tag"])
        if isinstance(data.get("plate"), str) and data["plate"] in self.site.vehicles:
            return str(data["plate"])
        return event.device_id

    # --- evaluation -------------------------------------------------------------------------

    async def dispatch(self, subs: list[Sub], inp: Input, now: float, acts: PlatformActions) -> None:
        """Match an input against subscribed triggers and run what follows each match (those whose
        state for this input this engine owns)."""
        if not self.ownership.single:
            subs = [s for s in subs if self.owns(s.rule, s.idx, inp.device_id, inp.subject)]
        for sub in subs:
            try:
                await self._consider(sub, inp, now, acts)
            except Exception as exc:  # a rule's fault ends this evaluation only
                self.fault(sub.rule, now, inp.label, exc)

    def fault(self, rule: Rule, now: float, label: str, exc: BaseException) -> None:
        """A rule failed on one input: counted, logged (rate-limited), traced, alarmed at the next tick."""
        reason = self.health.fault(rule, label, exc, now)
        self.trace.add(now, rule.id, label, "error", reason)

    def _holds(self, rule: Rule, idx: int, timer: Timer, ctx: dict[str, Any]) -> bool:
        """Do the trigger's state and the ``if`` still hold for a pending ``for`` timer?"""
        if not self.bus.state_holds(rule.id, idx, timer):
            return False
        fns = self.functions(ctx)
        return all(bool(c.evaluate(ctx, fns)) for c in rule.conditions)

    def _timer_time(self, timer: Timer, now: float) -> float:
        """The event time a ``for`` timer is judged at (its input's time plus the time since it was armed)."""
        ctx = timer.context
        if "at" not in ctx or "armed" not in ctx:
            return now
        return elapsed_event_time(float(ctx["at"]), float(ctx["armed"]), now)

    async def _recheck_pending(self, subjects: set[str], now: float, at: float | None = None) -> None:
        for subject in subjects:
            for key in self.timers.pending_for(subject):
                timer = self.timers.get(key)
                rule = self._rules.get(timer.rule_id) if timer else None
                if timer is None or rule is None:
                    continue
                names = dict(timer.context.get("names", {}))
                try:
                    when = self._timer_time(timer, now) if at is None else at
                    ctx = self.names(rule, names.get("subject_id", subject), when, base=names)
                    holds = self._holds(rule, int(timer.context.get("idx", 0)), timer, ctx)
                except Exception as exc:  # a rule's fault ends this evaluation only; the timer decides when due
                    self.fault(rule, now, f"recheck {key}", exc)
                    continue
                if not holds:
                    self.timers.drop(key)
                    if timer.state == "done":  # fired; its state has ended now
                        continue
                    detail = f"condition stopped holding before {rule.for_:.0f}s elapsed"
                    self.trace.add(now, rule.id, f"pending for {subject}", "cancelled", detail)

    async def _consider(self, sub: Sub, inp: Input, now: float, acts: PlatformActions) -> None:
        rule = sub.rule
        ctx = self.names(rule, inp.subject, inp.ts, inp=inp)  # judged at the event's time
        m = sub.match(inp, ctx)
        if isinstance(m, str):
            word = m.split(" ", 1)[0].rstrip(":")
            self.trace.add(now, rule.id, inp.label, word if word in _OUTCOMES else "no_match", m)
            return
        m.vars.setdefault("edge", "start")
        ctx["trigger"] = m.vars
        if not self._conditions_ok(rule, ctx, inp.label, now):
            return
        if rule.for_:
            key = f"for|{rule.id}|{m.key}"
            pending = self.timers.get(key)
            if pending is not None and pending.state == "armed":
                self.trace.add(now, rule.id, inp.label, "pending", "already waiting")
                return
            names: dict[str, Any] = {k: ctx[k] for k in ("event", "device", "trigger") if k in ctx}
            names["subject_id"] = m.subject
            context = {"idx": sub.idx, "tag": inp.tag, "names": names, "at": inp.ts, "armed": now}
            self.timers.put(Timer(key, rule.id, rule.hash, "for", now + rule.for_, m.key, context=context))
            self.trace.add(now, rule.id, inp.label, "pending", f"fires in {rule.for_:.0f}s if still true")
            return
        await self._fire(rule, ctx, m.key, inp.label, now, acts)

    def _conditions_ok(self, rule: Rule, ctx: dict[str, Any], label: str, now: float) -> bool:
        fns = self.functions(ctx)
        if self.verdicts:
            results = [(cond.source, bool(cond.evaluate(ctx, fns))) for cond in rule.conditions]
            text = "; ".join(f"if {src!r}: {'true' if ok else 'false'}" for src, ok in results)
            self._last_verdicts[rule.id] = text
            if not all(ok for _, ok in results):
                self.trace.add(now, rule.id, label, "condition_false", text)
                return False
            return True
        for cond in rule.conditions:
            if not cond.evaluate(ctx, fns):
                self.trace.add(now, rule.id, label, "condition_false", f"if {cond.source!r} is false")
                return False
        return True

    async def fire_if(
        self, rule: Rule, ctx: dict[str, Any], key: str, label: str, now: float, acts: PlatformActions
    ) -> None:
        """Check the rule's conditions, then fire it (timer-driven triggers)."""
        if self._conditions_ok(rule, ctx, label, now):
            await self._fire(rule, ctx, key, label, now, acts)

    async def _fire(
        self, rule: Rule, ctx: dict[str, Any], key: str, label: str, now: float, acts: PlatformActions
    ) -> None:
        fns = self.functions(ctx)
        dedupe = str(rule.dedupe.render(ctx, fns)) if rule.dedupe is not None else key
        last = self._last_fired.get((rule.id, dedupe))
        if rule.cooldown and last is not None and now - last < rule.cooldown:
            detail = f"fired {now - last:.0f}s ago (cooldown {rule.cooldown:.0f}s)"
            self.trace.add(now, rule.id, label, "cooldown", detail)
            return
        self._last_fired[(rule.id, dedupe)] = now
        event = ctx.get("event")
        cause = None
        if isinstance(event, dict) and event.get("device") and event.get("id"):
            cause = event_cause(str(event["device"]), str(event["id"]))
        done = await self._runner.run(rule, ctx, fns, now, acts, cause)
        detail = ", ".join(a["type"] for a in done) or "no action applied"
        if not self.ownership.single and any(a["type"] == "raise_alarm" for a in done):
            # which owner raised it, for operators (and the partition tests): alarms are rare
            subject, part = ctx["subject"]["id"], self.ownership.part
            log.info("rule %s raised an alarm for %s in partition %d", rule.id, subject, part)
        if self.verdicts and rule.conditions:
            detail += f" ({self._last_verdicts.pop(rule.id, 'conditions held at the start')})"
        self.trace.add(now, rule.id, label, "fired", detail)
        if self.observer is not None:
            self.observer(Firing(now, rule.id, str(ctx["subject"]["id"]), label, done))

    # --- context ----------------------------------------------------------------------------

    def names(
        self,
        rule: Rule,
        subject: str,
        now: float,
        *,
        inp: Input | None = None,
        base: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        device_id: str | None = None,
    ) -> dict[str, Any]:
        """The names a rule's expressions see for this subject and input."""
        event = None
        if inp is not None:
            device_id = inp.device_id
            if inp.event is not None:
                e = inp.event
                event = {"type": e.type, "device": e.device_id, "kind": e.kind, "id": e.id, "ts": e.ts, "data": e.data}
        names = build_names(
            self.site,
            rule_id=rule.id,
            rule_description=rule.description,
            subject=subject,
            now=now,
            kinds=self._kinds,
            twins=self.twins,
            estimates=self.tracker.estimates(),
            event=event,
            device_id=device_id,
            base=base,
            trigger=trigger,
        )
        device = names.get("device")
        if isinstance(device, dict) and device.get("id"):
            names["device"] = {**device, **connection_names(self.connections.get(str(device["id"])), now)}
        return names

    def functions(self, ctx: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        """The function table the expressions of a context call."""
        now = float(ctx["time"]["now"])
        device_id = (ctx.get("device") or {}).get("id")
        table = FunctionSet(
            self.site, now, self.tracker.estimates(), self.twins, ctx["subject"], device_id=device_id
        ).table()

        def connection(device_id: Any) -> dict[str, Any]:
            return connection_names(self.connections.get(str(device_id)), now)

        table["online"] = lambda device_id: connection(device_id)["online"]
        table["last_seen"] = lambda device_id: connection(device_id)["last_seen"]
        table["offline_for"] = lambda device_id: connection(device_id)["offline_for"]
        return table

    def explain(self, rule_id: str | None = None, contains: str | None = None) -> list[TraceEntry]:
        """Trace entries, optionally for one rule and/or inputs whose label contains a string."""
        return self.trace.explain(rule_id, contains)

    def candidates(self, event_type: str, device_id: str, kind: str) -> list[str]:
        """Ids of the rules an event of this type from this device would be checked against."""
        return [sub.rule.id for sub in self.bus.for_event(event_type, device_id, kind)]

    # --- long-running -----------------------------------------------------------------------

    async def run(self, actions: PlatformActions | None = None, interval: float = 1.0) -> None:
        """Fire timers and schedules, and pick up edited rule files; for the platform's TaskGroup."""
        acts = self._acts(actions)
        while True:
            now = acts.now()
            self.reload_from_path(now)
            await self.tick(now, acts)
            due = self.next_due()
            wait = interval if due is None else max(0.01, min(interval, due - acts.now()))
            await asyncio.sleep(wait)
