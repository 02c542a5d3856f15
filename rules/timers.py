"""Pending duration timers (``for:``, silence, schedules) and where they survive restarts."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
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


class JsonFileTimerStore:
    """Timers in one JSON file, rewritten atomically (temp file + rename) on :meth:`flush`.

    Writes are batched: the engine flushes once per tick, not once per event. For one process (the
    ``anfang rules test`` tools, tests); the platform keeps its timers in the registry database.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._timers: dict[str, Timer] = {}
        self._dirty = False
        self._lock = asyncio.Lock()

    def load(self) -> list[Timer]:
        if not self.path.exists():
            self._timers = {}
            return []
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self._timers = {d["key"]: Timer.from_json(d) for d in doc.get("timers", [])}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TimerStoreError(str(self.path), f"cannot load timers: {exc}") from exc
        return list(self._timers.values())

    def save(self, timer: Timer) -> None:
        self._timers[timer.key] = Timer.from_json(timer.to_json())
        self._dirty = True

    def delete(self, key: str) -> None:
        if self._timers.pop(key, None) is not None:
            self._dirty = True

    async def flush(self) -> None:
        async with self._lock:  # one write at a time: an older snapshot must not replace a newer one
            if not self._dirty:
                return
            body = {"version": 1, "timers": [t.to_json() for t in self._timers.values()]}
            text = json.dumps(body, ensure_ascii=False, default=str)
            self._dirty = False
            try:
                await asyncio.to_thread(self._write, text)
            except OSError as exc:
                self._dirty = True
                raise TimerStoreError(str(self.path), f"cannot write timers: {exc}") from exc

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)
