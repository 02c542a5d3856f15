"""Pending duration timers (``for:``, silence, schedules) and where they survive restarts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class Timer:
    """A pending timer. ``key`` is unique; ``rule_hash`` ties it to one version of its rule."""

    key: str
    rule_id: str
    rule_hash: str
    kind: str  # "for" | "silence" | "schedule"
    due: float
    subject: str = ""
    state: str = "armed"  # "armed" | "fired" (silence that already alarmed)
    context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Timer:
        """Inverse of :meth:`to_json`."""
        return cls(**doc)


class TimerStore(Protocol):
    """Where pending timers are kept across restarts.

    ``load``, ``save`` and ``delete`` are synchronous and only touch what the store holds in memory
    (a store that needs IO to load reads it before the engine starts); ``flush`` makes the writes
    since the last flush durable. The engine flushes once per tick.
    """

    def load(self) -> list[Timer]: ...

    def save(self, timer: Timer) -> None: ...

    def delete(self, key: str) -> None: ...

    async def flush(self) -> None: ...


class InMemoryTimerStore:
    """Timers in a dict; survives an engine restart within one process (tests)."""

    def __init__(self) -> None:
        self.timers: dict[str, Timer] = {}

    def load(self) -> list[Timer]:
        return [Timer.from_json(t.to_json()) for t in self.timers.values()]

    def save(self, timer: Timer) -> None:
        self.timers[timer.key] = Timer.from_json(timer.to_json())

    def delete(self, key: str) -> None:
        self.timers.pop(key, None)

    async def flush(self) -> None:
        return None


class TimerStoreError(Exception):
    """The timers could not be read or written; ``path`` names the file or the table."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
