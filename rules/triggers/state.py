"""The state triggers keep between inputs: threshold sides, count windows, zone membership."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rules.patterns import DistinctWindow, SeqState
from rules.zones import ZoneMembership


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


@dataclass
class TriggerState:
    """Per-rule trigger state (kept in memory), keyed by rule id, trigger index and subject."""

    threshold: dict[tuple[str, int, str], bool] = field(default_factory=dict)
    counts: dict[tuple[str, int, str], CountWindow] = field(default_factory=dict)
    distinct: dict[tuple[str, int, str], DistinctWindow] = field(default_factory=dict)
    sequences: dict[tuple[str, int, str], SeqState] = field(default_factory=dict)
    #: (tag, zone) → inside; shared by every zone trigger.
    membership: dict[tuple[str, str], bool] = field(default_factory=dict)
    zones: ZoneMembership = field(init=False)

    def __post_init__(self) -> None:
        self.zones = ZoneMembership(inside=self.membership)

    def forget(self, rule_id: str) -> None:
        """Drop the state of a removed or changed rule."""
        tables: tuple[dict[tuple[str, int, str], Any], ...] = (
            self.threshold,
            self.counts,
            self.distinct,
            self.sequences,
        )
        for table in tables:
            for k in [k for k in table if k[0] == rule_id]:
                del table[k]
