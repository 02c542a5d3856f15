"""When each subject of a ``silence`` trigger was last heard, oldest first: one entry per subject.

A silence trigger watches every registered device (or every person of its groups). Keeping a timer
per subject and rule (a :class:`~rules.timers.Timer`, its stored copy and a row in ``rule_timers``)
made the idle cost of a registered device about 3 KB and start-up with 100,000 devices take close to
a minute. All subjects of one trigger share one duration, so the order in which they come due is the
order in which they were last heard: a dict kept in that order (a subject heard again moves to the
end) gives the next due subject at its front, in O(1) per activity and with no heap of stale entries.

Times only go forward here: a time older than the newest one recorded is taken as the newest (inputs
fed late by the catch-up, a clock stepped back). Silence counts from the engine's start anyway
(:meth:`rules.engine.RulesEngine.start`), so this never makes a subject silent earlier than it was.
Pure: no clock, no IO.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class SilenceClock:
    """The subjects one silence trigger (``rule_id``, ``idx``) waits on, by the time last heard."""

    rule_id: str
    rule_hash: str
    idx: int
    for_: float
    _heard: dict[str, float] = field(default_factory=dict, repr=False)
    _newest: float = -math.inf

    def __contains__(self, subject: object) -> bool:
        return subject in self._heard

    def __len__(self) -> int:
        return len(self._heard)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._heard))

    def _clamp(self, at: float) -> float:
        if at >= self._newest:
            self._newest = at
            return at
        return self._newest

    def heard(self, subject: str, at: float) -> None:
        """The subject was heard at ``at``: its silence starts again (it moves to the end)."""
        self._heard.pop(subject, None)
        self._heard[subject] = self._clamp(at)

    def watch(self, subject: str, at: float) -> None:
        """Wait on a subject not waited on yet, counting from ``at``; one already watched keeps its time."""
        if subject not in self._heard:
            self._heard[subject] = self._clamp(at)

    def forget(self, subject: str) -> None:
        """Stop waiting on a subject."""
        self._heard.pop(subject, None)

    def since(self, subject: str) -> float | None:
        """When the subject was last heard (or watched from)."""
        return self._heard.get(subject)

    def next_due(self) -> float | None:
        """When the longest-silent subject comes due."""
        for at in self._heard.values():
            return at + self.for_
        return None

    def pop_due(self, now: float) -> tuple[str, float] | None:
        """The longest-silent subject and when it was last heard, if it is due at ``now``; it is no
        longer waited on (until :meth:`heard` or :meth:`watch` again)."""
        for subject, at in self._heard.items():
            if at + self.for_ > now:
                return None
            del self._heard[subject]
            return subject, at
        return None
