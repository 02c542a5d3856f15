"""Vehicle dwell time: pair a plate's exit with its entry (pure, bounded memory)."""

from __future__ import annotations

from collections import OrderedDict


class DwellTracker:
    """Remembers when each plate entered; an exit yields the dwell in seconds.

    Holds at most ``max_plates`` entries; the longest-parked plate is forgotten first
    (``evicted`` counts those), so a flood of unread/fake plates cannot grow memory.
    """

    def __init__(self, max_plates: int = 10_000) -> None:
        if max_plates < 1:
            raise ValueError("max_plates must be >= 1")
        self.max_plates = max_plates
        self.evicted = 0
        self._entered: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entered)

    def observe(self, plate: str, direction: str, ts: float) -> float | None:
        """Record a capture; returns the dwell (seconds) when ``direction == "out"`` pairs an entry."""
        key = plate.strip().upper()
        if not key:
            return None
        if direction == "in":
            self._entered.pop(key, None)
            self._entered[key] = ts
            while len(self._entered) > self.max_plates:
                self._entered.popitem(last=False)
                self.evicted += 1
            return None
        if direction == "out":
            entered = self._entered.pop(key, None)
            if entered is None or ts < entered:
                return None
            return ts - entered
        return None
