"""The feed between a site's partition owners, through the database.

The owner of a device's partition runs the rules for the entities it owns (:mod:`rules.routing`). An
input of one of its devices that some rule keys on an entity another partition owns is *forwarded*:
:class:`FeedWriter` writes a row addressed to that partition in the batch's own transaction, so an
input is in the feed exactly when it is committed — a crash cannot separate the two. The platform's
own events (access decisions) are forwarded on a second stream of the partition (``-1 - part``),
written in order under a lock. Each owner reads the rows addressed to it (:class:`FeedReader`), stream
by stream in sequence order, hands them to its handlers and stores how far it got (a cursor per
writer and reader). After a takeover the new owner resumes from the stored cursor, so a handler may see
a few inputs again, never miss one.
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


#: Event data the rules never read and the feed must not carry in the clear (docs/privacy.md).
_LEFT_OUT = ("image_jpeg_b64",)


def encode(item: Item) -> str:
    doc = asdict(item)
    if isinstance(item, DeviceEvent) and any(k in item.data for k in _LEFT_OUT):
        doc["data"] = {k: v for k, v in item.data.items() if k not in _LEFT_OUT}
    body = {"change" if isinstance(item, TwinChange) else "event": doc}
    return jsoncodec.dumps(body)


def decode(body: str) -> Item:
    doc = jsoncodec.loads(body)
    if "change" in doc:
        return TwinChange(**doc["change"])
    return DeviceEvent(**doc["event"])


def platform_stream(part: int) -> int:
    """The writer stream of partition ``part``'s platform events (access decisions)."""
    return -1 - part


class FeedWriter:
    """Numbers a writer stream's rows per target; the owner holds the partition's lease, so it is the only
    writer. ``route(item)``: the partitions the item must reach (none: the usual case)."""

    def __init__(self, site: str, part: int, heads: dict[int, int], route: Callable[[Item], set[int]]) -> None:
        self.site, self.part, self.heads, self.route = site, part, heads, route
        self.forwarded = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, store: TwinStore, site: str, part: int, partitions: int, route: Callable[[Item], set[int]]
    ) -> FeedWriter:
        heads = {t: await store.feed_head(site, part, t) for t in range(partitions)}
        return cls(site, part, heads, route)

    def rows(self, items: Sequence[Item]) -> list[FeedRow]:
        out: list[FeedRow] = []
        for item in items:
            targets = self.route(item)
            if not targets:
                continue
            body = encode(item)
            for target in sorted(targets):
                self.heads[target] = seq = self.heads.get(target, 0) + 1
                out.append((self.site, self.part, target, seq, body))
        self.forwarded += len(out)
        return out

    async def write(self, store: TwinStore, items: Sequence[Item]) -> None:
        """Rows of their own (platform events): numbered and committed one call at a time, in order."""
        async with self._lock:
            rows = self.rows(items)
            if rows:
                await store.commit((), feed=rows)


class FeedReader:
    """A partition owner's side: polls the rows addressed to it by the other streams, dispatches them in order."""

    def __init__(
        self,
        store: TwinStore,
        site: str,
        streams: Sequence[int],
        target: int,
        dispatch: Callable[[list[Item]], Awaitable[None]],
        *,
        idle_poll: float = 0.05,
        page: int = 1000,
    ) -> None:
        self._store, self._site, self._streams, self._target = store, site, list(streams), target
        self._dispatch, self._idle_poll, self._page = dispatch, idle_poll, page
        self.delivered = 0

    async def run(self) -> None:
        site, target = self._site, self._target
        cursors = {p: await self._store.feed_cursor(site, p, target) for p in self._streams}
        log.info("partition %d of site %s reads the feed of streams %s", target, site, self._streams)
        while True:
            full_page = False
            for part in self._streams:
                rows = await self._store.read_feed(site, part, target, cursors[part], self._page)
                if not rows:
                    continue
                await self._dispatch([decode(body) for _, body in rows])
                cursors[part] = rows[-1][0]
                await self._store.advance_feed(site, part, target, cursors[part])
                self.delivered += len(rows)
                full_page = full_page or len(rows) == self._page
            if not full_page:
                await asyncio.sleep(self._idle_poll)  # polling interval, not synchronisation: nothing to wait on
