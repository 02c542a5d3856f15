"""The engine's pending timers: a dict + a lazy-deletion heap, mirrored into a :class:`TimerStore`."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rules.timers import Timer, TimerStore


class TimerQueue:
    """Pending timers by key, ordered by due time; ``for`` timers also indexed by subject."""

    def __init__(self, store: TimerStore) -> None:
        self.store = store
        self._timers: dict[str, Timer] = {}
        self._heap: list[tuple[float, str]] = []
        self._by_subject: dict[str, set[str]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._timers

    def __iter__(self) -> Iterator[Timer]:
        return iter(list(self._timers.values()))

    def get(self, key: str) -> Timer | None:
        """The timer with this key."""
        return self._timers.get(key)

    def put(self, timer: Timer) -> None:
        """Add or replace a timer (persisted at the next :meth:`flush`)."""
        self._timers[timer.key] = timer
        self.store.save(timer)
        if timer.state == "armed":
            heapq.heappush(self._heap, (timer.due, timer.key))
        if timer.kind == "for":
            self._by_subject.setdefault(timer.subject, set()).add(timer.key)

    def drop(self, key: str) -> None:
        """Remove a timer."""
        timer = self._timers.pop(key, None)
        self.store.delete(key)
        if timer is not None and timer.kind == "for":
            keys = self._by_subject.get(timer.subject)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_subject[timer.subject]

    def drop_rule(self, rule_id: str) -> None:
        """Remove every timer of a rule."""
        for key in [k for k, t in self._timers.items() if t.rule_id == rule_id]:
            self.drop(key)

    def pending_for(self, subject: str) -> list[str]:
        """Keys of the ``for`` timers waiting on a subject."""
        return list(self._by_subject.get(subject, ()))

    def next_due(self) -> float | None:
        """Due time of the earliest armed timer."""
        while self._heap:
            due, key = self._heap[0]
            t = self._timers.get(key)
            if t is not None and t.state == "armed" and t.due == due:
                return due
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float) -> Timer | None:
        """The earliest timer due at or before ``now`` (it stays stored until dropped or re-put)."""
        due = self.next_due()
        if due is None or due > now:
            return None
        _, key = heapq.heappop(self._heap)
        return self._timers[key]

    def load(self, valid: dict[str, str]) -> None:
        """Load stored timers whose rule (id → definition hash in ``valid``) is unchanged."""
        for t in self.store.load():
            site_wide = t.kind == "memo" and not t.rule_id  # rule state of no one rule (zone membership)
            if not site_wide and valid.get(t.rule_id) != t.rule_hash:
                self.store.delete(t.key)
                continue
            self.put(t)

    async def flush(self) -> None:
        """Make the stored copy durable."""
        await self.store.flush()
