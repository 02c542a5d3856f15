"""The console's access log: filters, CSV export written to the audit log, staff and police only."""

from __future__ import annotations

import contextlib
import csv
import io

from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)

from community.models import AccessDecisionRow, AuditRow


async def _decisions() -> None:
    for i, (device, allowed, subject) in enumerate(
        [("door-b1-u1", True, "p-owner"), ("door-b1-u1", False, None), ("gate-north", True, "p-b2")]
    ):
        await AccessDecisionRow.create(
            id=f"d{i}",
            site=SITE,
            ts=NOW - 60 * i,
            device_id=device,
            mode="central",
            allowed=allowed,
            reason="granted" if allowed else "unknown_card",
            subject_id=subject,
            credential_kind="card",
        )


async def test_the_access_log_filters_and_exports_csv_and_every_export_is_audited(console: Console) -> None:
    await _decisions()
    client, _ = await console.signed_in("police")
    async with contextlib.aclosing(client):
        page = await client.get("/console/access", params={"device": "door-b1-u1"})
        assert page.status_code == 200 and page.text.count("<tr class=") == 2 and "gate-north</td>" not in page.text
        refused = await client.get("/console/access", params={"outcome": "refused"})
        assert refused.text.count("<tr class=") == 1 and "unknown_card" in refused.text
        export = await client.get("/console/access.csv", params={"device": "door-b1-u1", "outcome": "opened"})
        assert export.status_code == 200 and export.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert [(r["device"], r["outcome"], r["person"]) for r in rows] == [("door-b1-u1", "opened", "p-owner")]
    audit = await AuditRow.filter(actor="p-police", action="console_export_decisions").all()
    assert len(audit) == 1


async def test_residents_do_not_see_the_access_log(console: Console) -> None:
    token = await console.services.store.issue_link("p-owner", created_by="p-staff", now=NOW)
    async with console.client() as resident:
        await resident.get(f"/console/r/{token}")
        assert (await resident.get("/console/access")).status_code == 403
        assert (await resident.get("/console/access.csv")).status_code == 403
