"""Request rate limits: a token bucket per key (a client address), pure, with the clock passed in.

Used for the routes that hand out credentials (``POST /tokens``) and the console's password sign-in.
Each process keeps its own buckets, so N processes behind one address allow up to N times the rate;
the limit is there to make guessing slow and cheap to refuse, not to count exactly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["RateLimiter"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """``per_minute`` requests per key, in bursts of up to ``burst`` (default: ``per_minute``).

    At most ``max_keys`` keys are remembered; beyond that the least recently seen key is forgotten
    (drop policy: a forgotten key starts again with a full bucket).
    """

    def __init__(self, per_minute: int, *, burst: int | None = None, max_keys: int = 10_000) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst or per_minute)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def check(self, key: str, now: float) -> float | None:
        """Take one request for ``key`` at ``now``: None when allowed, else the seconds to wait (≥ 1, whole)."""
        bucket = self._buckets.pop(key, None) or _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return float(max(1, math.ceil((1.0 - bucket.tokens) / self.rate)))
