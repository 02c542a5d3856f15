"""The pilot's afternoon at 60x against a live platform, as ``scripts/run`` (``anfang demo``) plays it: a real
``anfang run`` (embedded broker, SQLite) with the pilot community provisioned and ``anfang sim run`` playing
the pick-ups (16:00 on) — zero alarms (issue 17 item 7, Must show).

At 60x the simulated clock runs away from the platform's: the simulation stamps its reports with its own
time, so the platform is told to trust event times up to two days off (``rules_event_skew_s``), as the demo
does; the pick-up window is then judged on the events' time, and no event is judged at the platform's."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml
from process_kit import ANFANG, PlatformProcess
from testkit import free_port

pytestmark = pytest.mark.slow

CST = dt.timezone(dt.timedelta(hours=8))
SPEED = 60.0
DURATION_S = 60 * 60.0  # 15:58-16:58 at the site: a minute of test time


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return list(conn.execute(sql).fetchall())


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


async def test_the_pilots_pick_up_hour_at_60x_raises_no_alarm(tmp_path: Path) -> None:
    api, mqtt = free_port(), free_port()
    config = {
        "site": "youzheng", "data_dir": str(tmp_path / "data"), "api_bind": f"127.0.0.1:{api}",
        "broker": {"bind": f"127.0.0.1:{mqtt}", "hash_iterations": 1000},
        "rules_event_skew_s": 2 * 86400.0,
    }  # fmt: skip
    (tmp_path / "anfang.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env["ANFANG_DATA_DIR"] = config["data_dir"]
    provision = [ANFANG, "sim", "provision", "youzheng"]
    await asyncio.to_thread(
        subprocess.run, provision, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300
    )
    platform = PlatformProcess(env, tmp_path, own_api_port=False)
    platform.start(timeout=90)
    # yesterday's 15:58 at the site: the guardians walk their children out from 16:00
    yesterday = dt.datetime.now(CST).date() - dt.timedelta(days=1)
    start = dt.datetime(yesterday.year, yesterday.month, yesterday.day, 15, 58, tzinfo=CST)
    url = f"http://127.0.0.1:{api}"
    try:
        sim = await asyncio.create_subprocess_exec(
            ANFANG, "sim", "run", "youzheng", "--speed", str(SPEED), "--duration", str(DURATION_S),
            "--start", start.isoformat(), env=env, cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(sim.communicate(), DURATION_S / SPEED + 60)
        assert sim.returncode == 0, err.decode()
        db = tmp_path / "data" / "anfang.db"
        # every child was heard on the way out (the rules saw the pick-ups), and nothing was raised
        heard = "SELECT COUNT(DISTINCT json_extract(data, '$.tag')) FROM device_events WHERE type = 'tag_seen'"
        tagged = _rows(db, heard)
        assert int(str(tagged[0][0])) >= 20
        # up to the last event played: when the simulator stops, its devices go offline (and say so)
        last = _rows(db, "SELECT MAX(received_at) FROM device_events")[0][0]
        alarms = _rows(db, f"SELECT rule_id, subject, doc FROM alarms WHERE raised_at <= {last}")
        assert alarms == [], alarms
        assert _metric(url, "anfang_rule_event_time_rejected_total") == 0
        assert _metric(url, "anfang_rules_faulted") == 0
    finally:
        platform.stop()
