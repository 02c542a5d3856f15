"""Retention: delete what is kept too long, keep what a police case still needs, shrink the file.

One pass over the site's records (raw SQL for SQLite and PostgreSQL):

* captures (and their encrypted images) of strangers — a capture that matched nobody — after
  ``strangers_days``; of residents and visitors after ``captures_days``; a capture that is the
  evidence of a watchlist alarm the police have not cleared is kept whatever its age;
* raw location tracks (``tag_seen``, ``mac_seen``, ``target_tracked`` events) after ``location_days``,
  counted first into ``location_daily`` (sightings per device and day, no tag or MAC), kept longer;
* every other device event after ``events_days``: on PostgreSQL, where ``device_events`` is
  partitioned by day, the days wholly older than that are dropped as partitions (for every site of the
  database: sites sharing one should share ``events_days``), on SQLite the site's rows are deleted;
* access decisions, expired visitor passes, ended API tokens (expired or revoked; only their hashes
  were ever stored) and the audit log after their own periods;
* on SQLite, the freed pages are returned to the file system (incremental vacuum) and the WAL is
  truncated, so the database file shrinks and deleted rows do not linger in it.

``dry_run`` counts the same rows inside a transaction that is rolled back.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from registry import event_partitions
from registry.sql import with_placeholders

__all__ = ["LOCATION_EVENTS", "PurgeReport", "RetentionPolicy", "evidence_refs", "purge", "shrink_sqlite", "trim_jsonl"]

DAY = 86400.0
LOCATION_EVENTS = ("tag_seen", "mac_seen", "target_tracked")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of record is kept, in days (docs/privacy.md, "Retention")."""

    strangers_days: float = 7.0
    captures_days: float = 30.0
    decisions_days: float = 90.0
    location_days: float = 30.0
    audit_days: float = 365.0
    passes_days: float = 30.0
    events_days: float = 365.0


@dataclass
class PurgeReport:
    """What one purge removed (or would remove), per kind, and the database file before and after."""

    removed: dict[str, int] = field(default_factory=dict)
    kept_as_evidence: int = 0
    aggregated: int = 0
    bytes_before: int | None = None
    bytes_after: int | None = None
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "removed": self.removed,
            "kept_as_evidence": self.kept_as_evidence,
            "location_aggregated": self.aggregated,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "dry_run": self.dry_run,
        }


class _Rollback(Exception):
    """Ends a dry run's transaction."""


def evidence_refs(alarm_docs: list[str]) -> set[str]:
    """Capture references named as evidence by watchlist alarms (the docs of the open ones)."""
    refs: set[str] = set()
    for doc in alarm_docs:
        try:
            evidence = json.loads(doc).get("evidence") or {}
        except (ValueError, AttributeError):
            continue
        for key in ("snapshot_ref", "capture_ref"):
            if isinstance(evidence.get(key), str):
                refs.add(evidence[key])
    return refs


def trim_jsonl(path: Path, before: float) -> int:
    """Drop the lines of a JSON-lines file (the rule audit) whose ``ts`` is older than ``before``; the file is
    replaced atomically (a line without a readable ``ts`` is kept). Returns the lines dropped."""
    if not path.exists():
        return 0
    kept, dropped = [], 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                ts = float(json.loads(line).get("ts"))
            except (ValueError, TypeError, AttributeError):
                kept.append(line)
                continue
            if ts < before:
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        tmp = path.with_name(path.name + ".purge")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)
    return dropped


def _file_size(db_path: Path | None) -> int | None:
    if db_path is None:
        return None
    return sum(p.stat().st_size for p in db_path.parent.glob(db_path.name + "*") if p.is_file())


async def purge(
    conn: BaseDBAsyncClient,
    site: str,
    policy: RetentionPolicy,
    now: float,
    *,
    dry_run: bool = False,
) -> PurgeReport:
    """Enforce ``policy`` on ``site``'s records at ``now`` (see the module docstring)."""
    postgres = conn.capabilities.dialect == "postgres"
    filename = getattr(conn, "filename", None)
    db_path = Path(filename) if not postgres and filename and filename != ":memory:" else None
    report = PurgeReport(dry_run=dry_run, bytes_before=_file_size(db_path))

    def q(sql: str) -> str:
        return with_placeholders(sql, postgres)

    try:
        async with in_transaction(conn.connection_name) as tx:
            await _purge_in(tx, q, site, policy, now, report)
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    if not dry_run and not postgres and db_path is not None:
        await shrink_sqlite(conn)
    report.bytes_after = _file_size(db_path)
    return report


async def _purge_in(
    tx: BaseDBAsyncClient, q: Any, site: str, policy: RetentionPolicy, now: float, r: PurgeReport
) -> None:
    rows = await tx.execute_query_dict(
        q("SELECT doc FROM alarms WHERE site = ? AND kind = 'watchlist_match' AND state <> 'cleared'"), [site]
    )
    keep = sorted(evidence_refs([str(row["doc"]) for row in rows]))
    keep_ref_sql = ("AND ref NOT IN (" + ", ".join("?" * len(keep)) + ")") if keep else ""
    strangers = now - policy.strangers_days * DAY
    residents = now - policy.captures_days * DAY
    if keep:
        counted = await tx.execute_query_dict(
            q(f"SELECT COUNT(*) AS n FROM capture_images WHERE site = ? AND ref IN ({', '.join('?' * len(keep))})"),
            [site, *keep],
        )
        r.kept_as_evidence = int(counted[0]["n"])

    async def delete(name: str, sql: str, args: list[Any]) -> None:
        count, _ = await tx.execute_query(q(sql), args)
        r.removed[name] = r.removed.get(name, 0) + int(count)

    # images first: which capture an image belongs to decides its retention
    await delete(
        "capture_images",
        "DELETE FROM capture_images WHERE site = ? AND ts < ? AND ref NOT IN (SELECT snapshot_ref FROM "
        f"community_captures WHERE site = ? AND subject_id IS NOT NULL AND snapshot_ref IS NOT NULL) {keep_ref_sql}",
        [site, strangers, site, *keep],
    )
    await delete("capture_images", f"DELETE FROM capture_images WHERE site = ? AND ts < ? {keep_ref_sql}",
                 [site, residents, *keep])  # fmt: skip
    not_evidence = f"AND (snapshot_ref IS NULL OR snapshot_ref NOT IN ({', '.join('?' * len(keep))}))" if keep else ""
    await delete(
        "captures_strangers",
        f"DELETE FROM community_captures WHERE site = ? AND subject_id IS NULL AND ts < ? {not_evidence}",
        [site, strangers, *keep],
    )
    await delete("captures", f"DELETE FROM community_captures WHERE site = ? AND ts < ? {not_evidence}",
                 [site, residents, *keep])  # fmt: skip
    await _aggregate_locations(tx, q, site, now - policy.location_days * DAY, r)
    await delete(
        "location_events",
        f"DELETE FROM device_events WHERE received_at < ? AND type IN ({', '.join('?' * len(LOCATION_EVENTS))}) "
        "AND device_id IN (SELECT id FROM devices WHERE site_id = ?)",
        [now - policy.location_days * DAY, *LOCATION_EVENTS, site],
    )
    await _purge_events(tx, q, site, now - policy.events_days * DAY, r)
    await delete("decisions", "DELETE FROM access_decisions WHERE site = ? AND ts < ?",
                 [site, now - policy.decisions_days * DAY])  # fmt: skip
    await delete("passes", "DELETE FROM community_passes WHERE site = ? AND valid_until < ?",
                 [site, now - policy.passes_days * DAY])  # fmt: skip
    ended = now - policy.passes_days * DAY
    await delete("api_tokens", "DELETE FROM community_api_tokens WHERE site = ? AND (expires_at < ? OR revoked_at < ?)",
                 [site, ended, ended])  # fmt: skip
    await delete("audit", "DELETE FROM community_audit_log WHERE ts < ?", [now - policy.audit_days * DAY])


async def _aggregate_locations(tx: BaseDBAsyncClient, q: Any, site: str, before: float, r: PurgeReport) -> None:
    rows = await tx.execute_query_dict(
        q(
            f"SELECT device_id, type, received_at FROM device_events WHERE received_at < ? "
            f"AND type IN ({', '.join('?' * len(LOCATION_EVENTS))}) "
            "AND device_id IN (SELECT id FROM devices WHERE site_id = ?)"
        ),
        [before, *LOCATION_EVENTS, site],
    )
    counts: Counter[tuple[str, str, str]] = Counter()
    for row in rows:
        day = _day(float(row["received_at"]))
        counts[(day, str(row["device_id"]), str(row["type"]))] += 1
    if counts:
        await tx.execute_many(
            q(
                "INSERT INTO location_daily(site, day, device_id, event_type, sightings) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(site, day, device_id, event_type) DO UPDATE SET "
                "sightings = location_daily.sightings + excluded.sightings"
            ),
            [[site, day, device, type_, n] for (day, device, type_), n in sorted(counts.items())],
        )
    r.aggregated = len(rows)


async def _purge_events(tx: BaseDBAsyncClient, q: Any, site: str, before: float, r: PurgeReport) -> None:
    """Events older than ``before``: whole day partitions on PostgreSQL, the site's rows on SQLite."""
    if tx.capabilities.dialect == "postgres":
        r.removed["event_partitions"] = await event_partitions.drop_before(tx, before)
        return
    count, _ = await tx.execute_query(
        q(
            "DELETE FROM device_events WHERE received_at < ? "
            "AND device_id IN (SELECT id FROM devices WHERE site_id = ?)"
        ),
        [before, site],
    )
    r.removed["events"] = int(count)


def _day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


async def shrink_sqlite(conn: BaseDBAsyncClient) -> None:
    """Give freed pages back to the file system; the first time, switch the file to incremental vacuum."""
    rows = await conn.execute_query_dict("PRAGMA auto_vacuum")
    if rows and int(next(iter(rows[0].values()))) != 2:
        await conn.execute_script("PRAGMA auto_vacuum = INCREMENTAL")
        await conn.execute_script("VACUUM")  # rewrites the file once; later purges only free pages
    else:
        await conn.execute_script("PRAGMA incremental_vacuum")
    await conn.execute_query_dict("PRAGMA wal_checkpoint(TRUNCATE)")
