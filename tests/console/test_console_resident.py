"""The residents' phone page: their household's entries, their ways in, and withdrawing face consent."""

from __future__ import annotations

import contextlib
import re

import httpx
from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)

from community.models import AccessDecisionRow, AuditRow, CredentialRow, PersonRow


async def _signed_in_resident(console: Console, person: str) -> tuple[httpx.AsyncClient, str]:
    token = await console.services.store.issue_link(person, created_by="p-staff", now=NOW)
    client = console.client()
    await client.get(f"/console/r/{token}")
    page = await client.get("/console/me")
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert found
    return client, found.group(1)


async def test_a_resident_withdraws_face_consent_and_gets_a_pin_shown_once(console: Console) -> None:
    client, csrf = await _signed_in_resident(console, "p-b2")  # face only: no card, no PIN
    async with contextlib.aclosing(client):
        before = await client.get("/console/me")
        assert 'id="withdraw-consent"' in before.text and "<strong>on</strong>" in before.text
        done = await client.post("/console/me/face-consent/withdraw", data={"csrf": csrf})
        assert done.status_code == 200 and 'id="consent-notice"' in done.text
        pin = re.search(r'id="new-pin">Your new door PIN: <strong>(\d+)</strong>', done.text)
        assert pin, done.text
        after = await client.get("/console/me")
        assert "<strong>off</strong>" in after.text and 'id="withdraw-consent"' not in after.text
        assert pin.group(1) not in after.text and 'id="new-pin"' not in after.text  # shown once
        assert '<span class="chip">pin</span>' in after.text and '<span class="chip">face</span>' not in after.text
    person = await PersonRow.get(id="p-b2")
    assert person.face_consent is False
    assert not await CredentialRow.filter(person_id="p-b2", kind="face", revoked=False).exists()
    assert await AuditRow.filter(actor="p-b2", action="console_withdraw_face_consent").exists()


async def test_a_resident_sees_their_households_entries_and_no_one_elses(console: Console) -> None:
    for n, (who, door) in enumerate((("p-noface", "door-b1-u1"), ("p-b2", "door-b2-u1"), ("p-owner", "door-b1-u1"))):
        await AccessDecisionRow.create(
            id=f"d{n}", site=SITE, ts=NOW - 60 * n, device_id=door, mode="central", allowed=True, reason="ok",
            subject_id=who, credential_kind="card",
        )  # fmt: skip
    client, _ = await _signed_in_resident(console, "p-owner")
    async with contextlib.aclosing(client):
        page = await client.get("/console/me")
    entries = page.text.split('id="entries"')[1]
    assert "p-noface" in entries and "p-owner" in entries and "p-b2" not in entries
    assert "<strong>on</strong>" in page.text and '<span class="chip">card</span>' in page.text
