"""``expect`` triggers: after an input, expect another with the same key within a window, else fire.

"A plate came in but did not go out within 48 h": ``after`` a ``plate_captured`` going in, expect one
going out for the same plate (``for_each: event.data.plate``) within 48 h; the rule's actions are
the "else". The wait is a timer (kept like every rule timer), cancelled when the expected input comes.
"""

from __future__ import annotations

from typing import Any

from rules.loader import Rule
from rules.model import ExpectTrigger
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain
from rules.triggers.bus import subscribe
from rules.triggers.steps import Step, subscribe_steps
from twins.hooks import PlatformActions


def timer_key(rule_id: str, idx: int, key: str) -> str:
    """The expectation's timer key."""
    return f"expect|{rule_id}|{idx}|{key}"


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Arm on ``after``, cancel on ``event``, fire when the window passes."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, ExpectTrigger)
    after = Step.compile(spec.after, spec.for_each)
    expected = Step.compile(spec.event, spec.for_each)

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        key = expected.key_of(host, inp, ctx)
        if key is not None:
            tk = timer_key(rule.id, idx, key)
            if tk in host.timers:
                host.timers.drop(tk)
                return f"cancelled: the expected input came for {key}"
        key = after.key_of(host, inp, ctx)
        if key is None:
            return "neither the input that starts the wait nor the expected one"
        tk = timer_key(rule.id, idx, key)
        if tk in host.timers:
            return f"pending: already expecting for {key}"
        context = {"idx": idx, "since": inp.ts, "device": inp.device_id}
        host.timers.put(Timer(tk, rule.id, rule.hash, "expect", inp.ts + spec.within, key, context=context))
        return f"pending: expecting for {key} within {spec.within:.0f}s"

    async def due(timer: Timer, now: float, acts: PlatformActions) -> None:
        host.timers.drop(timer.key)
        since = float(timer.context.get("since", timer.due - spec.within))
        vars_ = {"type": "expect", "edge": "start", "key": timer.subject, "since": since, "within": spec.within}
        device = timer.context.get("device")
        ctx = host.names(rule, timer.subject, now, trigger=vars_, device_id=str(device) if device else None)
        label = f"expect timer for {timer.subject}: nothing within {spec.within:.0f}s"
        await host.fire_if(rule, ctx, timer.subject, label, now, acts)

    return chain(
        [subscribe_steps(host, rule, idx, [after, expected], match), subscribe(host.bus.timers, (rule.id, idx), due)]
    )
