"""The wheel as shipped: installed outside the checkout, it migrates, runs and takes a device report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
from installed import REPO, Installed
from testkit import free_port, wait_port

# the first test also builds and installs the wheel (session fixture): minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _cli(installed: Installed, env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [installed.anfang, *args], env=env, cwd=installed.home, capture_output=True, text=True, timeout=120
    )
    if ok:
        assert out.returncode == 0, f"anfang {' '.join(args)}: {out.stderr[-2000:]}"
    return out


def test_the_wheel_carries_what_the_platform_reads_at_run_time(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    wanted = {
        **{f"registry/migrations/{p.name}": p for p in (REPO / "migrations").glob("*.sql")},
        **{f"rules/builtin/{p.name}": p for p in (REPO / "rules" / "builtin").glob("*.yaml")},
        **{f"firmware_sim/communities/{p.name}": p for p in (REPO / "firmware_sim" / "communities").glob("*.yaml")},
        **{
            f"telemetry/grafana_files/{p.relative_to(REPO / 'dashboards')}": p
            for p in (REPO / "dashboards").rglob("*")
            if p.is_file()
        },
    }
    assert len(wanted) > 15
    assert set(wanted) <= names, sorted(set(wanted) - names)
    # the installed code reads its own copies, not a checkout's
    where = subprocess.run(
        [
            installed.python,
            "-c",
            "import registry.migrate as m, anfang.services as s; print(m.MIGRATIONS_DIR);print(s.BUILTIN_RULES)",
        ],
        env=installed.env(),
        cwd=installed.home,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(str(installed.venv) in p for p in where), where


def test_installed_platform_migrates_runs_and_applies_a_device_report(installed: Installed, tmp_path: Path) -> None:
    port = free_port()
    env = installed.env(ANFANG_DATA_DIR=str(tmp_path / "data"), ANFANG_BROKER_BIND=f"127.0.0.1:{port}")
    upgrade = _cli(installed, env, "db", "upgrade")
    assert re.search(r"applied: 0001_core, 0002_community", upgrade.stdout), upgrade.stdout
    assert "up to date" in _cli(installed, env, "db", "upgrade").stdout
    secret = re.search(
        r"secret: (\S+)", _cli(installed, env, "devices", "add", "door-b1-u1", "--kind", "door_lock").stdout
    )
    assert secret

    platform = subprocess.Popen(
        [installed.anfang, "run"],
        env=env,
        cwd=installed.home,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    log: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        assert platform.stderr is not None
        for line in platform.stderr:
            log.append(line)
            if "platform ready" in line:
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    try:
        assert ready.wait(90), "installed platform did not start:\n" + "".join(log[-40:])
        wait_port(port)
        report = {"seq": 1, "state": {"lock": "locked", "door": "closed"}}
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-i",
                "door-b1-u1",
                "-u",
                "door-b1-u1",
                "-P",
                secret.group(1),
                "-q",
                "1",
                "-t",
                "anfang/youzheng/door-b1-u1/twin/reported",
                "-m",
                json.dumps(report),
            ],
            check=True,
            timeout=30,
        )
        deadline = time.monotonic() + 30
        while True:  # the report is applied by another process: ask until it shows (or give up)
            doc = json.loads(_cli(installed, env, "twin", "get", "door-b1-u1").stdout)
            if doc["reported"].get("lock") == "locked" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert doc["reported"]["lock"] == "locked" and doc["reported"]["door"] == "closed", doc
        assert platform.poll() is None, "".join(log[-40:])
        assert not any("Traceback" in line for line in log), "".join(log)
    finally:
        platform.terminate()
        platform.wait(30)


def test_an_installation_without_migrations_fails_loudly(installed: Installed, tmp_path: Path) -> None:
    shipped = next((installed.venv / "lib").glob("python*/site-packages/registry/migrations"))
    hidden = tmp_path / "hidden-migrations"
    shutil.move(shipped, hidden)
    try:
        out = _cli(installed, installed.env(ANFANG_DATA_DIR=str(tmp_path / "data")), "db", "upgrade", ok=False)
    finally:
        shutil.move(hidden, shipped)
    assert out.returncode == 1
    assert "no migrations found" in out.stderr and "Traceback" not in out.stderr, out.stderr
