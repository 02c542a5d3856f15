"""Police: a watchlist hit's capture with its image, decrypted on demand and audited; staff are refused."""

from __future__ import annotations

import contextlib

from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)

from community.models import AccessDecisionRow, AuditRow, CaptureRow
from privacy.captures import IMAGE_CONTEXT

JPEG = b"\xff\xd8\xff\xe0 not really a jpeg \xff\xd9"
REF = f"{SITE}/cam-north-1/ev-1"


async def test_police_open_a_hits_capture_image_on_demand_and_staff_cannot(console: Console) -> None:
    await _capture_with_image(console)
    alarm, _ = await console.community.alarms.raise_alarm(
        None,
        rule_id="access",
        subject="京A99999",
        kind="watchlist_match",
        severity="critical",
        message="watchlist match",
        now=NOW,
        audience="police",
        evidence={"device": "gate-north", "snapshot_ref": REF, "list_reason": "stolen vehicle"},
    )
    police, _ = await console.signed_in("police")
    async with contextlib.aclosing(police):
        hits = await police.get("/console/watchlist")
        assert hits.status_code == 200 and f'id="hit-{alarm.id}"' in hits.text and "stolen vehicle" in hits.text
        assert "data:image/jpeg" not in hits.text  # not decrypted until asked for
        capture = await police.get(f"/console/watchlist/hits/{alarm.id}/capture", headers={"HX-Request": "true"})
        assert capture.status_code == 200 and 'id="capture-image"' in capture.text and "京A99999" in capture.text
    assert await AuditRow.filter(actor="p-police", action="console_view_capture", target="c1").exists()
    staff, _ = await console.signed_in("staff")
    async with contextlib.aclosing(staff):
        assert (await staff.get("/console/watchlist")).status_code == 403
        assert (await staff.get(f"/console/watchlist/hits/{alarm.id}/capture")).status_code == 403
        assert f"alarm-{alarm.id}" not in (await staff.get("/console/alarms")).text


async def _capture_with_image(console: Console) -> None:
    await CaptureRow.create(
        id="c1",
        site=SITE,
        ts=NOW,
        device_id="gate-north",
        camera="cam-north-1",
        credential_kind="plate",
        plate="京A99999",
        snapshot_ref=REF,
    )
    enc = console.community.cipher.encrypt_bytes(JPEG, IMAGE_CONTEXT + REF)
    await console.services.store.sql.execute(
        "INSERT INTO capture_images(ref, site, device_id, event_type, ts, image_enc) VALUES (?, ?, ?, ?, ?, ?)",
        [REF, SITE, "cam-north-1", "plate_captured", NOW, enc],
    )


async def test_police_close_a_hits_case_with_their_finding(console: Console) -> None:
    alarm, _ = await console.community.alarms.raise_alarm(
        None,
        rule_id="access",
        subject="京A99999",
        kind="watchlist_match",
        severity="critical",
        message="watchlist match",
        now=NOW,
        audience="police",
        evidence={"device": "gate-north", "list_reason": "stolen vehicle"},
    )
    staff, csrf = await console.signed_in("staff")
    async with contextlib.aclosing(staff):
        r = await staff.post(f"/console/watchlist/hits/{alarm.id}/close", data={"note": "x", "csrf": csrf})
        assert r.status_code == 403
    police, csrf = await console.signed_in("police")
    async with contextlib.aclosing(police):
        assert f'id="close-{alarm.id}"' in (await police.get("/console/watchlist")).text
        r = await police.post(
            f"/console/watchlist/hits/{alarm.id}/close", data={"note": "owner recovered the car", "csrf": csrf}
        )
        assert r.status_code == 303
        page = await police.get("/console/watchlist")
        assert f'id="close-{alarm.id}"' not in page.text and "closed by p-police" in page.text
    closed = await console.services.desk.get(alarm.id)  # type: ignore[union-attr]
    assert closed is not None and closed.state == "cleared" and closed.clear_reason == "owner recovered the car"
    assert await AuditRow.filter(actor="p-police", action="console_close_case", target=alarm.id).exists()


async def test_the_access_log_opens_a_decisions_capture_on_demand_audited(console: Console) -> None:
    await _capture_with_image(console)
    await AccessDecisionRow.create(
        id="d1", site=SITE, ts=NOW, device_id="gate-north", mode="central", allowed=False, reason="unknown_plate",
        credential_kind="plate", capture_id="c1",
    )  # fmt: skip
    staff, _ = await console.signed_in("staff")
    async with contextlib.aclosing(staff):
        log = await staff.get("/console/access")
        assert 'hx-get="/console/access/d1/capture"' in log.text and "data:image/jpeg" not in log.text
        capture = await staff.get("/console/access/d1/capture", headers={"HX-Request": "true"})
        assert capture.status_code == 200 and 'id="capture-image"' in capture.text and "京A99999" in capture.text
        missing = await staff.get("/console/access/nope/capture")
        assert missing.status_code == 200 and "no capture kept" in missing.text
    assert await AuditRow.filter(actor="p-staff", action="console_view_capture", target="c1").exists()
