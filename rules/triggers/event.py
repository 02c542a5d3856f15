"""``event`` triggers: an event of a type arrives (optionally N within a window, grouped by a key)."""

from __future__ import annotations

from collections import deque
from typing import Any

from rules.expr import compile_expression
from rules.loader import Rule
from rules.model import EventTrigger
from rules.patterns import DistinctWindow
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain, device_allowed, exact
from rules.triggers.bus import Sub, subscribe
from rules.triggers.state import CountWindow


def scopes(spec: EventTrigger) -> list[str]:
    """Index scopes: exact device ids, else kinds, else any."""
    devices, kinds = exact(spec.device), spec.kind
    return [f"dev:{d}" for d in devices] if devices else [f"kind:{k}" for k in kinds] if kinds else ["*"]


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to the trigger's event types in its scopes."""
    trig = rule.triggers[idx]
    spec = trig.spec
    assert isinstance(spec, EventTrigger)
    distinct = compile_expression(spec.distinct) if spec.distinct else None

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        ev = inp.event
        if ev is None:
            return "not an event"
        if spec.kind and ev.kind not in spec.kind:
            return f"kind {ev.kind} not in {spec.kind}"
        if not device_allowed(spec.device, ev.device_id):
            return f"device {ev.device_id} not in {spec.device}"
        vars_: dict[str, Any] = {"type": "event", "event_type": ev.type, "edge": "start"}
        ctx["trigger"] = vars_
        if trig.where is not None and not trig.where.evaluate(ctx, host.functions(ctx)):
            return f"where {trig.where.source!r} is false"
        key = inp.subject
        if trig.group_by is not None:
            key = str(trig.group_by.evaluate(ctx, host.functions(ctx)))
        if distinct is not None:
            value = distinct.evaluate(ctx, host.functions(ctx))
            dk = (rule.id, idx, key)
            dwin = host.state.distinct.get(dk)
            if dwin is None:
                dwin = host.state.distinct[dk] = DistinctWindow()
            n = dwin.add(str(value), inp.ts, float(spec.within or 0))
            if n < spec.count:
                return f"counting {n}/{spec.count} distinct {spec.distinct} within {spec.within:.0f}s for {key}"
            vars_["count"], vars_["values"] = n, sorted(dwin.last)
            dwin.last.clear()
        elif spec.count > 1:
            ck = (rule.id, idx, key)
            win = host.state.counts.get(ck)
            if win is None:
                win = host.state.counts[ck] = CountWindow(deque(maxlen=spec.count))
            n = win.add(inp.ts, float(spec.within or 0))
            if n < spec.count:
                return f"counting {n}/{spec.count} within {spec.within:.0f}s for {key}"
            win.times.clear()
            vars_["count"] = n
        vars_["key"] = key
        return Match(key, inp.subject, vars_)

    sub = Sub(rule, idx, match)
    return chain([subscribe(host.bus.events, (t, s), sub) for t in spec.type or ["*"] for s in scopes(spec)])
