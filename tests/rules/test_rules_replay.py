"""`anfang rules replay`: recorded events and access decisions from the registry through a rule set."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anfang.app import open_registry
from anfang.config import load_settings
from registry.db import open_connection
from registry.sql import Sql
from rules.cli import app

T0 = 1_795_000_000.0  # 2026-11-18 (UTC)
RULES = """
rules:
  - id: forced-at-b1
    when: {event: {type: door_forced}}
    if: ["device.id == 'door-b1-u1'", "event.data.force > 2"]
    then: {raise_alarm: {kind: door_forced}}
  - id: denied-twice
    when:
      event: {type: access_decided, where: "not event.data.allowed", count: 2, within: 5m, group_by: event.data.device}
    then: {audit: {message: "denied twice at {{ trigger.key }}"}}
  - id: never
    when: {event: {type: motion}}
    then: {audit: {message: never}}
"""


async def _record(settings_path: Path) -> None:
    settings = load_settings(settings_path)
    async with open_registry(settings) as (registry, _):
        for dev in ("door-b1-u1", "door-b1-u2"):
            await registry.add_device("youzheng", dev, "door_lock")
        sql = Sql(open_connection(settings.db_url))
        events = [
            ("door-b1-u1", "e1", "door_forced", T0 + 10, {"force": 5}),
            ("door-b1-u2", "e2", "door_forced", T0 + 20, {"force": 5}),
            ("door-b1-u1", "e3", "door_forced", T0 + 30, {"force": 1}),
            ("door-b1-u1", "e4", "door_forced", T0 + 99_999, {"force": 9}),  # after --until
        ]
        await sql.batch(
            [
                (
                    "INSERT INTO device_events(device_id, event_id, type, ts, received_at, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [[d, e, t, ts, ts, json.dumps(data)] for d, e, t, ts, data in events],
                ),
                (
                    "INSERT INTO access_decisions(id, site, ts, device_id, mode, allowed, reason, credential_kind) "
                    "VALUES (?, 'youzheng', ?, 'door-b1-u2', 'central', ?, 'no_match', 'face')",
                    [["d1", T0 + 40, False], ["d2", T0 + 50, False]],
                ),
            ]
        )


def test_replay_prints_what_would_have_fired_with_condition_verdicts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANFANG_SECRET_KEY", base64.b64encode(bytes(32)).decode())  # a test key, not a secret
    config = tmp_path / "anfang.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    asyncio.run(_record(config))
    (tmp_path / "try.yaml").write_text(RULES)
    result = CliRunner().invoke(
        app,
        ["replay", str(tmp_path / "try.yaml"), "--since", "2026-11-18T00:00:00+00:00",
         "--until", "2026-11-18T12:00:00+00:00", "--config", str(config), "--trace"],
    )  # fmt: skip
    out = result.output
    assert result.exit_code == 0, out
    assert "5 recorded input(s)" in out
    assert "forced-at-b1: fired 1 time(s)" in out and "denied-twice: fired 1 time(s)" in out
    assert "never: would not have fired" in out
    lines = out.splitlines()
    fired = [ln for ln in lines if "forced-at-b1: fired" in ln and "e1" in ln]
    assert fired and "if \"device.id == 'door-b1-u1'\": true; if 'event.data.force > 2': true" in fired[0]
    other = [ln for ln in lines if "forced-at-b1: condition_false" in ln and "e2" in ln]
    assert other and "'door-b1-u1'\": false; if 'event.data.force > 2': true" in other[0], out
    weak = [ln for ln in lines if "forced-at-b1: condition_false" in ln and "e3" in ln]
    assert weak and "'event.data.force > 2': false" in weak[0]
