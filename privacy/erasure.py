"""A data subject's requests: withdraw face consent, deactivate (moved out), erase (PIPL art. 47).

Every function works on the shared database (raw SQL for SQLite and PostgreSQL where a change spans
tables of several packages) and goes through :class:`community.store.CommunityStore` for the registry,
so the change feed (``community_changes``, raised by triggers in the same transaction) makes the next
access decision and the edge doors' allow-lists see it at once.

* **Withdraw face consent**: the person's face templates, their 人证合一 enrolment checks and the face
  images of their captures are deleted at once (a watchlist case's evidence excepted); the person keeps
  card, PIN and visitor-pass access, and gets a PIN when they hold neither card nor PIN.
* **Deactivate** (moved out): no door opens for them any more, their API tokens are revoked and their
  console account and sessions end; the record stays (an owner may come back).
* **Erase**: everything above, then every personal field of the person is removed: name, phone, ID
  number, household, lease, credentials, vehicles (and their plates in device events and decisions),
  the visitor passes they issued (with their visitors' names and phones), their captures and images,
  console account, sign-in links and tokens; their access decisions stay as anonymised statistics
  (time, device, allowed, reason, credential kind, role) without person, credential or capture; open
  commands lose the subject; the location track of every tag the site model says they wear (its
  sightings in device events and the tag twin's version history) is deleted. On SQLite the deleted
  content is overwritten (``secure_delete``) and the WAL truncated, so nothing lingers in the file.
  What remains is the bare pseudonymous id with a role, which no longer links to anyone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from community.models import CredentialRow, PersonRow
from community.store import CommunityStore
from privacy.purge import LOCATION_EVENTS, evidence_refs, shrink_sqlite
from registry.sites import load_site_model
from registry.sql import with_placeholders

__all__ = ["RequestReport", "deactivate_person", "erase_person", "withdraw_face_consent"]


@dataclass
class RequestReport:
    """What serving one request changed, per kind (counts only: no personal value)."""

    person_id: str
    action: str
    removed: dict[str, int] = field(default_factory=dict)
    pin: str | None = None  # a PIN given because the person had no other credential (shown once)

    def count(self, name: str, n: int) -> None:
        if n:
            self.removed[name] = self.removed.get(name, 0) + int(n)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"person_id": self.person_id, "action": self.action, "removed": self.removed}
        if self.pin is not None:
            out["pin"] = self.pin
        return out


def _conn() -> BaseDBAsyncClient:
    """The connection the community models use (named after the dialect by the platform, "default" alone)."""
    conn: BaseDBAsyncClient = PersonRow._meta.db
    return conn


class _Sql:
    def __init__(self, tx: BaseDBAsyncClient) -> None:
        self.tx = tx
        self.postgres = tx.capabilities.dialect == "postgres"

    async def rows(self, sql: str, args: list[Any]) -> list[dict[str, Any]]:
        return list(await self.tx.execute_query_dict(with_placeholders(sql, self.postgres), args))

    async def run(self, sql: str, args: list[Any]) -> int:
        count, _ = await self.tx.execute_query(with_placeholders(sql, self.postgres), args)
        return int(count)


def _marks(values: list[Any]) -> str:
    return ", ".join("?" * len(values))


async def _evidence(sql: _Sql, site: str) -> list[str]:
    rows = await sql.rows(
        "SELECT doc FROM alarms WHERE site = ? AND kind = 'watchlist_match' AND state <> 'cleared'", [site]
    )
    return sorted(evidence_refs([str(r["doc"]) for r in rows]))


async def _drop_capture_images(sql: _Sql, site: str, person_id: str, *, faces_only: bool) -> tuple[int, int]:
    """Delete the images of the person's captures (not a watchlist case's evidence); returns (images, refs)."""
    keep = await _evidence(sql, site)
    kind = "AND credential_kind = 'face'" if faces_only else ""
    refs = [
        str(r["snapshot_ref"])
        for r in await sql.rows(
            f"SELECT snapshot_ref FROM community_captures WHERE site = ? AND subject_id = ? {kind} "
            "AND snapshot_ref IS NOT NULL",
            [site, person_id],
        )
        if str(r["snapshot_ref"]) not in keep
    ]
    images = 0
    for i in range(0, len(refs), 500):
        chunk = refs[i : i + 500]
        images += await sql.run(
            f"DELETE FROM capture_images WHERE site = ? AND ref IN ({_marks(chunk)})", [site, *chunk]
        )
        await sql.run(
            f"UPDATE community_captures SET snapshot_ref = NULL WHERE site = ? AND snapshot_ref IN ({_marks(chunk)})",
            [site, *chunk],
        )
    return images, len(refs)


async def withdraw_face_consent(store: CommunityStore, person_id: str, *, now: float) -> RequestReport:
    """Withdraw ``person_id``'s face consent (see the module docstring).

    Raises:
        community.errors.NotFound: no such person.
    """
    report = RequestReport(person_id, "withdraw_face_consent")
    await store.people.person(person_id)
    report.count("face_templates", await CredentialRow.filter(person_id=person_id, kind="face").count())
    async with in_transaction(_conn().connection_name) as tx:
        sql = _Sql(tx)
        report.count(
            "enrolment_checks", await sql.run("DELETE FROM community_enrolments WHERE person_id = ?", [person_id])
        )
        images, _ = await _drop_capture_images(sql, store.site, person_id, faces_only=True)
        report.count("face_images", images)
    await store.people.set_face_consent(person_id, False)  # deletes the templates; the change feed tells the doors
    report.pin = await store.credentials.ensure_alternative_credential(person_id, now=now)
    return report


async def deactivate_person(store: CommunityStore, person_id: str, *, now: float) -> RequestReport:
    """Mark ``person_id`` as moved out: no door opens, tokens revoked, console sign-in ends."""
    report = RequestReport(person_id, "deactivate_person")
    row = await store.people.person(person_id)
    async with in_transaction(_conn().connection_name) as tx:
        sql = _Sql(tx)
        await sql.run("UPDATE community_people SET active = ? WHERE id = ?", [False, row.id])
        report.count(
            "api_tokens",
            await sql.run(
                "UPDATE community_api_tokens SET revoked = ? WHERE person_id = ? AND revoked = ?",
                [True, person_id, False],
            ),
        )
        report.count(
            "console_sessions",
            await sql.run(
                "UPDATE console_sessions SET ended_at = ? WHERE person_id = ? AND ended_at IS NULL",
                [now, person_id],
            ),
        )
        report.count(
            "console_users",
            await sql.run(
                "UPDATE console_users SET disabled = ? WHERE person_id = ? AND disabled = ?", [True, person_id, False]
            ),
        )
    store.changed()
    return report


async def erase_person(store: CommunityStore, person_id: str, *, now: float) -> RequestReport:
    """Erase ``person_id``'s personal data (see the module docstring); access statistics stay anonymised.

    Raises:
        community.errors.NotFound: no such person.
    """
    report = RequestReport(person_id, "erase_person")
    await store.people.person(person_id)
    deactivated = await deactivate_person(store, person_id, now=now)
    for name, n in deactivated.removed.items():
        report.count(name, n)
    stored = await load_site_model(store.site)
    tags = sorted(t.id for t in stored.model.tags if t.person == person_id) if stored is not None else []
    conn = _conn()
    sqlite = conn.capabilities.dialect == "sqlite"
    if sqlite:
        await conn.execute_script("PRAGMA secure_delete = ON")  # deleted cells are zeroed, not left as slack
    try:
        async with in_transaction(_conn().connection_name) as tx:
            sql = _Sql(tx)
            await _erase_in(sql, store, person_id, report)
            if tags:
                await _drop_tag_tracks(sql, store.site, tags, report)
    finally:
        if sqlite:
            await conn.execute_script("PRAGMA secure_delete = OFF")
    store.changed()
    if sqlite:
        await shrink_sqlite(conn)
    return report


async def _erase_in(sql: _Sql, store: CommunityStore, pid: str, report: RequestReport) -> None:
    site = store.site
    cards = [
        str(r["value_hash"])
        for r in await sql.rows(
            "SELECT value_hash FROM community_credentials WHERE person_id = ? AND kind = 'card' "
            "AND value_hash IS NOT NULL",
            [pid],
        )
    ]
    plates = [str(r["plate"]) for r in await sql.rows("SELECT plate FROM community_vehicles WHERE owner_id = ?", [pid])]
    images, _ = await _drop_capture_images(sql, site, pid, faces_only=False)
    report.count("capture_images", images)
    keep = await _evidence(sql, site)
    not_evidence = f"AND (snapshot_ref IS NULL OR snapshot_ref NOT IN ({_marks(keep)}))" if keep else ""
    report.count(
        "captures",
        await sql.run(
            f"DELETE FROM community_captures WHERE site = ? AND subject_id = ? {not_evidence}", [site, pid, *keep]
        ),
    )
    report.count(
        "captures",
        await sql.run("UPDATE community_captures SET subject_id = NULL, plate = NULL WHERE subject_id = ?", [pid]),
    )
    report.count(
        "decisions_anonymised",
        await sql.run(
            "UPDATE access_decisions SET subject_id = NULL, credential_ref = NULL, capture_id = NULL, score = NULL "
            "WHERE site = ? AND subject_id = ?",
            [site, pid],
        ),
    )
    for table, where in (
        ("community_credentials", "person_id = ?"),
        ("community_enrolments", "person_id = ?"),
        ("community_vehicles", "owner_id = ?"),
        ("community_passes", "issued_by = ?"),
        ("community_api_tokens", "person_id = ?"),
        ("console_sessions", "person_id = ?"),
        ("console_links", "person_id = ?"),
        ("console_users", "person_id = ?"),
    ):
        # counted first: on SQLite a delete's row count includes the change feed's trigger rows
        found = await sql.rows(f"SELECT COUNT(*) AS n FROM {table} WHERE {where}", [pid])
        await sql.run(f"DELETE FROM {table} WHERE {where}", [pid])
        report.count(table.removeprefix("community_"), int(found[0]["n"]))
    if plates:
        report.count(
            "decisions_anonymised",
            await sql.run(
                f"UPDATE access_decisions SET credential_ref = NULL WHERE site = ? AND credential_kind = 'plate' "
                f"AND credential_ref IN ({_marks(plates)})",
                [site, *plates],
            ),
        )
        report.count(
            "captures",
            await sql.run(
                f"UPDATE community_captures SET plate = NULL WHERE site = ? AND plate IN ({_marks(plates)})",
                [site, *plates],
            ),
        )
    report.count("device_events", await _scrub_events(sql, site, set(plates), set(cards)))
    report.count("commands", await _scrub_commands(sql, site, pid))
    await sql.run(
        "UPDATE community_people SET name_enc = NULL, phone_enc = NULL, phone_hash = NULL, id_number_enc = NULL, "
        "id_number_hash = NULL, household_id = NULL, lease_start = NULL, lease_end = NULL, registered_by = NULL, "
        "face_consent = ?, active = ? WHERE id = ?",
        [False, False, pid],
    )


async def _scrub_events(sql: _Sql, site: str, plates: set[str], card_hashes: set[str]) -> int:
    """Remove the person's plates and card hashes from stored device events (the events stay)."""
    if not plates and not card_hashes:
        return 0
    rows = await sql.rows(
        "SELECT device_id, event_id, data FROM device_events WHERE type IN ('plate_captured', 'card_presented') "
        "AND device_id IN (SELECT id FROM devices WHERE site_id = ?)",
        [site],
    )
    changed = 0
    for r in rows:
        try:
            data = json.loads(str(r["data"]))
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        hit = False
        if data.get("plate") in plates:
            data["plate"], hit = None, True
        if data.get("card_hash") in card_hashes:
            data["card_hash"], hit = None, True
        if hit:
            changed += await sql.run(
                "UPDATE device_events SET data = ? WHERE device_id = ? AND event_id = ?",
                [json.dumps(data, separators=(",", ":")), r["device_id"], r["event_id"]],
            )
    return changed


async def _drop_tag_tracks(sql: _Sql, site: str, tags: list[str], report: RequestReport) -> None:
    """Where the person's tags were seen (sightings by readers and trackers) and their tag twins' history."""
    worn = set(tags)
    rows = await sql.rows(
        f"SELECT device_id, event_id, data FROM device_events WHERE type IN ({_marks(list(LOCATION_EVENTS))}) "
        "AND device_id IN (SELECT id FROM devices WHERE site_id = ?)",
        [*LOCATION_EVENTS, site],
    )
    for r in rows:
        try:
            data = json.loads(str(r["data"]))
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("tag") in worn:
            report.count(
                "location_events",
                await sql.run(
                    "DELETE FROM device_events WHERE device_id = ? AND event_id = ?", [r["device_id"], r["event_id"]]
                ),
            )
    report.count("twin_history", await sql.run(f"DELETE FROM twin_history WHERE device_id IN ({_marks(tags)})", tags))


async def _scrub_commands(sql: _Sql, site: str, pid: str) -> int:
    """``open`` commands name their subject: drop it (the command record stays)."""
    rows = await sql.rows(
        "SELECT id, args FROM commands WHERE args LIKE ? AND device_id IN (SELECT id FROM devices WHERE site_id = ?)",
        [f'%"{pid}"%', site],
    )
    changed = 0
    for r in rows:
        try:
            args = json.loads(str(r["args"]))
        except ValueError:
            continue
        if isinstance(args, dict) and args.get("subject") == pid:
            args["subject"] = None
            changed += await sql.run(
                "UPDATE commands SET args = ? WHERE id = ?", [json.dumps(args, separators=(",", ":")), r["id"]]
            )
    return changed


async def person_exists(person_id: str) -> bool:
    """Whether ``person_id`` is registered (erased people stay as a bare id)."""
    return await PersonRow.exists(id=person_id)
