"""The stored device events the rules engine has not fully processed yet (:mod:`rules.catch_up`).

``device_events`` has no serial number on PostgreSQL (it is partitioned by day of ``received_at``),
so the order is ``received_at`` — one value per ingest batch, batches stored and dispatched in
order — then, within a batch, the event's own time and its id. ``received_at`` is indexed on both
databases and bounds the partitions PostgreSQL reads.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient

from registry.sql import Sql
from rules.catch_up import InputMark
from twins.hooks import DeviceEvent

log = logging.getLogger(__name__)

#: The furthest back a catch-up reaches (a mark this old means the engine's state was not written for an
#: hour, e.g. a database outage while the platform ran on): older events are not replayed.
MAX_BEHIND_S = 3600.0

_AFTER = (
    "SELECT e.device_id, d.kind, e.event_id, e.type, e.ts, e.received_at, e.data "
    "FROM device_events e JOIN devices d ON d.id = e.device_id "
    "WHERE d.site_id = ? AND e.received_at >= ? AND e.received_at <= ? "
    "ORDER BY e.received_at, COALESCE(e.ts, e.received_at), e.device_id, e.event_id"
)


async def events_after(conn: BaseDBAsyncClient, site: str, mark: InputMark, until: float) -> list[DeviceEvent]:
    """The site's events stored after ``mark`` and at or before ``until``, in the order they were
    dispatched; none without a mark (a site whose engine never wrote one starts from now)."""
    if mark.at is None:
        return []
    since = mark.at
    if since < until - MAX_BEHIND_S:
        log.warning("rules: input mark %.0f s behind; catching up on the last %.0f s only", until - since, MAX_BEHIND_S)
        since = until - MAX_BEHIND_S
    rows = await Sql(conn).rows(_AFTER, [site, since, until])
    out: list[DeviceEvent] = []
    for r in rows:
        received = float(r["received_at"])
        if mark.covers(received, str(r["device_id"]), str(r["event_id"])):
            continue
        ts = float(r["ts"]) if r["ts"] is not None else received
        data = json_object(r["data"])
        out.append(
            DeviceEvent(
                site, str(r["device_id"]), str(r["kind"]), str(r["type"]), str(r["event_id"]), ts, data, received
            )
        )
    return out


def json_object(text: Any) -> dict[str, Any]:
    """A stored JSON column as a mapping (``{}`` when it is not one)."""
    try:
        doc = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}
