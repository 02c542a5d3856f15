"""Retention purge (issue 15, must show): stranger captures go after their retention, a watchlist hit's
evidence stays until the police clear the case, raw location tracks become daily counts, the file shrinks."""

from __future__ import annotations

import json
import os
from pathlib import Path

from anfang.app import MODELS
from privacy.purge import RetentionPolicy, purge
from registry.db import open_database

DAY = 86400.0
NOW = 1_780_000_000.0
SITE = "youzheng"


def _size(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


async def test_purge_keeps_evidence_removes_strangers_and_shrinks_the_file(tmp_path: Path) -> None:
    db = tmp_path / "anfang.db"
    async with open_database(f"sqlite://{db}", MODELS) as conn:
        await conn.execute_query("INSERT INTO sites(id, name, created_at) VALUES (?, ?, 0)", [SITE, SITE])
        await conn.execute_query(
            "INSERT INTO devices(id, site_id, kind, name, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0)",
            ["reader-1", SITE, "rfid_reader", "reader-1"],
        )
        captures = {  # ref: (age in days, matched person)
            "old-stranger": (10, None),
            "new-stranger": (2, None),
            "wanted": (20, None),
            "resident": (10, "p-owner"),
        }
        for ref, (age, subject) in captures.items():
            ts = NOW - age * DAY
            await conn.execute_query(
                "INSERT INTO community_captures(id, site, ts, device_id, credential_kind, subject_id, snapshot_ref) "
                "VALUES (?, ?, ?, 'cam-1', 'face', ?, ?)",
                [ref, SITE, ts, subject, ref],
            )
            image = "v1:" + os.urandom(600_000).hex()  # stands for an encrypted JPEG
            await conn.execute_query(
                "INSERT INTO capture_images(ref, site, device_id, event_type, ts, image_enc) VALUES (?, ?, 'cam-1', "
                "'face_captured', ?, ?)",
                [ref, SITE, ts, image],
            )
        doc = {"evidence": {"snapshot_ref": "wanted", "watch_id": "w1"}}
        await conn.execute_query(
            "INSERT INTO alarms(site, id, rule_id, subject, dedupe_key, kind, severity, state, audience, raised_at, "
            "updated_at, doc) VALUES (?, 'a1', 'access', 'w1', 'k', 'watchlist_match', 'critical', 'acknowledged', "
            "'police', ?, ?, ?)",
            [SITE, NOW - 20 * DAY, NOW - 20 * DAY, json.dumps(doc)],
        )
        for i, age in enumerate([40, 40, 35, 1]):
            await conn.execute_query(
                "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) "
                "VALUES ('reader-1', ?, 'tag_seen', ?, ?, ?)",
                [f"e{i}", NOW - age * DAY, NOW - age * DAY, json.dumps({"tag": "tag-child-7", "rssi": -60})],
            )
        await conn.execute_query_dict("PRAGMA wal_checkpoint(TRUNCATE)")
        before = _size(db)

        dry = await purge(conn, SITE, RetentionPolicy(), NOW, dry_run=True)
        assert dry.removed["captures_strangers"] == 1 and dry.removed["location_events"] == 3
        assert await _refs(conn, "capture_images") == set(captures), "a dry run removes nothing"

        report = await purge(conn, SITE, RetentionPolicy(), NOW)
        assert report.removed["captures_strangers"] == 1 and report.removed["capture_images"] == 1
        assert report.kept_as_evidence == 1
        assert await _refs(conn, "capture_images") == {"new-stranger", "wanted", "resident"}
        assert await _refs(conn, "community_captures") == {"new-stranger", "wanted", "resident"}
        assert report.removed["location_events"] == 3
        left = await conn.execute_query_dict("SELECT event_id FROM device_events")
        assert [r["event_id"] for r in left] == ["e3"]
        daily = await conn.execute_query_dict("SELECT day, sightings FROM location_daily ORDER BY day")
        assert sum(r["sightings"] for r in daily) == 3 and len(daily) == 2, "the raw track became daily counts"
        assert report.bytes_before is not None and report.bytes_after is not None
        assert report.bytes_after < report.bytes_before
        assert _size(db) < before, "the database file shrinks"

        # the police close the case: its evidence follows the stranger retention from now on
        await conn.execute_query("UPDATE alarms SET state = 'cleared' WHERE id = 'a1'")
        again = await purge(conn, SITE, RetentionPolicy(), NOW)
        assert again.removed["captures_strangers"] == 1 and again.kept_as_evidence == 0
        assert await _refs(conn, "capture_images") == {"new-stranger", "resident"}
        later = await purge(conn, SITE, RetentionPolicy(), NOW + 25 * DAY)
        assert later.removed["captures"] == 1, "a resident's capture goes after captures_days"
        assert await _refs(conn, "capture_images") == set()


async def _refs(conn: object, table: str) -> set[str]:
    col = "ref" if table == "capture_images" else "snapshot_ref"
    rows = await conn.execute_query_dict(f"SELECT {col} AS r FROM {table}")  # type: ignore[attr-defined]
    return {str(r["r"]) for r in rows}


async def test_ended_api_tokens_go_after_the_pass_retention(tmp_path: Path) -> None:
    async with open_database(f"sqlite://{tmp_path / 'anfang.db'}", MODELS) as conn:
        tokens = {  # id: (expires at, revoked at)
            "expired-long-ago": (NOW - 40 * DAY, None),
            "revoked-long-ago": (NOW + 300 * DAY, NOW - 31 * DAY),
            "expired-recently": (NOW - 2 * DAY, None),
            "revoked-recently": (NOW + 300 * DAY, NOW - 1 * DAY),
            "live": (NOW + 1 * DAY, None),
        }
        for token_id, (expires_at, revoked_at) in tokens.items():
            await conn.execute_query(
                "INSERT INTO community_api_tokens(token_hash, id, person_id, site, role, label, created_at, "
                "revoked, expires_at, revoked_at) VALUES (?, ?, 'p-staff', ?, 'staff', '', ?, ?, ?, ?)",
                [f"hash-{token_id}", token_id, SITE, NOW - 60 * DAY, revoked_at is not None, expires_at, revoked_at],
            )
        report = await purge(conn, SITE, RetentionPolicy(), NOW)
        assert report.removed["api_tokens"] == 2
        rows = await conn.execute_query_dict("SELECT id FROM community_api_tokens ORDER BY id")
        assert [r["id"] for r in rows] == ["expired-recently", "live", "revoked-recently"]
