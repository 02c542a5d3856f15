"""What a platform worker has seen, published on ``_platform/health`` and scraped on ``/metrics``."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Counters"]

LATENCY_SAMPLES = 20_000


@dataclass
class Counters:
    """Counts of messages, rejections, commands and handler failures; ingest latency samples."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    clock_skew_clamped: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    dispatch_dropped: int = 0
    handler_errors: int = 0
    batches: int = 0
    commands_sent: int = 0
    commands_timed_out: int = 0
    errors_throttled: int = 0  # error answers a flooding device did not get (anfang.error_throttle)
    inbox_peak: int = 0  # the most messages that ever waited for ingest at once
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))

    def latency_percentiles(self) -> dict[str, float | None]:
        """p50/p99 of device report timestamp -> committed, over the last 20,000 reports with ``ts``."""
        if not self.latencies_ms:
            return {"ingest_latency_ms_p50": None, "ingest_latency_ms_p99": None}
        ordered = sorted(self.latencies_ms)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {"ingest_latency_ms_p50": pick(0.50), "ingest_latency_ms_p99": pick(0.99)}

    def as_json(self) -> dict[str, Any]:
        """The counters as the health document's fields."""
        return {
            **self.latency_percentiles(),
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "clock_skew_clamped": self.clock_skew_clamped,
            "rejected": sum(self.rejected.values()),
            "rejected_by_code": {str(k): v for k, v in self.rejected.items()},
            "dispatch_dropped": self.dispatch_dropped,
            "handler_errors": self.handler_errors,
            "batches": self.batches,
            "commands_sent": self.commands_sent,
            "commands_timed_out": self.commands_timed_out,
            "errors_throttled": self.errors_throttled,
            "inbox_peak": self.inbox_peak,
        }
