"""Handing committed events and twin changes to the platform's handlers: one bounded queue and one task each.

A full queue slows intake (back-pressure to the broker) rather than dropping; only changes made outside a
batch (a handler's ``report_virtual``) are put without waiting, and counted and logged when dropped. A
handler that raises is logged and counted; the others and the platform keep going.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from anfang.counters import Counters
from twins.hooks import DeviceEvent, PlatformActions, PlatformHandler, TwinChange

__all__ = ["DISPATCH_QUEUE", "Dispatcher"]

log = logging.getLogger(__name__)

DISPATCH_QUEUE = 10_000
Item = DeviceEvent | TwinChange


class Dispatcher:
    """One bounded queue per handler and the loop that drains it (run by the platform's task group)."""

    def __init__(self, handlers: Sequence[PlatformHandler], counters: Counters, size: int = DISPATCH_QUEUE) -> None:
        self.handlers = list(handlers)
        self.counters = counters
        self.queues: list[asyncio.Queue[Item]] = [asyncio.Queue(size) for _ in self.handlers]

    async def put(self, items: Sequence[Item]) -> None:
        """Queue ``items`` for every handler, waiting while a queue is full."""
        for item in items:
            for queue in self.queues:
                await queue.put(item)  # back-pressure: a slow handler slows intake, never loses an event

    def put_nowait(self, item: Item) -> None:
        """Queue ``item`` without waiting; a full queue drops it (counted, logged)."""
        for queue in self.queues:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.counters.dispatch_dropped += 1
                log.error(
                    "dispatch queue full: dropped %s for %s",
                    type(item).__name__,
                    item.device_id,
                    extra={"device": item.device_id},
                )

    def depth(self) -> int:
        """The longest queue."""
        return max((q.qsize() for q in self.queues), default=0)

    async def run(self, handler: PlatformHandler, queue: asyncio.Queue[Item], actions: PlatformActions) -> None:
        """Feed one handler until cancelled."""
        while True:
            item = await queue.get()
            try:
                if isinstance(item, DeviceEvent):
                    await handler.on_event(item, actions)
                else:
                    await handler.on_twin_change(item, actions)
            except Exception:
                self.counters.handler_errors += 1
                log.exception(
                    "handler %s failed on %s from %s",
                    type(handler).__name__,
                    type(item).__name__,
                    item.device_id,
                    extra={"device": item.device_id},
                )
