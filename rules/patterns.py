"""Pure state machines of the richer triggers: sequences, distinct counts, connection, window edges.

No IO and no clock of their own: every function takes the time it is asked about. Used by
:mod:`rules.triggers.sequence`, :mod:`rules.triggers.event` (``distinct``), :mod:`rules.triggers.level`
and the engine's connection state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any


@dataclass(frozen=True, slots=True)
class SeqState:
    """Where one key is in a sequence: the step it waits for, how often that step was seen, since when."""

    step: int
    seen: int
    started: float


def seq_advance(
    state: SeqState | None, matched: int, times: tuple[int, ...], ts: float, within: float
) -> tuple[SeqState | None, bool]:
    """One input matched step ``matched``: the new state and whether the sequence just completed.

    The window runs from the first input of step 0; an expired sequence starts afresh. An input of a
    step other than the awaited one is ignored, except step 0, which starts a sequence when none runs.
    """
    if state is not None and ts - state.started > within:
        state = None
    if state is None:
        if matched != 0:
            return None, False
        state = SeqState(0, 0, ts)
    if matched != state.step:
        return state, False
    seen = state.seen + 1
    if seen < times[state.step]:
        return SeqState(state.step, seen, state.started), False
    if state.step + 1 == len(times):
        return None, True
    return SeqState(state.step + 1, 0, state.started), False


@dataclass
class DistinctWindow:
    """Distinct values seen within a sliding window: value → the last time it was seen."""

    last: dict[Any, float] = field(default_factory=dict)

    def add(self, value: Any, ts: float, within: float) -> int:
        """Add one sighting; forget values not seen within ``within``; how many distinct remain."""
        self.last[value] = ts
        for v in [v for v, t in self.last.items() if t <= ts - within]:
            del self.last[v]
        return len(self.last)


#: Named windows whose edges a ``state`` trigger may re-evaluate at (site local time).
NAMED_EDGES: dict[str, tuple[str, ...]] = {"night": ("22:00", "06:00")}


def edge_minutes(edges: list[str]) -> list[int]:
    """``["night", "07:30"]`` → minutes of the day, sorted, unique."""
    out: set[int] = set()
    for e in edges:
        for hhmm in NAMED_EDGES.get(e, (e,)):
            h, m = hhmm.split(":")
            out.add(int(h) * 60 + int(m))
    return sorted(out)


def next_edge(now: float, minutes: list[int], tz: tzinfo) -> float:
    """The first edge strictly after ``now`` (site local time; DST days may skip or repeat one)."""
    local = datetime.fromtimestamp(now, tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in range(0, 3):
        base = day + timedelta(days=offset)
        for m in minutes:
            at = base.replace(hour=m // 60, minute=m % 60).timestamp()
            if at > now:
                return at
    raise ValueError("no edges")


@dataclass(frozen=True, slots=True)
class Connection:
    """A device's connection as the rules see it."""

    status: str  # online | offline
    since: float
    last_seen: float


def connection_names(conn: Connection | None, now: float) -> dict[str, Any]:
    """``device.online``, ``device.status``, ``device.last_seen``, ``device.offline_for`` (None: unknown)."""
    if conn is None:
        return {"online": None, "status": None, "last_seen": None, "offline_for": None}
    offline_for = now - conn.since if conn.status == "offline" else 0.0
    return {
        "online": conn.status == "online",
        "status": conn.status,
        "last_seen": conn.last_seen,
        "offline_for": offline_for,
    }
