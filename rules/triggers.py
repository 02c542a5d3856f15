"""Trigger index (so cost per input does not grow with rules that cannot match) and matching."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from rules.loader import Rule
from rules.model import EventTrigger, ScheduleTrigger, SilenceTrigger, ThresholdTrigger, TwinTrigger, ZoneTrigger
from twins.hooks import DeviceEvent, TwinChange

Ref = tuple[Rule, int]


@dataclass(frozen=True, slots=True)
class Input:
    """One thing that happened, normalised for matching."""

    source: str  # event | twin | telemetry | zone
    ts: float
    device_id: str
    kind: str
    label: str
    subject: str
    event: DeviceEvent | None = None
    change: TwinChange | None = None
    metrics: dict[str, Any] | None = None
    zone: str | None = None
    zone_on: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A trigger matched: ``key`` scopes ``for`` timers and cooldowns, ``vars`` is ``trigger.*``."""

    key: str
    subject: str
    vars: dict[str, Any]


def device_allowed(patterns: list[str] | None, device_id: str) -> bool:
    """Exact ids or globs (``door-b1-*``)."""
    return patterns is None or any(p == device_id or fnmatchcase(device_id, p) for p in patterns)


def get_path(doc: dict[str, Any], path: str) -> Any:
    """``a.b.c`` lookup in nested dicts; None when absent."""
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _exact(patterns: list[str] | None) -> list[str] | None:
    if patterns is None or any(ch in p for p in patterns for ch in "*?["):
        return None
    return patterns


@dataclass
class TriggerIndex:
    """Rules grouped by what can trigger them."""

    events: dict[tuple[str, str], list[Ref]] = field(default_factory=dict)
    twin: dict[str, list[Ref]] = field(default_factory=dict)
    threshold_field: dict[str, list[Ref]] = field(default_factory=dict)
    threshold_metric: dict[str, list[Ref]] = field(default_factory=dict)
    zones: dict[str, list[Ref]] = field(default_factory=dict)
    silence_device: dict[str, list[Ref]] = field(default_factory=dict)
    silence_subject: list[Ref] = field(default_factory=list)
    schedules: list[Ref] = field(default_factory=list)

    @classmethod
    def build(cls, rules: Iterable[Rule]) -> TriggerIndex:
        """Index every enabled rule's triggers."""
        ix = cls()
        for rule in rules:
            if not rule.enabled:
                continue
            for i, trig in enumerate(rule.triggers):
                ref = (rule, i)
                spec = trig.spec
                if isinstance(spec, EventTrigger):
                    devices, kinds = _exact(spec.device), spec.kind
                    scopes = (
                        [f"dev:{d}" for d in devices] if devices else [f"kind:{k}" for k in kinds] if kinds else ["*"]
                    )
                    for t in spec.type or ["*"]:
                        for s in scopes:
                            ix.events.setdefault((t, s), []).append(ref)
                elif isinstance(spec, TwinTrigger):
                    ix.twin.setdefault(spec.field.split(".")[0], []).append(ref)
                elif isinstance(spec, ThresholdTrigger):
                    if spec.field is not None:
                        ix.threshold_field.setdefault(spec.field.split(".")[0], []).append(ref)
                    else:
                        ix.threshold_metric.setdefault(str(spec.metric), []).append(ref)
                elif isinstance(spec, ZoneTrigger):
                    ix.zones.setdefault(spec.zone, []).append(ref)
                elif isinstance(spec, SilenceTrigger):
                    if spec.per == "device":
                        for k in spec.kind or ["*"]:
                            ix.silence_device.setdefault(k, []).append(ref)
                    else:
                        ix.silence_subject.append(ref)
                elif isinstance(spec, ScheduleTrigger):
                    ix.schedules.append(ref)
        return ix

    def for_event(self, etype: str, device_id: str, kind: str) -> list[Ref]:
        """Candidates for an event; each rule at most once."""
        out: list[Ref] = []
        for t in (etype, "*"):
            for s in (f"dev:{device_id}", f"kind:{kind}", "*"):
                out.extend(self.events.get((t, s), ()))
        return _unique(out)

    def for_fields(self, table: dict[str, list[Ref]], names: Iterable[str]) -> list[Ref]:
        """Candidates for changed twin fields or metrics."""
        out: list[Ref] = []
        for n in names:
            out.extend(table.get(n, ()))
        return _unique(out)


def _unique(refs: list[Ref]) -> list[Ref]:
    if len(refs) < 2:
        return refs
    seen: set[str] = set()
    out = []
    for ref in refs:
        if ref[0].id not in seen:
            seen.add(ref[0].id)
            out.append(ref)
    return out


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


@dataclass
class CountWindow:
    """Timestamps of recent matching events (bounded)."""

    times: deque[float]

    def add(self, ts: float, within: float) -> int:
        """Add one; drop those older than ``within``; return how many remain."""
        self.times.append(ts)
        while self.times and self.times[0] <= ts - within:
            self.times.popleft()
        return len(self.times)
