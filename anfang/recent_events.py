"""Which device events a batch repeats: a bounded memory of recent event ids, then the store.

A device resends an event (QoS 1 redelivery, a reconnect) with the same ``id``; the ingest path counts
such a repeat as a duplicate instead of dispatching it twice. Recent ids are answered from memory, the
rest from the store's ``device_events`` table.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from anfang.ingest import Inbound
from registry.store import TwinStore
from twins import jsoncodec, topics

__all__ = ["RECENT_EVENTS", "RecentEvents", "peek_event_id"]

RECENT_EVENTS = 100_000


def peek_event_id(payload: bytes) -> str | None:
    """The event id, read before the full parse (which may still reject the event)."""
    try:
        data = jsoncodec.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


class RecentEvents:
    """The last ``size`` (device, event id) pairs committed by this worker, oldest forgotten first."""

    def __init__(self, store: TwinStore, size: int = RECENT_EVENTS) -> None:
        self.store, self.size = store, size
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def seen(self, batch: Sequence[Inbound]) -> set[tuple[str, str]]:
        """The (device, event id) pairs of ``batch`` that were committed before."""
        keys: list[tuple[str, str]] = []
        for msg in batch:
            if msg.topic is not None and msg.topic.channel is topics.Channel.EVENT:
                event_id = peek_event_id(msg.payload)
                if event_id is not None:
                    keys.append((msg.topic.device_id, event_id))
        seen = {k for k in keys if k in self._recent}
        seen |= await self.store.seen_events([k for k in keys if k not in seen])
        return seen

    def remember(self, keys: Iterable[tuple[str, str]]) -> None:
        """Note committed events."""
        for key in keys:
            self._recent[key] = None
        while len(self._recent) > self.size:
            self._recent.popitem(last=False)
