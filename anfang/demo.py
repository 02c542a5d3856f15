"""``anfang demo``: the platform on its embedded defaults with the simulated pilot community driving it.

Three processes, as a deployment would run them: the platform (``anfang run``: embedded broker,
SQLite), provisioning of the community's devices and people (``anfang sim provision``), and the
simulator playing the community's day (``anfang sim run --speed S``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from broker.embedded import BrokerError, check_port_free, split_bind

ANFANG = [sys.executable, "-m", "anfang.cli"]


class DemoError(Exception):
    """A step of the demo failed; the message says which and why."""


def _start_platform(env: dict[str, str], log_to: Path, timeout: float = 60) -> tuple[subprocess.Popen[str], str]:
    """``anfang run`` started and ready; with the address of its HTTP API (from its log)."""
    ready = threading.Event()
    api: list[str] = []
    proc = subprocess.Popen([*ANFANG, "run"], env=env, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []

    def follow() -> None:
        assert proc.stderr is not None
        with log_to.open("a", encoding="utf-8") as log:
            for line in proc.stderr:
                log.write(line)
                log.flush()
                tail.append(line)
                del tail[:-20]
                if "platform ready" in line:
                    ready.set()
                if (found := re.search(r"HTTP API on (\S+)", line)) is not None:
                    api.append(found.group(1))

    threading.Thread(target=follow, daemon=True).start()
    while not ready.wait(0.5):
        if proc.poll() is not None:
            raise DemoError("the platform stopped while starting:\n" + "".join(tail))
        timeout -= 0.5
        if timeout <= 0:
            proc.terminate()
            raise DemoError("the platform did not become ready within a minute:\n" + "".join(tail))
    return proc, api[0] if api else "(off)"


def _free_bind(bind: str, what: str, fallback: int) -> str:
    """``bind`` if its port is free, else the first free port from ``fallback`` (a system Mosquitto often
    holds 1883, another web server 8080)."""
    host, port = split_bind(bind)
    for candidate in (port, *range(fallback, fallback + 100)):
        try:
            check_port_free(host, candidate)
        except BrokerError:
            continue
        if candidate != port:
            print(f"{host}:{port} is taken; {what} uses {host}:{candidate}", flush=True)
        return f"{host}:{candidate}"
    raise DemoError(f"no free port for {what} near {bind}")


def run_demo(community: str, speed: float, data_dir: Path, broker_bind: str, api_bind: str = "127.0.0.1:8080") -> int:
    """Provision, start the platform, play the community; returns an exit code. Ctrl-C stops it."""
    env = dict(os.environ)
    env["ANFANG_DATA_DIR"] = str(data_dir)
    env["ANFANG_EMBEDDED_BROKER"] = "true"
    env["ANFANG_BROKER_BIND"] = _free_bind(broker_bind, "the demo's embedded broker", 18830)
    if api_bind.lower() not in ("", "off", "none"):
        env["ANFANG_API_BIND"] = _free_bind(api_bind, "the platform's HTTP API", 18080)
    data_dir.mkdir(parents=True, exist_ok=True)
    log_file = data_dir / "platform.log"
    print(f"provisioning {community} (devices, residents, vehicles, credentials) ...", flush=True)
    provisioned = subprocess.run([*ANFANG, "sim", "provision", community], env=env, text=True, capture_output=True)
    if provisioned.returncode != 0:
        raise DemoError(f"provisioning failed:\n{provisioned.stderr or provisioned.stdout}")
    print(provisioned.stdout.strip(), flush=True)
    platform, api = _start_platform(env, log_file)
    print(f"platform ready (log: {log_file}); HTTP API on {api} (/docs, /readyz)", flush=True)
    print(f"playing the community at {speed:g}x — Ctrl-C to stop", flush=True)
    # a whole day from the morning rush (07:00 at the site, UTC+8), so there is something to see at once
    morning = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).replace(hour=7, minute=0, second=0, microsecond=0)
    sim = subprocess.Popen(
        [
            *ANFANG,
            "sim",
            "run",
            community,
            "--speed",
            str(speed),
            "--start",
            morning.isoformat(),
            "--duration",
            "86400",
        ],
        env=env,
    )
    try:
        return sim.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in (sim, platform):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in (sim, platform):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
