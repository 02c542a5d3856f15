"""Per-device rate limit on the platform's error answers. Pure: the clock is passed in.

Every rejected device message is answered on the device's ``errors`` topic. A device flooding bad
messages would otherwise get an answer for each, and those answers share the broker's delivery path
with every other device's commands and replies (issue 20 item 5: one flooding device held other
devices' ``twin/get`` answers up to 20 s on the embedded broker). Each device gets a token bucket:
``burst`` answers at once, then ``rate`` per second; answers beyond it are dropped and counted
(``errors_throttled`` on ``_platform/health``). The rejections themselves are still counted and logged.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["BURST", "ERRORS_SUFFIX", "RATE_PER_S", "ErrorThrottle"]

ERRORS_SUFFIX = "/errors"  # a device's errors topic (twins.topics.errors_topic)
RATE_PER_S = 5.0  # a device that sends bad messages steadily hears about one in each 200 ms
BURST = 20  # a device's first answers always go out: a few bad messages are answered one by one
_MAX_DEVICES = 10_000  # buckets kept; the least recently used is forgotten (and starts full again)


class ErrorThrottle:
    """Token buckets keyed by the answer's topic (one ``errors`` topic per device)."""

    def __init__(self, rate: float = RATE_PER_S, burst: int = BURST, max_devices: int = _MAX_DEVICES) -> None:
        self._rate, self._burst, self._max = rate, float(burst), max_devices
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self.dropped = 0

    def allow(self, key: str, now: float) -> bool:
        """Whether an answer on ``key`` may go out at ``now`` (takes a token if so)."""
        tokens, at = self._buckets.pop(key, (self._burst, now))
        tokens = min(self._burst, tokens + max(0.0, now - at) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if not allowed:
            self.dropped += 1
        return allowed
