"""The engine's pending timers: a dict + a lazy-deletion heap, mirrored into a :class:`TimerStore`.

Silence triggers keep no timer per subject while it is waited on: each has a
:class:`~rules.silence_clock.SilenceClock` here, and :meth:`TimerQueue.pop_due` hands out its due
subjects as ``silence`` timers (not stored; the trigger stores the ones that fired).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rules.silence_clock import SilenceClock
from rules.timers import Timer, TimerStore


def silence_key(rule_id: str, idx: int, subject: str) -> str:
    """The key of a silence trigger's timer for one subject."""
    return f"silence|{rule_id}|{idx}|{subject}"


class TimerQueue:
    """Pending timers by key, ordered by due time; ``for`` timers also indexed by subject."""

    def __init__(self, store: TimerStore) -> None:
        self.store = store
        self._timers: dict[str, Timer] = {}
        self._heap: list[tuple[float, str]] = []
        self._by_subject: dict[str, set[str]] = {}
        self._clocks: dict[tuple[str, int], SilenceClock] = {}

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
        """Remove every timer of a rule (and its silence clocks)."""
        for key in [k for k, t in self._timers.items() if t.rule_id == rule_id]:
            self.drop(key)
        for ck in [ck for ck in self._clocks if ck[0] == rule_id]:
            del self._clocks[ck]

    def clock(self, rule_id: str, rule_hash: str, idx: int, for_: float) -> SilenceClock:
        """The silence clock of a trigger: kept across re-attachment while the rule is unchanged."""
        clock = self._clocks.get((rule_id, idx))
        if clock is None or clock.rule_hash != rule_hash or clock.for_ != for_:
            clock = self._clocks[(rule_id, idx)] = SilenceClock(rule_id, rule_hash, idx, for_)
        return clock

    def clocks(self) -> list[SilenceClock]:
        """The silence clocks."""
        return list(self._clocks.values())

    def pending_for(self, subject: str) -> list[str]:
        """Keys of the ``for`` timers waiting on a subject."""
        return list(self._by_subject.get(subject, ()))

    def _heap_due(self) -> float | None:
        while self._heap:
            due, key = self._heap[0]
            t = self._timers.get(key)
            if t is not None and t.state == "armed" and t.due == due:
                return due
            heapq.heappop(self._heap)
        return None

    def _clock_due(self) -> tuple[float, SilenceClock] | None:
        first: tuple[float, SilenceClock] | None = None
        for clock in self._clocks.values():
            due = clock.next_due()
            if due is not None and (first is None or due < first[0]):
                first = (due, clock)
        return first

    def next_due(self) -> float | None:
        """Due time of the earliest armed timer or silent subject."""
        due, clock = self._heap_due(), self._clock_due()
        if clock is not None and (due is None or clock[0] < due):
            return clock[0]
        return due

    def pop_due(self, now: float) -> Timer | None:
        """The earliest timer due at or before ``now`` (it stays stored until dropped or re-put); a
        silent subject comes as an armed ``silence`` timer that is not stored (its clock forgets it)."""
        due, clock = self._heap_due(), self._clock_due()
        if clock is not None and clock[0] <= now and (due is None or clock[0] < due):
            c = clock[1]
            popped = c.pop_due(now)
            assert popped is not None  # its front is due
            subject, since = popped
            context = {"idx": c.idx, "since": since}
            key = silence_key(c.rule_id, c.idx, subject)
            return Timer(key, c.rule_id, c.rule_hash, "silence", since + c.for_, subject, context=context)
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
