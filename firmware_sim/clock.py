"""The simulated clock: simulated epoch seconds advancing ``speed`` times faster than real time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SimClock:
    """``now()`` = ``start`` + (real seconds elapsed) * ``speed``; ``speed=60`` is an hour a minute."""

    start: float
    speed: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    _real0: float = field(init=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        self._real0 = self.monotonic()

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.start + (self.monotonic() - self._real0) * self.speed

    def real_delay(self, sim_seconds: float) -> float:
        """Real seconds until ``sim_seconds`` of simulated time have passed (never negative)."""
        return max(0.0, sim_seconds / self.speed)

    def until(self, sim_ts: float) -> float:
        """Real seconds until the simulated clock reads ``sim_ts``."""
        return self.real_delay(sim_ts - self.now())
