"""What every trigger module shares: the normalised input, a match, and the host it attaches to.

A trigger module (one per trigger type: :mod:`.event`, :mod:`.twin`, :mod:`.threshold`,
:mod:`.zone`, :mod:`.silence`, :mod:`.schedule`) has one entry point,
``attach(host, rule, idx) -> Detach``: it subscribes the rule's ``idx``-th trigger to the inputs,
timers and start-up arming it needs on the host's :class:`~rules.triggers.bus.InputBus`, and returns
the callback that undoes exactly that. The host (the engine) runs what follows a match: conditions,
``for``, cooldown and actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

from rules.loader import Rule
from twins.hooks import DeviceEvent, PlatformActions, TwinChange

if TYPE_CHECKING:
    from rules.geo import TagTracker
    from rules.site import SitePlan
    from rules.timerqueue import TimerQueue
    from rules.trace import Trace
    from rules.triggers.bus import InputBus, Sub
    from rules.triggers.state import TriggerState

Ref = tuple[Rule, int]
#: Undoes one ``attach``.
Detach = Callable[[], None]


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


class TriggerHost(Protocol):
    """What a trigger module may use of the engine it is attached to."""

    site: SitePlan
    timers: TimerQueue
    trace: Trace
    tracker: TagTracker
    bus: InputBus
    state: TriggerState
    twins: dict[str, dict[str, Any]]

    def names(
        self,
        rule: Rule,
        subject: str,
        now: float,
        *,
        inp: Input | None = None,
        base: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        device_id: str | None = None,
    ) -> dict[str, Any]:
        """The names a rule's expressions see."""
        ...

    def functions(self, ctx: dict[str, Any]) -> dict[str, Callable[..., Any]]:
        """The function table for a context."""
        ...

    async def dispatch(self, subs: list[Sub], inp: Input, now: float, acts: PlatformActions) -> None:
        """Match an input against subscribed triggers and run what follows each match."""
        ...

    async def fire_if(
        self, rule: Rule, ctx: dict[str, Any], key: str, label: str, now: float, acts: PlatformActions
    ) -> None:
        """Check the rule's conditions, then fire it (timer-driven triggers)."""
        ...

    def fault(self, rule: Rule, now: float, label: str, exc: BaseException) -> None:
        """A rule failed on one input: counted, logged, traced, alarmed."""
        ...

    def owns(self, rule: Rule, idx: int, device_id: str, subject: str) -> bool:
        """Is the state of the rule's trigger for this device/subject this engine's (:mod:`rules.routing`)?"""
        ...

    def owns_entity(self, entity: str) -> bool:
        """Does this engine hold the entity (a device, a subject)?"""
        ...


def chain(detaches: list[Detach]) -> Detach:
    """One detach callback for several."""

    def detach() -> None:
        for d in reversed(detaches):
            d()

    return detach


def device_allowed(patterns: list[str] | None, device_id: str) -> bool:
    """Exact ids or globs (``door-b1-*``)."""
    return patterns is None or any(p == device_id or fnmatchcase(device_id, p) for p in patterns)


def exact(patterns: list[str] | None) -> list[str] | None:
    """The patterns when none is a glob (they can be indexed), else None."""
    if patterns is None or any(ch in p for p in patterns for ch in "*?["):
        return None
    return patterns


def get_path(doc: dict[str, Any], path: str) -> Any:
    """``a.b.c`` lookup in nested dicts; None when absent."""
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur
