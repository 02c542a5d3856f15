"""``anfang demo``: the platform on its embedded defaults with the simulated pilot community driving it.

Three processes, as a deployment would run them: the platform (``anfang run``: embedded broker,
SQLite), provisioning of the community's devices and people (``anfang sim provision``), and the
simulator playing the community's day (``anfang sim run --speed S``). It prints where the web console is
with a demo staff sign-in and a resident's one-time link, keeps a one-line live status (decisions,
open alarms, devices online, read from the database) and plays an incident (an elderly resident
wandering out of the north gate) within its first minute, so a newcomer sees an alarm arrive.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

from anfang.site_setup import PILOT_SITE_FILE
from broker.embedded import BrokerError, check_port_free, split_bind
from twins.kinds import VIRTUAL_KINDS
from twins.site import read_site_file

ANFANG = [sys.executable, "-m", "anfang.cli"]
DEMO_STAFF = "demo-staff"
INCIDENT = "elderly-wanders-off"
INCIDENT_AFTER_S = 40.0  # the day is under way, the console open: then the incident
STATUS_EVERY_S = 15.0


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


def _people(community: str) -> tuple[str | None, str | None]:
    """A staff member and a resident (owner) of the community, for the demo sign-ins (from the site file's
    roster, read as data: the demo composes the platform and the simulator as processes, importing neither's
    internals into the other)."""
    path = Path(community) if Path(community).exists() else PILOT_SITE_FILE.with_name(f"{community}.yaml")
    people = read_site_file(path).get("people") or []
    staff = next((str(p["id"]) for p in people if p.get("role") == "staff"), None)
    owner = next((str(p["id"]) for p in people if p.get("role") == "owner"), None)
    return staff, owner


def _cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    out = subprocess.run([*ANFANG, *args], env=env, text=True, capture_output=True, input=stdin, timeout=120)
    if out.returncode != 0:
        raise DemoError(f"anfang {' '.join(args[:3])} failed:\n{out.stderr or out.stdout}")
    return out.stdout.strip()


def live_status(db: Path) -> str:
    """One line: access decisions so far, open alarms, devices online (read-only from the SQLite file)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            decisions = conn.execute("SELECT COUNT(*) FROM access_decisions").fetchone()[0]
            alarms = conn.execute("SELECT COUNT(*) FROM alarms WHERE state <> 'cleared'").fetchone()[0]
            online = conn.execute(
                "SELECT COUNT(*) FROM twins WHERE json_extract(doc, '$.status') = 'online'"
            ).fetchone()[0]
            devices = conn.execute(
                f"SELECT COUNT(*) FROM devices WHERE kind NOT IN ({', '.join('?' for _ in VIRTUAL_KINDS)})",
                sorted(VIRTUAL_KINDS),
            ).fetchone()[0]
    except sqlite3.Error as exc:
        return f"status: (database busy: {exc})"
    counts = f"{decisions} access decisions, {alarms} open alarms, {online}/{devices} devices online"
    return f"status {dt.datetime.now():%H:%M:%S}: {counts}"


def _console_sign_ins(env: dict[str, str], community: str, api: str) -> str:
    """A demo staff account and a resident's one-time link; the lines that tell the newcomer."""
    staff, owner = _people(community)
    lines = [f"web console: {api}/console/"]
    if staff:
        password = secrets.token_urlsafe(9)
        _cli(env, "community", "users", "add", DEMO_STAFF, "--person", staff, "--password-stdin", stdin=password + "\n")
        lines.append(f"  staff sign-in: user {DEMO_STAFF}, password {password}  (alarms, history, access log)")
    if owner:
        link = _cli(env, "community", "users", "link", owner, "--base-url", api, "--by", "demo")
        lines.append(f"  resident {owner} (phone page, visitor QR codes; the link works once): {link}")
    return "\n".join(lines)


def _incident(env: dict[str, str], community: str, data_dir: Path, stop: threading.Event) -> None:
    """After a minute of the day, an elderly resident wanders out of the north gate."""
    if stop.wait(INCIDENT_AFTER_S):
        return
    secret_file = data_dir / "secrets" / "anfang-operator.secret"
    print(
        f"incident: {INCIDENT} — an elderly resident walks out of the north gate; watch the console's alarms",
        flush=True,
    )
    subprocess.run(
        [
            *ANFANG,
            "sim",
            "run",
            community,
            "--scenario",
            INCIDENT,
            "--username",
            "anfang-operator",
            "--password-file",
            str(secret_file),
        ],
        env=env,
        capture_output=True,
        check=False,
    )


def _status(db: Path, stop: threading.Event) -> None:
    while not stop.wait(STATUS_EVERY_S):
        print(live_status(db), flush=True)


def run_demo(community: str, speed: float, data_dir: Path, broker_bind: str, api_bind: str = "127.0.0.1:8080") -> int:
    """Provision, start the platform, play the community; returns an exit code. Ctrl-C stops it."""
    env = dict(os.environ)
    env["ANFANG_DATA_DIR"] = str(data_dir)
    env["ANFANG_EMBEDDED_BROKER"] = "true"
    # the simulated day runs at S times real time, stamped with its own clock: rules judge its events on
    # that time (pick-up windows, night), so they may be up to two days from the platform's clock
    env.setdefault("ANFANG_RULES_EVENT_SKEW_S", str(2 * 86400))
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
    stop = threading.Event()
    if api != "(off)":
        print(_console_sign_ins(env, community, api), flush=True)
    for task in (
        functools.partial(_incident, env, community, data_dir, stop),
        functools.partial(_status, data_dir / "anfang.db", stop),
    ):
        threading.Thread(target=task, daemon=True).start()
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
        stop.set()
        for proc in (sim, platform):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
        for proc in (sim, platform):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
