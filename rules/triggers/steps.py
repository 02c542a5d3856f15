"""Matching one step of a ``sequence`` or ``expect`` trigger (an event or a twin change) and its key."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rules.expr import Expression, compile_expression
from rules.loader import Rule
from rules.model import SequenceStep
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain, device_allowed
from rules.triggers.bus import Sub, subscribe
from rules.triggers.event import scopes
from rules.triggers.twin import match_twin


@dataclass(frozen=True, slots=True)
class Step:
    """A compiled step: its spec, ``where`` and key expressions."""

    spec: SequenceStep
    where: Expression | None
    key: Expression

    @classmethod
    def compile(cls, spec: SequenceStep, default_key: str) -> Step:
        where = spec.event.where if spec.event is not None else None
        return cls(
            spec,
            compile_expression(where) if where else None,
            compile_expression(spec.for_each or default_key),
        )

    def key_of(self, host: TriggerHost, inp: Input, ctx: dict[str, Any]) -> str | None:
        """The key of ``inp`` if it matches this step, else None."""
        ev, tw = self.spec.event, self.spec.twin
        if ev is not None:
            e = inp.event
            if e is None or (ev.type and "*" not in ev.type and e.type not in ev.type):
                return None
            if (ev.kind and e.kind not in ev.kind) or not device_allowed(ev.device, e.device_id):
                return None
            if self.where is not None and not self.where.evaluate(ctx, host.functions(ctx)):
                return None
        elif tw is not None and not isinstance(match_twin(tw, inp), Match):
            return None
        key = self.key.evaluate(ctx, host.functions(ctx))
        return None if key is None else str(key)


def subscribe_steps(host: TriggerHost, rule: Rule, idx: int, steps: list[Step], match: Callable[..., Any]) -> Detach:
    """One subscription of ``match`` under every input key any of ``steps`` listens to."""
    sub = Sub(rule, idx, match)
    keys: set[tuple[str, Any]] = set()
    for step in steps:
        if step.spec.event is not None:
            for t in step.spec.event.type or ["*"]:
                for s in scopes(step.spec.event):
                    keys.add(("events", (t, s)))
        elif step.spec.twin is not None:
            keys.add(("twin", step.spec.twin.field.split(".")[0]))
    detaches = [
        subscribe(host.bus.events, k, sub) if table == "events" else subscribe(host.bus.twin, k, sub)
        for table, k in sorted(keys, key=str)
    ]
    return chain(detaches)
