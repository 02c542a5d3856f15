"""``threshold`` triggers: a numeric twin field or telemetry metric crosses a line, with hysteresis."""

from __future__ import annotations

from typing import Any

from rules.loader import Rule
from rules.model import ThresholdTrigger
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain, device_allowed, get_path
from rules.triggers.bus import Sub, subscribe


def threshold_value(spec: ThresholdTrigger, inp: Input) -> float | None:
    """The numeric value the trigger watches in this input, if present."""
    if spec.metric is not None:
        value = (inp.metrics or {}).get(spec.metric)
    elif inp.change is not None and spec.field is not None:
        value = get_path(inp.change.reported, spec.field)
    else:
        value = None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def threshold_step(spec: ThresholdTrigger, value: float, was_in: bool) -> tuple[bool, str | None]:
    """Hysteresis state machine: returns (now_in, edge) with edge "start"/"end"/None."""
    if spec.below is not None:
        entering, leaving = value < spec.below, value >= spec.below + spec.hysteresis
    else:
        above = float(spec.above) if spec.above is not None else 0.0
        entering, leaving = value > above, value <= above - spec.hysteresis
    if not was_in and entering:
        return True, "start"
    if was_in and leaving:
        return False, "end"
    return was_in, None


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to the field's changes or the metric's samples."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, ThresholdTrigger)

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        if spec.kind and inp.kind not in spec.kind:
            return f"kind {inp.kind} not in {spec.kind}"
        if not device_allowed(spec.device, inp.device_id):
            return f"device {inp.device_id} not in {spec.device}"
        value = threshold_value(spec, inp)
        if value is None:
            return "no numeric value"
        sk = (rule.id, idx, inp.device_id)
        now_in, edge = threshold_step(spec, value, host.state.threshold.get(sk, False))
        host.state.threshold[sk] = now_in
        if edge is None or (edge == "end" and not spec.recover):
            return f"no crossing (value {value:g}, {'in' if now_in else 'out of'} range)"
        field = spec.field or spec.metric
        return Match(inp.device_id, inp.subject, {"type": "threshold", "edge": edge, "value": value, "field": field})

    def holds(timer: Timer) -> bool:
        return host.state.threshold.get((rule.id, idx, timer.subject)) is not False

    sub = Sub(rule, idx, match)
    if spec.field is not None:
        on = subscribe(host.bus.threshold_field, spec.field.split(".")[0], sub)
    else:
        on = subscribe(host.bus.threshold_metric, str(spec.metric), sub)
    return chain([on, subscribe(host.bus.holds, (rule.id, idx), holds)])
