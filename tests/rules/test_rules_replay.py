"""`anfang rules replay`: recorded events and access decisions from the registry through a rule set."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from anfang.app import open_registry
from anfang.config import load_settings
from registry.db import open_connection
from registry.sql import Sql
from rules.cli import app, configured
from rules.loader import load_rules
from rules.replay import ReplayReport, load_recorded, replay
from twins.history import HistoryEntry

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


TWIN_RULES = """
rules:
  - id: held-open
    when: {twin: {kind: door_lock, field: door, to: open}}
    if: "twin.door != 'closed'"
    for: 3m
    then: {audit: {message: "{{ device.id }} held open"}}
  - id: tag-battery-low
    when: {threshold: {field: battery, kind: rfid_tag, below: 20, hysteresis: 5}}
    then: {audit: {message: "{{ device.id }} battery low"}}
  - id: went-offline
    when: {event: {type: status, where: "event.data.status == 'offline'"}}
    then: {audit: {message: "{{ device.id }} offline"}}
"""


async def _record_twin_day(settings_path: Path) -> None:
    """A day of twin changes written through the real twin store, as the platform commits them."""
    settings = load_settings(settings_path)
    async with open_registry(settings) as (registry, store):
        await registry.add_device("youzheng", "door-b1-u1", "door_lock")
        await registry.add_device("youzheng", "tag-e1", "rfid_tag")
        door = [
            (T0 - 3600, {"lock": "locked", "door": "closed"}),  # before --since: the state the day starts from
            (T0 + 3600, {"door": "open"}),
            (T0 + 3660, {"door": "closed"}),  # open for a minute: not held open
            (T0 + 7200, {"door": "open"}),
            (T0 + 7200 + 600, {"door": "closed"}),  # open for ten minutes: held open at +3 min
            (T0 + 99_999, {"door": "open"}),  # after --until
        ]
        tag = [(T0 - 60, {"battery": 80}), (T0 + 20_000, {"battery": 30}), (T0 + 30_000, {"battery": 15})]
        entries = [HistoryEntry("door-b1-u1", v, ts, "reported", "device", c) for v, (ts, c) in enumerate(door, 1)]
        entries += [HistoryEntry("tag-e1", v, ts, "reported", "platform", c) for v, (ts, c) in enumerate(tag, 1)]
        entries.append(HistoryEntry("door-b1-u1", 20, T0 + 5000, "desired", "rule:x", {"lock": "unlocked"}))
        entries.append(HistoryEntry("door-b1-u1", 21, T0 + 40_000, "status", "device", {"status": "offline"}))
        for entry in sorted(entries, key=lambda e: e.ts):  # one commit per change, as the platform's batches
            await store.commit([], history=[entry])


def test_replay_runs_recorded_twin_changes_through_twin_rules_at_the_time_they_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANFANG_SECRET_KEY", base64.b64encode(bytes(32)).decode())  # a test key, not a secret
    config = tmp_path / "anfang.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    asyncio.run(_record_twin_day(config))
    rules = tmp_path / "twin.yaml"
    rules.write_text(TWIN_RULES)

    async def run() -> ReplayReport:
        settings = load_settings(config)
        async with open_registry(settings):
            records = await load_recorded(open_connection(settings.db_url), "youzheng", T0, T0 + 86_400)
        plan, _ = await asyncio.to_thread(configured, config)
        return await replay(load_rules(rules, plan).rules, plan, records, T0)

    report = asyncio.run(run())
    assert report.inputs == 7  # four door changes and two tag changes in the day, and the door going offline
    assert [(f.rule_id, f.subject, f.ts) for f in report.firings] == [
        ("held-open", "door-b1-u1", T0 + 7200 + 180),
        ("tag-battery-low", "tag-e1", T0 + 30_000),
        ("went-offline", "door-b1-u1", T0 + 40_000),
    ]
    fired = [e for e in report.trace if e.rule_id == "held-open" and e.outcome == "fired"]
    assert len(fired) == 1 and "if \"twin.door != 'closed'\": true" in fired[0].detail

    since = datetime.fromtimestamp(T0, UTC).isoformat()
    until = datetime.fromtimestamp(T0 + 86_400, UTC).isoformat()
    result = CliRunner().invoke(
        app, ["replay", str(rules), "--since", since, "--until", until, "--config", str(config), "--rule", "held-open"]
    )
    assert result.exit_code == 0, result.output
    assert "7 recorded input(s)" in result.output and "held-open: fired 1 time(s)" in result.output
    assert "tag-battery-low: fired 1 time(s)" in result.output
