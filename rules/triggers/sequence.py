"""``sequence`` triggers: steps in order within a window, per key; ``unless`` in between starts afresh.

"Two denied faces, then the door opens, without an allowed decision in between": steps
``access_decided`` (denied, twice) then the door's twin ``door: open``, keyed by the door, ``unless``
an allowed decision at that door. The state machine is :func:`rules.patterns.seq_advance`.
"""

from __future__ import annotations

from typing import Any

from rules.loader import Rule
from rules.model import SequenceTrigger
from rules.patterns import seq_advance
from rules.triggers.base import Detach, Input, Match, TriggerHost
from rules.triggers.steps import Step, subscribe_steps


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to every step's and ``unless``'s inputs."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, SequenceTrigger)
    steps = [Step.compile(s, spec.for_each) for s in spec.steps]
    unless = [Step.compile(s, spec.for_each) for s in spec.unless]
    times = tuple(s.times for s in spec.steps)
    table = host.state.sequences

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        for part in unless:
            key = part.key_of(host, inp, ctx)
            if key is not None:
                if table.pop((rule.id, idx, key), None) is not None:
                    return f"unless matched: the sequence for {key} starts afresh"
                return f"unless matched for {key} (no sequence running)"
        for i, step in enumerate(steps):
            key = step.key_of(host, inp, ctx)
            if key is None:
                continue
            sk = (rule.id, idx, key)
            before = table.get(sk)
            state, done = seq_advance(before, i, times, inp.ts, spec.within)
            if done:
                table.pop(sk, None)
                started = before.started if before else inp.ts
                return Match(key, key, {"type": "sequence", "key": key, "started": started, "steps": len(steps)})
            if state != before:
                if state is None:
                    table.pop(sk, None)
                else:
                    table[sk] = state
                return f"counting step {state.step + 1 if state else 1}/{len(steps)} for {key}"
        return "no step of the sequence advanced"

    return subscribe_steps(host, rule, idx, [*steps, *unless], match)
