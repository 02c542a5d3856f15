"""The engine's input bus: which attached triggers listen to which inputs, timers and start-up.

Lookups are by key (event type and device/kind scope, top-level field, metric, zone, device kind),
so the cost per input does not grow with rules that cannot match. Every ``subscribe`` returns the
callback that removes exactly that subscription.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rules.loader import Rule
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match
from twins.hooks import PlatformActions

K = TypeVar("K")
T = TypeVar("T")

#: Matches an input against one trigger: a :class:`Match` or the reason it does not match.
MatchFn = Callable[[Input, dict[str, Any]], Match | str]
#: Activity of a device or subject: (device id, event type or None, subject, now, actions).
ActivityFn = Callable[[str, str | None, str, float, PlatformActions], Awaitable[None]]
#: A timer of the trigger came due.
TimerFn = Callable[[Timer, float, PlatformActions], Awaitable[None]]


@dataclass(frozen=True, slots=True, eq=False)
class Sub:
    """One trigger subscribed to inputs."""

    rule: Rule
    idx: int
    match: MatchFn


@dataclass(frozen=True, slots=True, eq=False)
class ActivitySub:
    """One trigger watching for activity (silence)."""

    rule: Rule
    idx: int
    touch: ActivityFn


def subscribe(table: dict[K, list[T]], key: K, item: T) -> Detach:
    """Append ``item`` under ``key``; the callback removes it (and the key once empty)."""
    table.setdefault(key, []).append(item)

    def detach() -> None:
        items = table.get(key)
        if items is None:
            return
        for i, x in enumerate(items):
            if x is item:
                del items[i]
                break
        if not items:
            del table[key]

    return detach


@dataclass
class InputBus:
    """Subscriptions by what can trigger them."""

    events: dict[tuple[str, str], list[Sub]] = field(default_factory=dict)
    twin: dict[str, list[Sub]] = field(default_factory=dict)
    threshold_field: dict[str, list[Sub]] = field(default_factory=dict)
    threshold_metric: dict[str, list[Sub]] = field(default_factory=dict)
    zones: dict[str, list[Sub]] = field(default_factory=dict)
    activity_device: dict[str, list[ActivitySub]] = field(default_factory=dict)
    activity_subject: dict[str, list[ActivitySub]] = field(default_factory=dict)
    #: (rule id, trigger index) → what to do when one of its timers is due.
    timers: dict[tuple[str, int], list[TimerFn]] = field(default_factory=dict)
    #: (rule id, trigger index) → does the trigger's own state still hold for a pending ``for``?
    holds: dict[tuple[str, int], list[Callable[[Timer], bool]]] = field(default_factory=dict)
    #: (rule id, trigger index) → arm its timers (silences, schedules) at start or when loaded later.
    armers: dict[tuple[str, int], list[Callable[[float], None]]] = field(default_factory=dict)

    def for_event(self, etype: str, device_id: str, kind: str) -> list[Sub]:
        """Candidates for an event; each rule at most once."""
        out: list[Sub] = []
        for t in (etype, "*"):
            for s in (f"dev:{device_id}", f"kind:{kind}", "*"):
                out.extend(self.events.get((t, s), ()))
        return unique(out)

    def for_fields(self, table: dict[str, list[Sub]], names: Iterable[str]) -> list[Sub]:
        """Candidates for changed twin fields or metrics."""
        out: list[Sub] = []
        for n in names:
            out.extend(table.get(n, ()))
        return unique(out)

    def timer_handler(self, rule_id: str, idx: int) -> TimerFn | None:
        """The handler for a trigger's timers, if the trigger has any."""
        fns = self.timers.get((rule_id, idx))
        return fns[0] if fns else None

    def state_holds(self, rule_id: str, idx: int, timer: Timer) -> bool:
        """Does the trigger's own state still hold for a pending ``for`` timer?"""
        return all(fn(timer) for fn in self.holds.get((rule_id, idx), ()))

    def arm(self, rule_id: str, idx: int, now: float) -> None:
        """Arm a trigger's timers."""
        for fn in self.armers.get((rule_id, idx), ()):
            fn(now)


def unique(subs: list[Sub]) -> list[Sub]:
    """Each rule at most once, first subscription wins."""
    if len(subs) < 2:
        return subs
    seen: set[str] = set()
    out = []
    for sub in subs:
        if sub.rule.id not in seen:
            seen.add(sub.rule.id)
            out.append(sub)
    return out
