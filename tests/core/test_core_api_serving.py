"""``anfang run`` serves the HTTP API, as a new user would meet it: one process, one configuration file.

The platform runs as a real subprocess (embedded broker, SQLite) from a configuration file; the staff
token comes from ``anfang community`` reading the same file; the compose file's healthcheck command
runs against it.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from process_kit import ANFANG, PlatformProcess, start_mosquitto
from testkit import free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Running:
    proc: PlatformProcess
    url: str
    workdir: Path
    env: dict[str, str]

    def cli(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [ANFANG, *args], env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=120
        )
        if ok:
            assert out.returncode == 0, out.stderr
        return out


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    api_port = free_port()
    config = {
        "site": "testsite",
        "data_dir": str(tmp_path / "data"),
        "api_bind": f"127.0.0.1:{api_port}",
        "broker": {"bind": f"127.0.0.1:{free_port()}", "hash_iterations": 1000},
    }
    (tmp_path / "anfang.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = _clean_env()
    proc = PlatformProcess(env, tmp_path, own_api_port=False)
    proc.start(timeout=90)
    try:
        yield Running(proc, f"http://127.0.0.1:{api_port}", tmp_path, env)
    finally:
        proc.stop()


def _wait_ready(url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(f"{url}/readyz", timeout=5)
        if r.status_code == 200:
            return dict(r.json())
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)  # polling the probe, as an orchestrator does


def test_run_serves_health_openapi_and_the_api_with_a_token_from_the_same_config(running: Running) -> None:
    url = running.url
    assert httpx.get(f"{url}/healthz", timeout=5).json() == {"status": "alive"}
    ready = _wait_ready(url)
    assert ready["checks"] == {"database": "ok", "migrations": "ok", "broker": "ok", "telemetry": "ok"}
    paths = httpx.get(f"{url}/openapi.json", timeout=5).json()["paths"]
    assert {"/healthz", "/readyz", "/passes", "/people", "/watchlist"} <= set(paths)

    # the site's plan, a staff member and a token, made with the CLI reading the same ./anfang.yaml
    plan = {
        "site": "testsite",
        "buildings": [{"id": "b1", "name": "1栋", "units": 1}],
        "households": [{"id": "h1", "building": "b1", "unit": 1, "room": "101"}],
    }
    (running.workdir / "plan.yaml").write_text(yaml.safe_dump(plan, allow_unicode=True), encoding="utf-8")
    running.cli("community", "import", "plan.yaml")
    staff = json.loads(running.cli("community", "person", "add", "staff", "--id", "p-guard").stdout)
    assert staff["id"] == "p-guard"
    token = json.loads(running.cli("community", "token", "create", "p-guard").stdout)["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{url}/me", headers={"Authorization": "Bearer afc_forged"}, timeout=5).status_code == 401
    me = httpx.get(f"{url}/me", headers=auth, timeout=5)
    assert me.status_code == 200 and me.json()["role"] == "staff"
    created = httpx.post(
        f"{url}/people",
        headers=auth,
        timeout=5,
        json={"role": "owner", "household_id": "h1", "name": "王芳", "phone": "13800001111", "face_consent": False},
    )
    assert created.status_code == 201, created.text
    assert created.json()["pin"]  # no face consent: another way in
    # what the API registered is what the platform's site holds: the household now has its owner
    household = httpx.get(f"{url}/households/h1", headers=auth, timeout=5).json()
    assert [m["name"] for m in household["members"]] == ["王芳"]


def test_compose_healthcheck_command_passes_against_the_running_platform(running: Running) -> None:
    _wait_ready(running.url)
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    test = compose["services"]["platform"]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    argv = test[1:] if test[0] == "CMD" else shlex.split(test[1])
    assert argv[0] == "anfang", "the healthcheck uses the platform's own probe"
    # inside the container ANFANG_API_BIND is 0.0.0.0:8080; here it is this test's port, via the config file
    probe = subprocess.run(
        [ANFANG, *argv[1:]], env=running.env, cwd=running.workdir, capture_output=True, text=True, timeout=30
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["status"] == "ready"


def test_readiness_reports_a_lost_broker_with_a_reason(tmp_path: Path) -> None:
    """The broker goes away under a running platform: still alive, no longer ready, and the probe says
    which part is missing."""
    api_port, broker_port = free_port(), free_port()
    env = {
        **_clean_env(),
        "ANFANG_DATA_DIR": str(tmp_path / "data"),
        "ANFANG_API_BIND": f"127.0.0.1:{api_port}",
        "ANFANG_EMBEDDED_BROKER": "false",
        "ANFANG_MQTT_PORT": str(broker_port),
    }
    broker = start_mosquitto(env, tmp_path, broker_port)
    proc = PlatformProcess(env, tmp_path)
    try:
        proc.start(timeout=90)
        url = f"http://127.0.0.1:{api_port}"
        _wait_ready(url)
        broker.stop()
        deadline = time.monotonic() + 60
        while (r := httpx.get(f"{url}/readyz", timeout=5)).status_code == 200:
            assert time.monotonic() < deadline, "still ready without a broker"
            time.sleep(0.2)  # polling the probe, as an orchestrator does
        assert r.status_code == 503 and r.json()["status"] == "not ready"
        checks = r.json()["checks"]
        assert checks["database"] == "ok" and "broker" in checks["broker"]
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        probe = subprocess.run(
            [ANFANG, "health", "--ready"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
        )
        assert probe.returncode == 1 and "not ready" in probe.stdout
    finally:
        proc.stop()
        broker.stop()


def test_a_taken_api_port_is_reported_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **_clean_env(),
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_BROKER_BIND": f"127.0.0.1:{free_port()}",
        }
        out = subprocess.run(
            [ANFANG, "run", "--api-bind", f"127.0.0.1:{port}"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 1
    assert f"cannot serve the HTTP API on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr
