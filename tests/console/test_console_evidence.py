"""An alarm's evidence opened from the desk: its capture with the image, a worn tag's track on the plan."""

from __future__ import annotations

import contextlib
import json

from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)

from community.models import AuditRow, CaptureRow
from privacy.captures import IMAGE_CONTEXT

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"
REF = f"{SITE}/cam-park/ev-9"


async def _readers_and_sightings(console: Console, tag: str) -> None:
    sql = console.services.store.sql
    await sql.execute("INSERT INTO sites (id, name, created_at) VALUES (?, ?, ?)", [SITE, SITE, NOW])
    for reader, xy in (("rfid-gate", (50.0, 78.0)), ("rfid-road", (50.0, 95.0))):
        await sql.execute(
            "INSERT INTO devices (id, site_id, kind, name, x, y, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [reader, SITE, "rfid_reader", reader, xy[0], xy[1], NOW, NOW],
        )
    for n, (reader, seen) in enumerate((("rfid-gate", "tag-e7"), ("rfid-gate", "tag-other"), ("rfid-road", "tag-e7"))):
        await sql.execute(
            "INSERT INTO device_events (device_id, event_id, type, ts, received_at, data) VALUES (?, ?, ?, ?, ?, ?)",
            [reader, f"e{n}", "tag_seen", NOW - 120 + n, NOW - 120 + n, json.dumps({"tag": seen, "rssi": -60})],
        )


async def test_an_elderly_alarm_shows_the_tags_track_and_the_view_is_audited(console: Console) -> None:
    await _readers_and_sightings(console, "tag-e7")
    alarm, _ = await console.community.alarms.raise_alarm(
        None, rule_id="elderly-left-fence", subject="p-e7", kind="elderly_left_fence", severity="high",
        message="left the community", now=NOW, data={"tag": "tag-e7"},
    )  # fmt: skip
    client, _ = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        desk = await client.get("/console/alarms")
        assert f'hx-get="/console/alarms/{alarm.id}/track"' in desk.text
        track = await client.get(f"/console/alarms/{alarm.id}/track", headers={"HX-Request": "true"})
    assert track.status_code == 200 and 'id="track"' in track.text
    points = track.text.split('id="track" points="')[1].split('"')[0].split()
    assert len(points) == 2  # the gate's reader, then the road's: the other tag's sighting is not in it
    assert "rfid-road" in track.text.split("<ol")[1]
    assert await AuditRow.filter(actor="p-staff", action="console_view_tag_track", target="tag-e7").exists()


async def test_an_alarms_capture_opens_with_its_image_and_police_alarms_stay_with_police(console: Console) -> None:
    await CaptureRow.create(
        id="c9", site=SITE, ts=NOW, device_id="cam-park", credential_kind="face", subject_id=None,
        snapshot_ref=REF,
    )  # fmt: skip
    enc = console.community.cipher.encrypt_bytes(JPEG, IMAGE_CONTEXT + REF)
    await console.services.store.sql.execute(
        "INSERT INTO capture_images(ref, site, device_id, event_type, ts, image_enc) VALUES (?, ?, ?, ?, ?, ?)",
        [REF, SITE, "cam-park", "face_captured", NOW, enc],
    )
    seen, _ = await console.community.alarms.raise_alarm(
        None, rule_id="stranger", subject="cam-park", kind="stranger_loitering", severity="medium",
        message="stranger", now=NOW, evidence={"device": "cam-park", "snapshot_ref": REF},
    )  # fmt: skip
    hit, _ = await console.community.alarms.raise_alarm(
        None, rule_id="access", subject="京A99999", kind="watchlist_match", severity="critical", message="hit",
        now=NOW, audience="police", evidence={"device": "cam-park", "snapshot_ref": REF},
    )  # fmt: skip
    staff, _ = await console.signed_in("staff")
    async with contextlib.aclosing(staff):
        capture = await staff.get(f"/console/alarms/{seen.id}/capture")
        assert 'id="capture-image"' in capture.text and "data:image/jpeg" in capture.text
        hidden = await staff.get(f"/console/alarms/{hit.id}/capture")
        assert 'id="capture-image"' not in hidden.text and "no capture kept" in hidden.text
    assert await AuditRow.filter(actor="p-staff", action="console_view_capture", target="c9").exists()
