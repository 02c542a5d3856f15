"""``/metrics`` of ``anfang run`` (a real process, embedded broker, SQLite), scraped while the pilot
community's simulator plays against it; afterwards every counter equals the platform's own count: the
ingest counters it publishes on ``_platform/health``, and the decisions, alarms and rule firings it wrote
as telemetry (a line-protocol file)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from process_kit import ANFANG, PlatformProcess, operator_credentials
from testkit import Device, free_port

pytestmark = pytest.mark.slow


def _samples(text: str) -> dict[str, float]:
    """``name{labels}`` -> value of every sample of the exposition text."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def _scrape(url: str) -> dict[str, float]:
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def _sum(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


async def _health(port: int, env: dict[str, str], site: str) -> dict[str, Any]:
    """The next health document the platform publishes."""
    op = Device("127.0.0.1", port, *operator_credentials(env), site=site, client_id="metrics-op", will=False)
    assert await op.connect() == 0
    try:
        await op.subscribe(f"anfang/{site}/_platform/health")
        await op.expect(r"/_platform/health$", timeout=30)  # the retained one may be old
        _, doc = await op.expect(r"/_platform/health$", timeout=30)
        return dict(doc)
    finally:
        op.close()


async def test_metrics_while_the_simulator_plays_and_equal_to_the_platforms_counts(tmp_path: Path) -> None:
    api, mqtt = free_port(), free_port()
    lp = tmp_path / "telemetry.lp"
    config = {
        "site": "youzheng", "data_dir": str(tmp_path / "data"), "api_bind": f"127.0.0.1:{api}",
        "broker": {"bind": f"127.0.0.1:{mqtt}", "hash_iterations": 1000},
        "limits": {"health_interval_s": 0.5}, "telemetry": {"file": str(lp)},
    }  # fmt: skip
    (tmp_path / "anfang.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env["ANFANG_DATA_DIR"] = config["data_dir"]
    # devices only: residents' faces are not registered, so their access attempts are decisions too (refusals)
    provision = [ANFANG, "sim", "provision", "youzheng", "--no-people"]
    await asyncio.to_thread(
        subprocess.run, provision, env=env, cwd=tmp_path, check=True, capture_output=True, timeout=300
    )
    platform = PlatformProcess(env, tmp_path, own_api_port=False)  # the API port is in the config file
    platform.start(timeout=90)
    url = f"http://127.0.0.1:{api}"
    try:
        sim = await asyncio.create_subprocess_exec(
            ANFANG,
            "sim",
            "run",
            "youzheng",
            "--speed",
            "600",
            "--duration",
            "1800",
            "--start",
            time.strftime("%Y-%m-%dT07:30:00"),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        during = []
        while sim.returncode is None:  # scrape while it plays, as Prometheus would
            during.append(_scrape(url)["anfang_messages_received_total"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sim.wait(), 0.5)
        assert sim.returncode == 0, await sim.stderr.read() if sim.stderr else ""
        assert len({x for x in during if x > 0}) >= 2, during  # it counted as it went

        # the platform's own counts once it is quiet: its health document and what it wrote as telemetry
        health: dict[str, Any] = {}
        scraped: dict[str, float] = {}
        for _ in range(20):
            health = await _health(mqtt, env, "youzheng")
            scraped = _scrape(url)
            if scraped["anfang_messages_received_total"] == health["received"]:
                break
        assert scraped["anfang_messages_received_total"] == health["received"] > 200
        assert scraped["anfang_messages_accepted_total"] == health["accepted"]
        assert scraped["anfang_messages_duplicates_total"] == health["duplicates"]
        rejected = {re.search(r'code="(\d+)"', k).group(1): v  # type: ignore[union-attr]
                    for k, v in scraped.items() if k.startswith("anfang_messages_rejected_total{")}  # fmt: skip
        assert rejected == {k: float(v) for k, v in health["rejected_by_code"].items()}
        assert scraped["anfang_inbox_depth"] == 0 and "anfang_dispatch_depth" in scraped
        assert scraped["anfang_workers"] == 1 and scraped["anfang_rules_faulted"] == 0
        assert scraped["anfang_rule_inputs_total"] > 0

        await asyncio.sleep(1.5)  # the writer flushes every second: the file then holds every point
        lines = lp.read_text().splitlines()
        decisions = Counter(re.search(r",result=(\w+)", ln).group(1) for ln in lines if ln.startswith("access,"))  # type: ignore[union-attr]
        assert decisions and _sum(scraped, "anfang_access_decisions_total") == sum(decisions.values())
        for result, n in decisions.items():
            mine = [v for k, v in scraped.items() if k.startswith("anfang_access_decisions_total{") and result in k]
            assert sum(mine) == n
        assert _sum(scraped, "anfang_alarms_total") == sum(1 for ln in lines if ln.startswith("alarm,"))
        assert _sum(scraped, "anfang_rule_firings_total") == sum(1 for ln in lines if ln.startswith("rule_firing,"))
        assert 0 < scraped["anfang_telemetry_written_total"] <= len(lines)  # (health points keep coming)
        assert scraped["anfang_telemetry_running"] == 1 and scraped["anfang_telemetry_spool_bytes"] == 0
        assert _sum(scraped, "anfang_database_latency_seconds_count") >= 1
    finally:
        platform.stop()


def test_json_logs_carry_the_site_and_the_device(tmp_path: Path) -> None:
    """A real ``anfang run`` with ``log_format: json``: a report it rejects is logged with site and device."""
    mqtt = free_port()
    config = {"site": "youzheng", "data_dir": str(tmp_path / "data"), "log_format": "json", "api_bind": "off",
              "broker": {"bind": f"127.0.0.1:{mqtt}", "hash_iterations": 1000}}  # fmt: skip
    (tmp_path / "anfang.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    added = subprocess.run([ANFANG, "devices", "add", "door-1", "--kind", "door_lock"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    secret = re.search(r"secret: (\S+)", added.stdout).group(1)  # type: ignore[union-attr]
    platform = PlatformProcess(env, tmp_path, own_api_port=False)  # the API port is in the config file
    platform.start(timeout=90)
    try:
        publish = ["mosquitto_pub", "-p", str(mqtt), "-i", "door-1", "-u", "door-1", "-P", secret, "-q", "1",
                   "-t", "anfang/youzheng/door-1/twin/reported", "-m", "{not json"]  # fmt: skip
        subprocess.run(publish, check=True, timeout=30)
        deadline = time.monotonic() + 30
        while not any("rejected" in line for line in platform.log) and time.monotonic() < deadline:
            time.sleep(0.1)  # the platform's log is another process's output: poll it
    finally:
        platform.stop()
    rejected = [json.loads(line) for line in platform.log if '"rejected' in line]
    assert rejected, "".join(platform.log[-20:])
    assert rejected[0]["site"] == "youzheng" and rejected[0]["device"] == "door-1" and rejected[0]["level"] == "warning"
    assert all(json.loads(line)["site"] == "youzheng" for line in platform.log if line.startswith("{"))
