"""When each device was last heard from: noted in memory on every message, written in batches.

A message costs one dict assignment; every ``interval`` seconds the times noted since the last write
go to the registry in one statement (``devices.last_seen``). The stored time is therefore at most
``interval`` behind (a stop or crash loses at most that much). The map holds
registered devices only (the caller checks), so it is bounded by the registry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping

from anfang.ingest import Inbound
from registry.sql import DB_ERRORS
from twins.topics import Channel

__all__ = ["FLUSH_INTERVAL_S", "LastSeen", "heard_from"]

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 10.0
_FROM_DEVICES = frozenset({Channel.REPORTED, Channel.EVENT, Channel.TELEMETRY, Channel.STATUS, Channel.CMD_RESULT})


def heard_from(batch: Iterable[Inbound]) -> Iterator[str]:
    """The devices that sent the messages of ``batch`` (a will's ``offline`` is the broker speaking,
    and service requests name a device without coming from it). Pure."""
    for msg in batch:
        topic = msg.topic
        if topic is None or topic.channel not in _FROM_DEVICES:
            continue
        if topic.channel is Channel.STATUS and msg.payload.strip() == b"offline":
            continue
        yield topic.device_id


class LastSeen:
    """Per-device last-seen times of one worker."""

    def __init__(
        self, write: Callable[[Mapping[str, float]], Awaitable[None]], interval: float = FLUSH_INTERVAL_S
    ) -> None:
        self._write, self._interval = write, interval
        self._pending: dict[str, float] = {}

    def saw(self, device_id: str, now: float) -> None:
        self._pending[device_id] = now

    async def flush(self) -> None:
        """Write what was noted since the last write (kept for the next one if the write fails)."""
        if not self._pending:
            return
        times, self._pending = self._pending, {}
        try:
            await self._write(times)
        except BaseException:
            for device_id, when in times.items():
                self._pending.setdefault(device_id, when)
            raise

    async def run(self) -> None:
        """Write every ``interval`` until cancelled. Nothing is written at stop: the worker's other tasks
        are being cancelled then, mid-transaction perhaps, and a last write waited on them for ever."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except DB_ERRORS as exc:
                log.warning("last-seen times not written (kept for the next try): %s", exc)
