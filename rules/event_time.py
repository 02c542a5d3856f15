"""Event time: the time rule conditions judge an input by (pure).

Time conditions (``time.night``, ``in_window``, ``in_pickup_window``, schedules' ``if``) and ``count``
windows use the event's own time — the report's ``ts`` — so a day replayed or simulated at 60x gives
the verdicts it gives in real time. A device clock cannot be trusted without bound: an event stamped
more than ``max_skew`` seconds away from the platform clock is judged at the platform's time instead,
and counted (``rule_event_time_rejected`` on ``/metrics``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Default bound on |event ts - platform clock| (seconds), setting ``rules_event_skew_s``.
DEFAULT_MAX_SKEW_S = 300.0


@dataclass
class EventClock:
    """Validates event times against the platform clock."""

    max_skew: float = DEFAULT_MAX_SKEW_S
    rejected: int = 0  # events whose ts was beyond the bound (judged at the platform's time)

    def time_of(self, ts: float | None, now: float) -> float:
        """The time to judge an input stamped ``ts`` by, received at platform time ``now``."""
        if ts is None or ts != ts:  # absent or NaN
            return now
        if abs(ts - now) <= self.max_skew:
            return float(ts)
        self.rejected += 1
        return now


def elapsed_event_time(at: float, armed: float, now: float) -> float:
    """The event time a pending timer is judged at: its input's time plus the platform time since."""
    return at + max(0.0, now - armed)
