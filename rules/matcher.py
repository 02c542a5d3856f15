"""Does a trigger match an input? Holds the per-trigger state: hysteresis, counts, zone membership."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rules.loader import Rule
from rules.model import EventTrigger, ThresholdTrigger, TwinTrigger, ZoneTrigger
from rules.site import SitePlan
from rules.timers import Timer
from rules.triggers import (
    CountWindow,
    Input,
    Match,
    device_allowed,
    get_path,
    match_twin,
    threshold_step,
    threshold_value,
)

Functions = Callable[[dict[str, Any]], dict[str, Callable[..., Any]]]


class Matcher:
    """Matches inputs against triggers; ``functions`` builds the expression function table."""

    def __init__(self, site: SitePlan, twins: dict[str, dict[str, Any]], functions: Functions) -> None:
        self.site = site
        self.twins = twins
        self.functions = functions
        self.threshold: dict[tuple[str, int, str], bool] = {}
        self.counts: dict[tuple[str, int, str], CountWindow] = {}
        self.membership: dict[tuple[str, str], bool] = {}

    def forget(self, rule_id: str) -> None:
        """Drop the state of a removed or changed rule."""
        for table in (self.threshold, self.counts):
            for k in [k for k in table if k[0] == rule_id]:
                del table[k]

    def match(self, rule: Rule, idx: int, inp: Input, ctx: dict[str, Any]) -> Match | str:
        """A :class:`Match`, or the reason it does not match."""
        trig = rule.triggers[idx]
        spec = trig.spec
        if isinstance(spec, EventTrigger):
            return self._event(rule, idx, inp, ctx)
        if isinstance(spec, TwinTrigger):
            return match_twin(spec, inp)
        if isinstance(spec, ThresholdTrigger):
            return self._threshold(rule, idx, spec, inp)
        if isinstance(spec, ZoneTrigger):
            if inp.zone != spec.zone or inp.zone_on != spec.on:
                return f"{inp.zone_on} {inp.zone}, rule wants {spec.on} {spec.zone}"
            tag = self.site.tags.get(inp.tag or "")
            if spec.tag and inp.tag not in spec.tag:
                return f"tag {inp.tag} not in {spec.tag}"
            if spec.group and (tag is None or tag.group not in spec.group):
                return f"tag group {tag.group if tag else None} not in {spec.group}"
            return Match(inp.subject, inp.subject, {"type": "zone", "zone": spec.zone, "on": spec.on, "tag": inp.tag})
        return f"{trig.type} triggers are timer-driven"

    def _event(self, rule: Rule, idx: int, inp: Input, ctx: dict[str, Any]) -> Match | str:
        trig = rule.triggers[idx]
        spec = trig.spec
        assert isinstance(spec, EventTrigger)
        ev = inp.event
        if ev is None:
            return "not an event"
        if spec.kind and ev.kind not in spec.kind:
            return f"kind {ev.kind} not in {spec.kind}"
        if not device_allowed(spec.device, ev.device_id):
            return f"device {ev.device_id} not in {spec.device}"
        vars_: dict[str, Any] = {"type": "event", "event_type": ev.type, "edge": "start"}
        ctx["trigger"] = vars_
        if trig.where is not None and not trig.where.evaluate(ctx, self.functions(ctx)):
            return f"where {trig.where.source!r} is false"
        key = inp.subject
        if trig.group_by is not None:
            key = str(trig.group_by.evaluate(ctx, self.functions(ctx)))
        if spec.count > 1:
            ck = (rule.id, idx, key)
            win = self.counts.get(ck)
            if win is None:
                win = self.counts[ck] = CountWindow(deque(maxlen=spec.count))
            n = win.add(inp.ts, float(spec.within or 0))
            if n < spec.count:
                return f"counting {n}/{spec.count} within {spec.within:.0f}s for {key}"
            win.times.clear()
            vars_["count"] = n
        vars_["key"] = key
        return Match(key, inp.subject, vars_)

    def _threshold(self, rule: Rule, idx: int, spec: ThresholdTrigger, inp: Input) -> Match | str:
        if spec.kind and inp.kind not in spec.kind:
            return f"kind {inp.kind} not in {spec.kind}"
        if not device_allowed(spec.device, inp.device_id):
            return f"device {inp.device_id} not in {spec.device}"
        value = threshold_value(spec, inp)
        if value is None:
            return "no numeric value"
        sk = (rule.id, idx, inp.device_id)
        now_in, edge = threshold_step(spec, value, self.threshold.get(sk, False))
        self.threshold[sk] = now_in
        if edge is None or (edge == "end" and not spec.recover):
            return f"no crossing (value {value:g}, {'in' if now_in else 'out of'} range)"
        field = spec.field or spec.metric
        return Match(inp.device_id, inp.subject, {"type": "threshold", "edge": edge, "value": value, "field": field})

    def state_holds(self, rule: Rule, idx: int, timer: Timer) -> bool:
        """Is the trigger's own state (outside the zone, field value, threshold side) still true?"""
        spec = rule.triggers[idx].spec
        tag = timer.context.get("tag")
        if isinstance(spec, ZoneTrigger) and tag:
            inside = self.membership.get((str(tag), spec.zone))
            if inside is not None and inside != (spec.on == "enter"):
                return False
        if isinstance(spec, TwinTrigger) and timer.subject in self.twins:
            cur = get_path(self.twins[timer.subject], spec.field)
            if "to" in spec.model_fields_set and cur != spec.to:
                return False
            if "to" not in spec.model_fields_set and "from_" in spec.model_fields_set and cur == spec.from_:
                return False
        return not (isinstance(spec, ThresholdTrigger) and self.threshold.get((rule.id, idx, timer.subject)) is False)
