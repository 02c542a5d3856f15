"""``twin`` triggers: a reported field changes (optionally from / to given values)."""

from __future__ import annotations

from typing import Any

from rules.loader import Rule
from rules.model import TwinTrigger
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain, device_allowed, get_path
from rules.triggers.bus import Sub, subscribe


def match_twin(spec: TwinTrigger, inp: Input) -> Match | str:
    """A reported field changed (from / to)."""
    if inp.change is None:
        return "not a twin change"
    if spec.kind and inp.kind not in spec.kind:
        return f"device kind {inp.kind} not in {spec.kind}"
    if not device_allowed(spec.device, inp.device_id):
        return f"device {inp.device_id} not in {spec.device}"
    prev = get_path(inp.change.previous_reported, spec.field)
    cur = get_path(inp.change.reported, spec.field)
    if prev == cur:
        return f"{spec.field} unchanged ({cur!r})"
    if "from_" in spec.model_fields_set and prev != spec.from_:
        return f"{spec.field} changed from {prev!r}, not from {spec.from_!r}"
    if "to" in spec.model_fields_set and cur != spec.to:
        return f"{spec.field} changed to {cur!r}, not to {spec.to!r}"
    return Match(inp.device_id, inp.subject, {"type": "twin", "field": spec.field, "value": cur, "previous": prev})


def state_holds(spec: TwinTrigger, twin: dict[str, Any] | None) -> bool:
    """Is the field still at the value the trigger matched (for a pending ``for``)?"""
    if twin is None:
        return True
    cur = get_path(twin, spec.field)
    if "to" in spec.model_fields_set and cur != spec.to:
        return False
    return not ("to" not in spec.model_fields_set and "from_" in spec.model_fields_set and cur == spec.from_)


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to changes of the field's top-level name."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, TwinTrigger)

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        return match_twin(spec, inp)

    def holds(timer: Timer) -> bool:
        return state_holds(spec, host.twins.get(timer.subject))

    return chain(
        [
            subscribe(host.bus.twin, spec.field.split(".")[0], Sub(rule, idx, match)),
            subscribe(host.bus.holds, (rule.id, idx), holds),
        ]
    )
