"""The README's run command (`scripts/run` = `anfang demo`): provisioning, platform and simulator together."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from testkit import free_port

ANFANG = str(Path(sys.executable).parent / "anfang")


def _count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.timeout(300)  # four processes: demo, provisioning (`anfang site load`), platform, simulator
def test_demo_plays_the_pilot_community_into_the_platform(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update({"ANFANG_DATA_DIR": str(tmp_path / "data"), "ANFANG_BROKER_BIND": f"127.0.0.1:{free_port()}"})
    demo = subprocess.Popen(
        [ANFANG, "demo", "--speed", "1200"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    playing = threading.Event()
    status = threading.Event()

    def follow() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line)
            if "playing the community" in line:
                playing.set()
            if line.startswith("status ") and "devices online" in line:
                status.set()

    threading.Thread(target=follow, daemon=True).start()
    db = tmp_path / "data" / "anfang.db"
    try:
        assert playing.wait(240), "".join(lines)  # provisioning and the console sign-ins first; slow when busy
        deadline = time.monotonic() + 60
        # the demo runs in other processes; its database is the only thing to watch
        while _count(db, "SELECT COUNT(*) FROM access_decisions") == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        # the console's address with a staff sign-in that works, and the one-line live status
        text = "".join(lines)
        console = re.search(r"web console: (\S+)/console/", text)
        password = re.search(r"staff sign-in: user (\S+), password (\S+)", text)
        assert console and password, text
        signed_in = httpx.post(
            f"{console.group(1)}/console/login",
            data={"username": password.group(1), "password": password.group(2)},
            timeout=30,
        )
        assert signed_in.status_code == 303, signed_in.text
        assert "resident p0001" in text and "/console/r/" in text
        assert status.wait(60), "".join(lines)
    finally:
        demo.send_signal(signal.SIGINT)
        code = demo.wait(30)
    assert "provisioned 60 devices" in "".join(lines)
    assert _count(db, "SELECT COUNT(*) FROM device_events") > 0
    assert _count(db, "SELECT COUNT(*) FROM access_decisions") > 0, "".join(lines)
    assert code in (0, 130, -signal.SIGINT)
