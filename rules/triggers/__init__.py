"""Triggers: one module per trigger type, each attaching a rule's trigger to the engine's input bus.

``attach(host, rule, idx)`` of a trigger module subscribes what that trigger listens to and returns
its detach callback; :func:`attach_rule` does it for every trigger of a rule.
"""

from __future__ import annotations

from collections.abc import Callable

from rules.loader import Rule
from rules.triggers import event, expect, level, schedule, sequence, silence, threshold, twin, zone
from rules.triggers.base import Detach, Input, Match, Ref, TriggerHost, chain, device_allowed, get_path
from rules.triggers.bus import InputBus, Sub
from rules.triggers.state import CountWindow, TriggerState
from rules.triggers.threshold import threshold_step, threshold_value
from rules.triggers.twin import match_twin

Attach = Callable[[TriggerHost, Rule, int], Detach]

#: Trigger type (the YAML ``when`` key) → its module's ``attach``.
ATTACH: dict[str, Attach] = {
    "event": event.attach,
    "twin": twin.attach,
    "threshold": threshold.attach,
    "zone": zone.attach,
    "silence": silence.attach,
    "schedule": schedule.attach,
    "sequence": sequence.attach,
    "expect": expect.attach,
    "state": level.attach,
}


def attach_rule(host: TriggerHost, rule: Rule) -> Detach:
    """Attach every trigger of an enabled rule (a disabled one attaches nothing)."""
    if not rule.enabled:
        return chain([])
    return chain([ATTACH[trig.type](host, rule, i) for i, trig in enumerate(rule.triggers)])


__all__ = [
    "ATTACH",
    "CountWindow",
    "Detach",
    "Input",
    "InputBus",
    "Match",
    "Ref",
    "Sub",
    "TriggerHost",
    "TriggerState",
    "attach_rule",
    "chain",
    "device_allowed",
    "get_path",
    "match_twin",
    "threshold_step",
    "threshold_value",
]
