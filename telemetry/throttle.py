"""A log throttle: one line per interval for a repeating problem, carrying how often it happened since."""

from __future__ import annotations

import time
from collections.abc import Callable


class LogThrottle:
    """``due()`` is True at most once per ``interval`` seconds; ``suppressed`` counts the calls in between."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")
        self.suppressed = 0

    def due(self) -> bool:
        """Whether to log now; when True, ``suppressed`` holds the calls swallowed since the last line."""
        now = self.clock()
        if now - self._last >= self.interval:
            self._last = now
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        """The count of swallowed calls, reset to zero."""
        count, self.suppressed = self.suppressed, 0
        return count
