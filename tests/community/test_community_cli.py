"""Operator CLI (typer CliRunner against community.cli.app) on a fresh SQLite database."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml
from community_testkit import community_data
from typer.testing import CliRunner

from community.cli import app

runner = CliRunner()


def run(tmp_path: Path, *args: str, ok: bool = True) -> Any:
    res = runner.invoke(
        app,
        ["--site", "testsite", *args],
        env={"ANFANG_DATA_DIR": str(tmp_path), "ANFANG_SECRET_KEY": "", "ANFANG_DATABASE_URL": "", "ANFANG_CONFIG": ""},
    )
    if ok:
        assert res.exit_code == 0, res.output
        return json.loads(res.stdout)
    return res


def test_cli_operator_workflow(tmp_path: Path) -> None:
    data = community_data()
    for p in data["people"]:
        p.pop("face_template", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    rep = run(tmp_path, "import", str(tmp_path / "c.yaml"))
    assert rep["people"] == 6 and rep["vehicles"] == 2
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    added = run(
        tmp_path,
        "person",
        "add",
        "family",
        "--household",
        "h2",
        "--phone",
        "13811110000",
        "--id-number",
        "440524188001010014",
        ok=False,
    )
    assert added.exit_code == 2 and "duplicate_id_number" in added.output
    added = run(tmp_path, "person", "add", "family", "--household", "h2", "--phone", "13811110000")
    assert added["pin"] and len(added["pin"]) == 6
    tenant = run(tmp_path, "tenant", "add", "h2", "2026-01-01", "2026-12-31", "--by", "p-staff", "--card", "T9")
    assert tenant["id"].startswith("p-")
    refused = run(tmp_path, "tenant", "add", "h2", "2026-01-01", "2026-12-31", "--by", "p-owner", ok=False)
    assert refused.exit_code == 2 and "staff_only" in refused.output
    assert run(tmp_path, "vehicle", "add", "赣G·66666", "--owner", added["id"])["plate"] == "赣G66666"
    issued = run(tmp_path, "pass", "issue", "--issuer", "p-owner", "--door", "door-b1-u1", "--uses", "2")
    assert issued["payload"].startswith("AFP1.") and issued["doors"] == ["door-b1-u1"]
    assert run(tmp_path, "watchlist", "add", "--plate", "京A99999", "--reason", "stolen", "--by", "p-police")["id"]
    assert [w["plate"] for w in run(tmp_path, "watchlist", "list")] == ["京A99999"]
    assert run(tmp_path, "decisions", "list") == []
    assert run(tmp_path, "purge")["captures"] == 0
    token = run(tmp_path, "token", "create", "p-owner", "--label", "phone app")["token"]
    assert token.startswith("afc_")
    assert token.encode() not in (tmp_path / "anfang.db").read_bytes()


def test_rotate_door_key_prints_the_new_key_once(tmp_path: Path) -> None:
    data = community_data()
    data["site"] = "testsite"
    for p in data["people"]:
        p.pop("face_template", None)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    run(tmp_path, "import", str(tmp_path / "c.yaml"))
    first = run(tmp_path, "rotate-door-key", "door-b1-u1", ok=False)
    second = run(tmp_path, "rotate-door-key", "door-b1-u1", ok=False)
    keys = [r.stdout.removeprefix("edge key: ").strip() for r in (first, second)]
    assert first.exit_code == second.exit_code == 0 and keys[0] != keys[1]
    assert all(len(base64.b64decode(k)) == 32 for k in keys)
    camera = run(tmp_path, "rotate-door-key", "cam-park", ok=False)
    assert camera.exit_code == 2 and "device_not_found" in camera.output
