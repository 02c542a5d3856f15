"""Momentary desired fields: when each twin's next one expires, and the loop that expires them on time.

:class:`ExpiryClock` keeps a heap of (when, device id); the platform tells it about every committed
document (:meth:`ExpiryClock.watch`) and hands it the function that expires a device's due fields under
the platform's write lock. At start it reads the twins stored with momentary fields, so those set before
a restart still expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Awaitable, Callable, Iterable

from twins.document import TwinDocument

__all__ = ["ExpiryClock"]


class ExpiryClock:
    """When each twin's next momentary desired field expires."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()

    def watch(self, docs: Iterable[TwinDocument]) -> None:
        """Note the next expiry of each document that has one."""
        for doc in docs:
            at = doc.next_expiry
            if at is not None:
                heapq.heappush(self._heap, (at, doc.device_id))
                self._changed.set()

    async def run(
        self, stored: Callable[[], Awaitable[list[TwinDocument]]], expire: Callable[[str], Awaitable[None]]
    ) -> None:
        """Until cancelled: call ``expire(device_id)`` when a device's next expiry is due."""
        self.watch(await stored())
        while True:
            self._changed.clear()
            if not self._heap:
                await self._changed.wait()
                continue
            wait = self._heap[0][0] - time.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                continue
            _, device_id = heapq.heappop(self._heap)
            await expire(device_id)
