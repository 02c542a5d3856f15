"""The twin-change feed from a site's partition owners to its leader, through the database.

An owner writes the twin changes of a batch in the batch's own transaction (:class:`FeedWriter`),
so a change is in the feed exactly when it is committed — a crash cannot separate the two. The
leader reads each partition's feed in sequence order (:class:`FeedReader`), hands the changes to
its handlers (rules, access control, telemetry) and stores how far it got. After a leader crash the
new leader resumes from the stored position, so a handler may see a few changes again, never miss one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict

from registry.records import FeedRow
from registry.store import TwinStore
from twins import jsoncodec
from twins.hooks import DeviceEvent, TwinChange

log = logging.getLogger(__name__)

Item = DeviceEvent | TwinChange


def encode(item: Item) -> str:
    body = {"change" if isinstance(item, TwinChange) else "event": asdict(item)}
    return jsoncodec.dumps(body)


def decode(body: str) -> Item:
    doc = jsoncodec.loads(body)
    if "change" in doc:
        return TwinChange(**doc["change"])
    return DeviceEvent(**doc["event"])


class FeedWriter:
    """Numbers a partition's changes; the owner holds the partition's lease, so it is the only writer."""

    def __init__(self, site: str, part: int, head: int) -> None:
        self.site, self.part, self.head = site, part, head

    def rows(self, items: Sequence[Item]) -> list[FeedRow]:
        start = self.head
        self.head += len(items)
        return [(self.site, self.part, start + i + 1, encode(item)) for i, item in enumerate(items)]


class FeedReader:
    """The leader's side: polls the other partitions' feeds and dispatches what it finds, in order."""

    def __init__(
        self,
        store: TwinStore,
        site: str,
        parts: Sequence[int],
        dispatch: Callable[[list[Item]], Awaitable[None]],
        *,
        idle_poll: float = 0.05,
        page: int = 1000,
    ) -> None:
        self._store, self._site, self._parts = store, site, list(parts)
        self._dispatch, self._idle_poll, self._page = dispatch, idle_poll, page
        self.delivered = 0

    async def run(self) -> None:
        cursors = {p: await self._store.feed_cursor(self._site, p) for p in self._parts}
        log.info("reading the twin feed of partitions %s of site %s", self._parts, self._site)
        while True:
            full_page = False
            for part in self._parts:
                rows = await self._store.read_feed(self._site, part, cursors[part], self._page)
                if not rows:
                    continue
                await self._dispatch([decode(body) for _, body in rows])
                cursors[part] = rows[-1][0]
                await self._store.advance_feed(self._site, part, cursors[part])
                self.delivered += len(rows)
                full_page = full_page or len(rows) == self._page
            if not full_page:
                await asyncio.sleep(self._idle_poll)  # polling interval, not synchronisation: nothing to wait on
