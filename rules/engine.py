"""The rules engine: a :class:`~twins.hooks.PlatformHandler` that matches inputs against rules.

Inputs (events, twin changes, telemetry, status, derived zone transitions) go through the
:class:`~rules.triggers.TriggerIndex`; matching rules are checked (``if``), delayed (``for``),
rate-limited (``cooldown``) and fired (``then``). Timers persist through a :class:`TimerStore`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from registry.alarms import Alarm, AlarmManager, AlarmStore, InMemoryAlarmStore
from rules.actions import ActionRunner
from rules.context import FunctionSet, build_names
from rules.geo import Reading, TagTracker
from rules.health import RuleHealth
from rules.kinds import STATUS_EVENT
from rules.loader import Diagnostic, Rule, load_rules, rule_files
from rules.matcher import Matcher
from rules.model import ScheduleTrigger, SilenceTrigger
from rules.reload import ReloadReport, diff, merge_reload
from rules.schedule import next_due
from rules.sinks import AuditLog, InMemoryAuditLog, WebhookSender
from rules.site import SitePlan
from rules.timerqueue import TimerQueue
from rules.timers import InMemoryTimerStore, Timer, TimerStore, TimerStoreError
from rules.trace import Firing, Trace, TraceEntry
from rules.triggers import Input, Ref, TriggerIndex, device_allowed
from twins.errors import TwinError
from twins.hooks import DeviceEvent, PlatformActions, TwinChange

log = logging.getLogger(__name__)

#: Kinds that are not physical devices: never "silent" unless a rule names the kind explicitly.
_NOT_PHYSICAL = frozenset({"platform", "rfid_tag"})

__all__ = ["ReloadReport", "RulesEngine"]


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
    ) -> None:
        self.site = site
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
        self._runner = ActionRunner(self.alarms, self.audit, webhooks)
        self._rules: dict[str, Rule] = {}
        self._index = TriggerIndex()
        self._twins: dict[str, dict[str, Any]] = {}
        self._kinds: dict[str, str] = {d.id: d.kind for d in site.devices.values()}
        self._matcher = Matcher(site, self._twins, self._functions)
        self._last_fired: dict[tuple[str, str], float] = {}
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
        self._rules = {r.id: r for r in rules}
        self._index = TriggerIndex.build(rules)

    def reload(self, rules: list[Rule], now: float | None = None) -> ReloadReport:
        """Swap the rule set; unchanged rules (same definition hash) keep their timers and state."""
        report = diff(self._rules, rules)
        for rid in report.removed + report.changed:
            self.timers.drop_rule(rid)
            self._matcher.forget(rid)
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
        for rule in self._rules.values():
            self._arm_rule(rule, now)

    def _arm_rule(self, rule: Rule, now: float) -> None:
        if not rule.enabled:
            return
        for i, trig in enumerate(rule.triggers):
            spec = trig.spec
            if isinstance(spec, SilenceTrigger):
                for subject in self._silence_subjects(spec):
                    key = f"silence|{rule.id}|{i}|{subject}"
                    if key not in self.timers:
                        ctx = {"idx": i, "since": now}
                        self.timers.put(
                            Timer(key, rule.id, rule.hash, "silence", now + spec.for_, subject, context=ctx)
                        )
            elif isinstance(spec, ScheduleTrigger):
                key = f"schedule|{rule.id}|{i}"
                if key not in self.timers:
                    due = next_due(spec, now, self.site.tz)
                    self.timers.put(Timer(key, rule.id, rule.hash, "schedule", due, "site", context={"idx": i}))

    def _silence_subjects(self, spec: SilenceTrigger) -> list[str]:
        if spec.per == "device":
            return [
                d.id
                for d in self.site.devices.values()
                if (d.kind in spec.kind if spec.kind else d.kind not in _NOT_PHYSICAL)
                and device_allowed(spec.device, d.id)
            ]
        return [p.id for p in self.site.people.values() if self._person_in_groups(p.id, spec.group)]

    def _person_in_groups(self, person_id: str, groups: list[str] | None) -> bool:
        person = self.site.people.get(person_id)
        if person is None:
            return False
        if groups is None:
            return True
        tag = self.site.tags.get(person.tag) if person.tag else None
        return person.role in groups or (tag is not None and tag.group in groups)

    async def tick(self, now: float | None = None, actions: PlatformActions | None = None) -> None:
        """Fire due timers (``for``, silence, schedules) and flush the timer store (once per tick)."""
        acts = self._acts(actions)
        now = acts.now() if now is None else now
        self.start(now)
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
                self._fault(rule, now, f"{timer.kind} timer for {timer.subject}", exc)
        await self.health.sync_alarms(acts, now)
        try:
            await self.timers.flush()
        except TimerStoreError as exc:
            # the store keeps the unwritten changes: the next tick writes them (the database may be back)
            log.error("rule timers not saved, retrying at the next tick: %s", exc)

    async def _on_timer(self, rule: Rule, timer: Timer, now: float, acts: PlatformActions) -> None:
        idx = int(timer.context.get("idx", 0))
        spec = rule.triggers[idx].spec
        label = f"{timer.kind} timer for {timer.subject}"
        if timer.kind == "for":
            self.timers.drop(timer.key)
            names = dict(timer.context.get("names", {}))
            ctx = self._names(rule, names.get("subject_id", timer.subject), now, base=names)
            if not self._holds(rule, idx, timer, ctx):
                self.trace.add(now, rule.id, label, "cancelled", "condition no longer holds at the due time")
                return
            await self._fire(rule, ctx, timer.subject, label, now, acts)
        elif timer.kind == "silence":
            assert isinstance(spec, SilenceTrigger)
            since = float(timer.context.get("since", timer.due - spec.for_))
            timer.state = "fired"
            self.timers.put(timer)
            vars_ = {
                "type": "silence",
                "edge": "start",
                "for": spec.for_,
                "last_seen": since,
                "silent_for": now - since,
            }
            ctx = self._names(rule, timer.subject, now, trigger=vars_, device_id=timer.subject)
            if self._conditions_ok(rule, ctx, label, now):
                await self._fire(rule, ctx, timer.subject, label, now, acts)
        elif timer.kind == "schedule":
            assert isinstance(spec, ScheduleTrigger)
            timer.due = next_due(spec, now, self.site.tz)
            self.timers.put(timer)
            ctx = self._names(rule, "site", now, trigger={"type": "schedule", "edge": "start"})
            if self._conditions_ok(rule, ctx, label, now):
                await self._fire(rule, ctx, "site", label, now, acts)

    # --- hook interface ---------------------------------------------------------------------

    def _acts(self, actions: PlatformActions | None) -> PlatformActions:
        acts = actions or self.actions
        if acts is None:
            raise RuntimeError("RulesEngine needs PlatformActions (constructor or call argument)")
        self.actions = acts
        return acts

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """An accepted device or platform event."""
        now = actions.now()
        self.start(now)
        self._kinds.setdefault(event.device_id, event.kind)
        subject = self._event_subject(event)
        label = f"event {event.type} {event.id} from {event.device_id}"
        inp = Input("event", now, event.device_id, event.kind, label, subject, event=event)
        await self._touch_silence(event.device_id, event.kind, event.type, subject, now, actions)
        if event.type == "tag_seen":
            await self._on_tag_seen(event, now, actions)
        await self._dispatch(self._index.for_event(event.type, event.device_id, event.kind), inp, now, actions)
        await self._recheck_pending({event.device_id, subject}, now)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        """An accepted reported-state change."""
        now = actions.now()
        self.start(now)
        self._kinds.setdefault(change.device_id, change.kind)
        self._twins[change.device_id] = dict(change.reported)
        label = f"twin {change.device_id} v{change.version} {sorted(change.changed)}"
        inp = Input("twin", now, change.device_id, change.kind, label, change.device_id, change=change)
        await self._touch_silence(change.device_id, change.kind, None, change.device_id, now, actions)
        refs = self._index.for_fields(self._index.twin, change.changed)
        refs = refs + self._index.for_fields(self._index.threshold_field, change.changed)
        await self._dispatch(refs, inp, now, actions)
        await self._recheck_pending({change.device_id}, now)

    async def on_telemetry(self, device_id: str, kind: str, metrics: dict[str, Any], actions: PlatformActions) -> None:
        """A telemetry sample (the platform forwards these; threshold rules on ``metric``)."""
        now = actions.now()
        self.start(now)
        self._kinds.setdefault(device_id, kind)
        label = f"telemetry {device_id} {sorted(metrics)}"
        inp = Input("telemetry", now, device_id, kind, label, device_id, metrics=dict(metrics))
        await self._touch_silence(device_id, kind, None, device_id, now, actions)
        await self._dispatch(self._index.for_fields(self._index.threshold_metric, metrics), inp, now, actions)

    async def on_status(self, device_id: str, kind: str, status: str, actions: PlatformActions) -> None:
        """The retained ``status`` topic changed; delivered to rules as event type ``status``."""
        now = actions.now()
        data = {"status": status}
        event = DeviceEvent(self.site.site, device_id, kind, STATUS_EVENT, f"status-{device_id}-{now}", now, data)
        if status == "online":
            await self.on_event(event, actions)
            return
        # "offline" is the absence of the device, not activity: it must not re-arm its silence timer
        self.start(now)
        inp = Input("event", now, device_id, kind, f"status {status} from {device_id}", device_id, event=event)
        await self._dispatch(self._index.for_event(STATUS_EVENT, device_id, kind), inp, now, actions)

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

    # --- derived inputs ---------------------------------------------------------------------

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

    async def _on_tag_seen(self, event: DeviceEvent, now: float, acts: PlatformActions) -> None:
        tag, rssi = event.data.get("tag"), event.data.get("rssi")
        pos = self.site.reader_position(event.device_id)
        if not isinstance(tag, str) or not isinstance(rssi, int | float) or pos is None:
            self.trace.add(now, "-", f"tag_seen {event.id}", "ignored", "no tag/rssi or reader not on the plan")
            return
        est = self.tracker.observe(tag, Reading(event.ts, event.device_id, pos[0], pos[1], float(rssi)))
        position = {"x": round(est.x, 2), "y": round(est.y, 2)}
        state = {"last_seen": event.ts, "reader": event.device_id, "rssi": float(rssi), "position": position}
        try:
            await acts.report_virtual(tag, state)
        except TwinError as exc:
            # an unregistered tag has no twin to update; its position still counts for the zones
            self.trace.add(now, "-", f"tag_seen {event.id}", "no twin", exc.message)
        person = self.site.person_for_tag(tag)
        subject = person.id if person else tag
        for zone_id, refs in self._index.zones.items():
            zone = self.site.zones.get(zone_id)
            if zone is None:
                continue
            inside = zone.covers(est.x, est.y)
            prev = self._matcher.membership.get((tag, zone_id))
            self._matcher.membership[(tag, zone_id)] = inside
            if prev is None or prev == inside:
                continue
            on = "enter" if inside else "leave"
            label = f"{tag} {on} {zone_id} at ({est.x:.1f},{est.y:.1f})"
            inp = Input("zone", now, event.device_id, "rfid_reader", label, subject, zone=zone_id, zone_on=on, tag=tag)
            await self._dispatch(list(refs), inp, now, acts)

    async def _touch_silence(
        self, device_id: str, kind: str, etype: str | None, subject: str, now: float, acts: PlatformActions
    ) -> None:
        refs = list(self._index.silence_device.get(kind, ()))
        if kind not in _NOT_PHYSICAL:
            refs += self._index.silence_device.get("*", [])
        for rule, idx in refs:
            spec = rule.triggers[idx].spec
            assert isinstance(spec, SilenceTrigger)
            if device_allowed(spec.device, device_id) and (not spec.events or etype in spec.events):
                await self._rearm_silence(rule, idx, spec, device_id, now, acts)
        if subject == device_id:
            return
        for rule, idx in self._index.silence_subject:
            spec = rule.triggers[idx].spec
            assert isinstance(spec, SilenceTrigger)
            if (not spec.events or etype in spec.events) and self._person_in_groups(subject, spec.group):
                await self._rearm_silence(rule, idx, spec, subject, now, acts)

    async def _rearm_silence(
        self, rule: Rule, idx: int, spec: SilenceTrigger, subject: str, now: float, acts: PlatformActions
    ) -> None:
        key = f"silence|{rule.id}|{idx}|{subject}"
        old = self.timers.get(key)
        ctx0 = {"idx": idx, "since": now}
        self.timers.put(Timer(key, rule.id, rule.hash, "silence", now + spec.for_, subject, context=ctx0))
        if old is None or old.state != "fired":
            return
        label = f"activity of {subject} after silence"
        if not spec.recover:
            self.trace.add(now, rule.id, label, "no_match", "recovered (recover: false)")
            return
        vars_ = {"type": "silence", "edge": "end", "for": spec.for_, "last_seen": now, "silent_for": 0.0}
        try:
            ctx = self._names(rule, subject, now, trigger=vars_, device_id=subject)
            if self._conditions_ok(rule, ctx, label, now):
                await self._fire(rule, ctx, subject, label, now, acts)
        except Exception as exc:  # a rule's fault ends this evaluation only
            self._fault(rule, now, label, exc)

    # --- evaluation -------------------------------------------------------------------------

    async def _dispatch(self, refs: list[Ref], inp: Input, now: float, acts: PlatformActions) -> None:
        for rule, idx in refs:
            try:
                await self._consider(rule, idx, inp, now, acts)
            except Exception as exc:  # a rule's fault ends this evaluation only
                self._fault(rule, now, inp.label, exc)

    def _fault(self, rule: Rule, now: float, label: str, exc: BaseException) -> None:
        """A rule failed on one input: counted, logged (rate-limited), traced, alarmed at the next tick."""
        reason = self.health.fault(rule, label, exc, now)
        self.trace.add(now, rule.id, label, "error", reason)

    def _holds(self, rule: Rule, idx: int, timer: Timer, ctx: dict[str, Any]) -> bool:
        """Do the trigger's state and the ``if`` still hold for a pending ``for`` timer?"""
        if not self._matcher.state_holds(rule, idx, timer):
            return False
        fns = self._functions(ctx)
        return all(bool(c.evaluate(ctx, fns)) for c in rule.conditions)

    async def _recheck_pending(self, subjects: set[str], now: float) -> None:
        for subject in subjects:
            for key in self.timers.pending_for(subject):
                timer = self.timers.get(key)
                rule = self._rules.get(timer.rule_id) if timer else None
                if timer is None or rule is None:
                    continue
                names = dict(timer.context.get("names", {}))
                try:
                    ctx = self._names(rule, names.get("subject_id", subject), now, base=names)
                    holds = self._holds(rule, int(timer.context.get("idx", 0)), timer, ctx)
                except Exception as exc:  # a rule's fault ends this evaluation only; the timer decides when due
                    self._fault(rule, now, f"recheck {key}", exc)
                    continue
                if not holds:
                    self.timers.drop(key)
                    detail = f"condition stopped holding before {rule.for_:.0f}s elapsed"
                    self.trace.add(now, rule.id, f"pending for {subject}", "cancelled", detail)

    async def _consider(self, rule: Rule, idx: int, inp: Input, now: float, acts: PlatformActions) -> None:
        ctx = self._names(rule, inp.subject, now, inp=inp)
        m = self._matcher.match(rule, idx, inp, ctx)
        if isinstance(m, str):
            self.trace.add(now, rule.id, inp.label, "counting" if m.startswith("counting") else "no_match", m)
            return
        m.vars.setdefault("edge", "start")
        ctx["trigger"] = m.vars
        if not self._conditions_ok(rule, ctx, inp.label, now):
            return
        if rule.for_:
            key = f"for|{rule.id}|{m.key}"
            if key in self.timers:
                self.trace.add(now, rule.id, inp.label, "pending", "already waiting")
                return
            names: dict[str, Any] = {k: ctx[k] for k in ("event", "device", "trigger") if k in ctx}
            names["subject_id"] = m.subject
            context = {"idx": idx, "tag": inp.tag, "names": names}
            self.timers.put(Timer(key, rule.id, rule.hash, "for", now + rule.for_, m.key, context=context))
            self.trace.add(now, rule.id, inp.label, "pending", f"fires in {rule.for_:.0f}s if still true")
            return
        await self._fire(rule, ctx, m.key, inp.label, now, acts)

    def _conditions_ok(self, rule: Rule, ctx: dict[str, Any], label: str, now: float) -> bool:
        fns = self._functions(ctx)
        for cond in rule.conditions:
            if not cond.evaluate(ctx, fns):
                self.trace.add(now, rule.id, label, "condition_false", f"if {cond.source!r} is false")
                return False
        return True

    async def _fire(
        self, rule: Rule, ctx: dict[str, Any], key: str, label: str, now: float, acts: PlatformActions
    ) -> None:
        fns = self._functions(ctx)
        dedupe = str(rule.dedupe.render(ctx, fns)) if rule.dedupe is not None else key
        last = self._last_fired.get((rule.id, dedupe))
        if rule.cooldown and last is not None and now - last < rule.cooldown:
            detail = f"fired {now - last:.0f}s ago (cooldown {rule.cooldown:.0f}s)"
            self.trace.add(now, rule.id, label, "cooldown", detail)
            return
        self._last_fired[(rule.id, dedupe)] = now
        done = await self._runner.run(rule, ctx, fns, now, acts)
        self.trace.add(now, rule.id, label, "fired", ", ".join(a["type"] for a in done) or "no action applied")
        if self.observer is not None:
            self.observer(Firing(now, rule.id, str(ctx["subject"]["id"]), label, done))

    # --- context ----------------------------------------------------------------------------

    def _names(
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
        event = None
        if inp is not None:
            device_id = inp.device_id
            if inp.event is not None:
                e = inp.event
                event = {"type": e.type, "device": e.device_id, "kind": e.kind, "id": e.id, "ts": e.ts, "data": e.data}
        return build_names(
            self.site,
            rule_id=rule.id,
            rule_description=rule.description,
            subject=subject,
            now=now,
            kinds=self._kinds,
            twins=self._twins,
            estimates=self.tracker.estimates(),
            event=event,
            device_id=device_id,
            base=base,
            trigger=trigger,
        )

    def _functions(self, ctx: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        now = float(ctx["time"]["now"])
        return FunctionSet(self.site, now, self.tracker.estimates(), self._twins, ctx["subject"]).table()

    def explain(self, rule_id: str | None = None, contains: str | None = None) -> list[TraceEntry]:
        """Trace entries, optionally for one rule and/or inputs whose label contains a string."""
        return self.trace.explain(rule_id, contains)

    def candidates(self, event_type: str, device_id: str, kind: str) -> list[str]:
        """Ids of the rules an event of this type from this device would be checked against."""
        return [rule.id for rule, _ in self._index.for_event(event_type, device_id, kind)]

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
