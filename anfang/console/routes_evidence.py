"""An alarm's evidence, opened on demand from the desk: the capture behind it (image decrypted for that view
only) and, for a worn tag's alarm, the tag's track (the readers that saw it around the alarm, on the plan).

Both are htmx fragments; each opening is audited, as every read of personal data is.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from anfang.console.captures import image_data_uri
from anfang.console.routes_alarms import audiences
from anfang.console.sitemap import render_svg
from anfang.console.store import Session
from anfang.console.web import PREFIX, Console, ConsoleServices, SignedIn, page
from community.models import CaptureRow
from registry.alarms import Alarm

router = APIRouter(prefix=PREFIX, include_in_schema=False)

TRACK_BEFORE_S = 1800.0  # how far before the alarm the track starts
TRACK_MAX_POINTS = 200


async def _visible(console: ConsoleServices, session: Session, alarm_id: str) -> Alarm | None:
    allowed = audiences(session)
    alarm = await console.desk.get(alarm_id) if console.desk is not None else None
    return alarm if alarm is not None and alarm.audience in allowed else None


@router.get("/alarms/{alarm_id}/capture")
async def alarm_capture(request: Request, alarm_id: str, session: SignedIn, console: Console) -> Response:
    """The capture an alarm refers to (``snapshot_ref`` in its evidence), with its image."""
    alarm = await _visible(console, session, alarm_id)
    ref = str(alarm.evidence.get("snapshot_ref") or "") if alarm is not None else ""
    capture = await CaptureRow.get_or_none(site=console.community.store.site, snapshot_ref=ref) if ref else None
    image = await image_data_uri(console, ref) if ref else None
    await console.audit(
        session, "view_capture", capture.id if capture else None, alarm=alarm_id, image=image is not None
    )
    return page(request, "_capture.html", capture=capture, alarm=alarm, image=image)


def tag_of(alarm: Alarm) -> str | None:
    """The worn tag an alarm is about, if any (a rule's ``data.tag`` or the evidence's ``tag``)."""
    tag = alarm.data.get("tag") or alarm.evidence.get("tag")
    return str(tag) if tag else None


@router.get("/alarms/{alarm_id}/track")
async def alarm_track(request: Request, alarm_id: str, session: SignedIn, console: Console) -> Response:
    """Where the alarm's tag was seen from half an hour before the alarm until now: reader by reader."""
    alarm = await _visible(console, session, alarm_id)
    tag = tag_of(alarm) if alarm is not None else None
    points: list[dict[str, Any]] = []
    if alarm is not None and tag is not None:
        readers = {
            r["id"]: (float(r["x"]), float(r["y"]))
            for r in await console.store.sql.rows(
                "SELECT id, x, y FROM devices WHERE site_id = ? AND x IS NOT NULL AND y IS NOT NULL",
                [console.store.site],
            )
        }
        rows = await console.store.sql.rows(
            "SELECT device_id, ts, received_at, data FROM device_events WHERE type = ? AND received_at >= ? "
            "ORDER BY received_at LIMIT 20000",
            ["tag_seen", alarm.raised_at - TRACK_BEFORE_S],
        )
        for r in rows:
            try:
                seen_tag = json.loads(r["data"]).get("tag")
            except (ValueError, AttributeError):
                continue
            if seen_tag == tag and r["device_id"] in readers:
                points.append({"received": r["received_at"], "reader": r["device_id"]})
        points = points[-TRACK_MAX_POINTS:]
        track = [readers[p["reader"]] for p in points]
        svg = render_svg(console.plan, [], device_href=f"{PREFIX}/devices/", counts={}, track=track)
    else:
        svg = ""
    await console.audit(session, "view_tag_track", tag, alarm=alarm_id, points=len(points))
    return page(request, "_track.html", tag=tag, points=points, svg=svg)
