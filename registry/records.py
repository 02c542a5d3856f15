"""The registry's records as plain data: devices, stored events, command records, feed rows.

No ORM and no IO here: the pure ingest path (:mod:`anfang.ingest`) and the partition logic use these
records, the database adapters (:mod:`registry.store`) make them. :class:`DeviceInfo` is the platform's
one device record, defined with the site model (:mod:`twins.site`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twins.site import DeviceInfo

__all__ = ["CommandRecord", "DeviceInfo", "FeedRow", "StoredEvent"]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    device_id: str
    event_id: str
    type: str
    ts: float | None
    received_at: float
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    status: str  # sent | ok | error | timeout
    result: dict[str, Any] | None
    created_at: float
    finished_at: float | None


FeedRow = tuple[str, int, int, int, str]  # site, writer stream, target partition, sequence number, encoded input
