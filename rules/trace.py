"""Why a rule fired or did not: trace entries, the bounded ring buffer, and firing records."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """What one rule made of one input.

    ``outcome`` is one of: fired, no_match, counting, condition_false, pending, cancelled,
    cooldown, error, ignored, invalid.
    """

    ts: float
    rule_id: str
    input: str
    outcome: str
    detail: str = ""

    def format(self, origin: float = 0.0) -> str:
        """One line for humans; times relative to ``origin``."""
        detail = f": {self.detail}" if self.detail else ""
        return f"t={self.ts - origin:.0f} {self.rule_id}: {self.outcome} — {self.input}{detail}"


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule fired; ``actions`` are the rendered actions it ran (with their outcome)."""

    ts: float
    rule_id: str
    subject: str
    input: str
    actions: list[dict[str, Any]]


class Trace:
    """A bounded ring buffer of :class:`TraceEntry`, and the newest ``per_rule`` entries of each rule."""

    def __init__(self, size: int = 1000, per_rule: int = 50) -> None:
        self.entries: deque[TraceEntry] = deque(maxlen=size)
        self.per_rule = per_rule
        self.recent: dict[str, deque[TraceEntry]] = {}
        #: Rules with entries added since :meth:`take_changed`.
        self.changed: set[str] = set()

    def add(self, ts: float, rule_id: str, label: str, outcome: str, detail: str = "") -> None:
        """Record one entry (the oldest falls out when full)."""
        entry = TraceEntry(ts, rule_id, label, outcome, detail)
        self.entries.append(entry)
        ring = self.recent.get(rule_id)
        if ring is None:
            ring = self.recent[rule_id] = deque(maxlen=self.per_rule)
        ring.append(entry)
        self.changed.add(rule_id)

    def take_changed(self) -> dict[str, list[TraceEntry]]:
        """The newest entries of each rule changed since the last call."""
        out = {rid: list(self.recent[rid]) for rid in self.changed if rid in self.recent}
        self.changed = set()
        return out

    def explain(self, rule_id: str | None = None, contains: str | None = None) -> list[TraceEntry]:
        """Entries for one rule and/or inputs whose label contains ``contains``."""
        return [
            t
            for t in self.entries
            if (rule_id is None or t.rule_id == rule_id) and (contains is None or contains in t.input)
        ]

    def __iter__(self) -> Iterator[TraceEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)
