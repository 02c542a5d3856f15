"""``state`` triggers: a twin field is in a state — on the change into it, and again at window edges.

"A door open at night, also when it opened before the night began": ``state: {field: door, is: open,
edges: [night]}`` with ``if: time.night`` matches when a door opens, and at 22:00 and 06:00 every
door then open is matched again, so the condition is re-evaluated when the window starts.
"""

from __future__ import annotations

from typing import Any

from rules.loader import Rule
from rules.model import StateTrigger
from rules.patterns import edge_minutes, next_edge
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain, device_allowed, get_path
from rules.triggers.bus import Sub, subscribe
from twins.hooks import PlatformActions


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to the field's changes; arm the edge timer."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, StateTrigger)
    minutes = edge_minutes(spec.edges or [])
    key = f"edges|{rule.id}|{idx}"

    def wanted(device_id: str, kind: str) -> bool:
        return (not spec.kind or kind in spec.kind) and device_allowed(spec.device, device_id)

    def vars_(value: Any, at_edge: bool) -> dict[str, Any]:
        return {"type": "state", "edge": "start", "field": spec.field, "value": value, "at_edge": at_edge}

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        if inp.source == "state":
            return Match(inp.device_id, inp.device_id, vars_(spec.is_, True))
        if inp.change is None or not wanted(inp.device_id, inp.kind):
            return "not a twin change of a watched device"
        prev, cur = get_path(inp.change.previous_reported, spec.field), get_path(inp.change.reported, spec.field)
        if cur != spec.is_ or prev == cur:
            return f"{spec.field} {cur!r}: not a change into {spec.is_!r}"
        return Match(inp.device_id, inp.subject, vars_(cur, False))

    def holds(timer: Timer) -> bool:
        twin = host.twins.get(timer.subject)
        return twin is None or get_path(twin, spec.field) == spec.is_

    sub = Sub(rule, idx, match)

    def arm(now: float) -> None:
        if minutes and key not in host.timers:
            due_at = next_edge(now, minutes, host.site.tz)
            host.timers.put(Timer(key, rule.id, rule.hash, "edges", due_at, "site", context={"idx": idx}))

    async def due(timer: Timer, now: float, acts: PlatformActions) -> None:
        timer.due = next_edge(now, minutes, host.site.tz)
        host.timers.put(timer)
        for device_id, twin in sorted(host.twins.items()):
            dev = host.site.devices.get(device_id)
            kind = dev.kind if dev else ""
            if wanted(device_id, kind) and get_path(twin, spec.field) == spec.is_:
                label = f"window edge: {device_id} {spec.field} is {spec.is_!r}"
                await host.dispatch([sub], Input("state", now, device_id, kind, label, device_id), now, acts)

    ons = [subscribe(host.bus.twin, spec.field.split(".")[0], sub), subscribe(host.bus.holds, (rule.id, idx), holds)]
    if minutes:
        ons += [subscribe(host.bus.timers, (rule.id, idx), due), subscribe(host.bus.armers, (rule.id, idx), arm)]
    return chain(ons)
