"""``for`` timers re-derived at start from the twins stored in the registry (pure).

The twin change that arms a ``for`` timer is stored at once; the timer reaches the registry at the
engine's next flush (once a second). A crash in between would lose the timer: at start, every rule with
``for:`` and a ``twin`` trigger with ``to:`` is checked against the stored twins, and a device whose
field holds that value, with neither a pending nor a done timer of the rule, gets its timer back, due at
the field's stamp plus ``for`` (at once if that has passed). A timer that fired is kept as ``done`` until
its state ends, so a restart never fires it twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.loader import Rule
from rules.model import TwinTrigger
from rules.timerqueue import TimerQueue
from rules.timers import Timer
from rules.triggers.base import device_allowed, get_path


@dataclass(frozen=True, slots=True)
class StoredTwin:
    """A twin as the registry holds it: reported state and each reported path's time."""

    device_id: str
    kind: str
    reported: dict[str, Any]
    stamps: dict[str, float] = field(default_factory=dict)


def derive_for_timers(
    rules: Iterable[Rule],
    twins: Mapping[str, dict[str, Any]],
    stamps: Mapping[str, Mapping[str, float]],
    timers: TimerQueue,
    now: float,
    kinds: Mapping[str, str] | None = None,
    owns: Callable[[Rule, int, str], bool] | None = None,
) -> list[str]:
    """Arm the ``for`` timers the stored twins call for; returns their keys. ``owns(rule, idx, device)``:
    is the state of this trigger for this device this engine's (several workers per site)?"""
    armed: list[str] = []
    for rule in rules:
        if not rule.enabled or not rule.for_:
            continue
        for idx, trig in enumerate(rule.triggers):
            spec = trig.spec
            if not isinstance(spec, TwinTrigger) or "to" not in spec.model_fields_set:
                continue
            for device_id, reported in twins.items():
                kind = (kinds or {}).get(device_id)
                if spec.kind and kind is not None and kind not in spec.kind:
                    continue
                if not device_allowed(spec.device, device_id) or get_path(reported, spec.field) != spec.to:
                    continue
                if owns is not None and not owns(rule, idx, device_id):
                    continue
                key = f"for|{rule.id}|{device_id}"
                if key in timers:
                    continue
                since = float(stamps.get(device_id, {}).get(spec.field, now))
                value = get_path(reported, spec.field)
                trigger = {"type": "twin", "field": spec.field, "value": value, "previous": None, "edge": "start"}
                names = {"device": {"id": device_id}, "trigger": trigger, "subject_id": device_id}
                context = {"idx": idx, "tag": None, "names": names, "at": since, "armed": since, "derived": True}
                timers.put(Timer(key, rule.id, rule.hash, "for", since + rule.for_, device_id, context=context))
                armed.append(key)
    return armed
