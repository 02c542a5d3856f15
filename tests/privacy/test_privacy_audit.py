"""Issue 15 item 7: every access to personal data is in one append-only audit log with actor, purpose,
subject and time, and no personal value in it; ``anfang audit`` lists and filters it."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from community_testkit import KEY, NOW, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from tortoise import Tortoise
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.exceptions import OperationalError

from community.api import CommunityServices, create_app
from community.db import init_db
from community.models import AuditRow
from community.records import AccessRecords
from privacy.audit import plate_ref, purpose_of

ANFANG = str(Path(sys.executable).parent / "anfang")
PG = "postgres://postgres@127.0.0.1:5432"


@pytest.fixture
async def client(community: Community) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, dict[str, str]]]]:
    app = create_app(CommunityServices(community.store, community.records, clock=lambda: NOW))
    headers = {
        p: {"Authorization": f"Bearer {await community.records.create_token(p, label='t', now=NOW)}"}
        for p in ("p-owner", "p-staff", "p-police")
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c, headers


async def test_reads_passes_enrolment_watchlist_and_requests_are_audited_without_values(
    client: tuple[httpx.AsyncClient, dict[str, dict[str, str]]], community: Community
) -> None:
    c, h = client
    assert (await c.get("/people/p-owner", headers=h["p-staff"])).status_code == 200
    issued = await c.post(
        "/passes", headers=h["p-owner"],
        json={"valid_from": NOW, "valid_until": NOW + 3600, "max_uses": 1, "visitor_name": "访客乙",
              "visitor_phone": "13712345678", "plate": "赣A88888"},
    )  # fmt: skip
    assert issued.status_code == 201, issued.text
    assert (await c.get("/passes", headers=h["p-owner"])).status_code == 200
    assert (await c.get("/decisions", params={"plate": "赣G12345"}, headers=h["p-police"])).status_code == 200
    added = await c.post(
        "/watchlist", headers=h["p-police"], json={"kind": "plate", "plate": "赣B66666", "reason": "协查"}
    )
    assert added.status_code == 201, added.text
    assert (await c.delete("/people/p-b2/face-consent", headers=h["p-staff"])).status_code == 200

    rows = await AuditRow.all()
    by_action = {r.action: r for r in rows}
    expected = {
        "view_person": ("p-staff", "p-owner"),
        "issue_pass": ("p-owner", issued.json()["id"]),
        "list_passes": ("p-owner", "p-owner"),
        "search_decisions": ("p-police", plate_ref(community.cipher.lookup_hash, "赣G12345")),
        "add_watch": ("p-police", added.json()["id"]),
        "withdraw_face_consent": ("p-staff", "p-b2"),
    }
    for action, (actor, subject) in expected.items():
        row = by_action[action]
        assert (row.actor, row.target, row.ts) == (actor, subject, NOW), action
        assert row.purpose == purpose_of(action) != "other", action
    raw = json.dumps([[r.actor, r.action, r.purpose, r.target, r.detail] for r in rows], ensure_ascii=False)
    for value in ("13712345678", "访客乙", "赣A88888", "赣G12345", "赣B66666", "张伟", "13800000001", "C0001",
                  issued.json()["payload"]):  # fmt: skip
        assert value not in raw, value


async def test_the_audit_log_refuses_updates(community: Community) -> None:
    await community.records.audit(actor="p-staff", actor_role="staff", action="view_person", target="p-owner", now=NOW)
    with pytest.raises(OperationalError, match="append-only"):
        await AuditRow.filter(target="p-owner").update(actor="someone-else")
    assert await AuditRow.filter(actor="p-staff", target="p-owner").count() == 1
    # the retention purge is the only way rows leave
    await AuditRow.filter(ts__lt=NOW + 1).delete()
    assert await AuditRow.all().count() == 0


@pytest.mark.postgres
async def test_the_audit_log_refuses_updates_on_postgres() -> None:
    name = f"anfang_audit_{uuid.uuid4().hex[:10]}"
    EXECUTOR_CACHE.clear()  # SQL compiled for SQLite by earlier tests would be reused on PostgreSQL
    try:
        admin = await asyncpg.connect(f"{PG}/test", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not reachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await init_db(f"{PG}/{name}")
        try:
            await AccessRecords("s").audit(actor="a", actor_role="staff", action="view_person", target="p", now=NOW)
            conn = await asyncpg.connect(f"{PG}/{name}")
            try:
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute("UPDATE community_audit_log SET actor = 'b'")
                assert await conn.fetchval("SELECT purpose FROM community_audit_log") == "resident_administration"
            finally:
                await conn.close()
        finally:
            await Tortoise.close_connections()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        EXECUTOR_CACHE.clear()


@pytest.mark.timeout(300)  # six `anfang` processes, each loading the platform: slow on a busy machine
def test_anfang_audit_lists_and_filters(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update({"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_SECRET_KEY": base64.b64encode(KEY).decode()})

    def anfang(*args: str) -> str:
        done = subprocess.run([ANFANG, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    pid = json.loads(anfang("community", "person", "add", "staff", "--phone", "13900000009", "--name", "管理员"))["id"]
    anfang("community", "people", "show", pid)
    anfang("community", "decisions", "list", "--plate", "赣G12345")
    lines = [json.loads(line) for line in anfang("audit", "--json").splitlines()]
    assert [e["action"] for e in lines] == ["search_decisions", "view_person", "register_person"]  # newest first
    assert all(e["actor"].startswith("cli:") and e["purpose"] and e["ts"] for e in lines)
    shown = [
        json.loads(line) for line in anfang("audit", "--subject", pid, "--action", "view_person", "--json").splitlines()
    ]
    assert [(e["action"], e["subject"]) for e in shown] == [("view_person", pid)]
    assert len(anfang("audit", "--plate", "赣G12345", "--since", "1h").splitlines()) == 1
    assert anfang("audit", "--actor", "nobody", "--since", "2099-01-01") == ""
    db = tmp_path / "data" / "anfang.db"
    with sqlite3.connect(db) as conn:
        text = json.dumps(conn.execute("SELECT * FROM community_audit_log").fetchall(), ensure_ascii=False)
    assert "13900000009" not in text and "管理员" not in text and "赣G12345" not in text
