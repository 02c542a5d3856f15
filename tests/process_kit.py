"""``anfang`` as real processes, for crash and failover tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from testkit import Device, Mosquitto

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

ANFANG = str(Path(sys.executable).parent / "anfang")


class PlatformProcess:
    """``anfang run`` as a real process, with its log watched for readiness."""

    def __init__(self, env: dict[str, str], cwd: Path, *, own_api_port: bool = True) -> None:
        """``own_api_port``: serve the HTTP API on a free port unless ``env`` names one (8080, the default,
        may be taken on a shared machine); off when the test configures it in a file."""
        self.env, self.cwd, self._own_api_port = env, cwd, own_api_port
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.ready = threading.Event()
        self.standing_by = threading.Event()
        self.api_port: int | None = None  # where its HTTP API listens (from its log)

    def start(self, timeout: float = 30, wait_ready: bool = True) -> None:
        ready = threading.Event()
        env = {"ANFANG_API_BIND": "127.0.0.1:0", **self.env} if self._own_api_port else self.env
        self.proc = subprocess.Popen(
            [ANFANG, "run"], env=env, cwd=self.cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )

        def watch(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.log.append(line)
                if "platform ready" in line:
                    ready.set()
                if (api := re.search(r"HTTP API on https?://\S+:(\d+)", line)) is not None:
                    self.api_port = int(api.group(1))
                if "standing by" in line:
                    self.standing_by.set()

        threading.Thread(target=watch, args=(self.proc.stderr,), daemon=True).start()
        self.ready = ready
        if wait_ready and not ready.wait(timeout):
            self.kill()
            raise AssertionError("platform did not start:\n" + "".join(self.log[-30:]))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def partitions_served(proc: PlatformProcess) -> set[int]:
    """The partitions a worker serves now, from its log (it names each one it starts and hands off)."""
    served: set[int] = set()
    for line in list(proc.log):
        if (started := re.search(r"serving partition (\d+) of", line)) is not None:
            served.add(int(started.group(1)))
        elif (handed := re.search(r"handed partition (\d+) of", line)) is not None:
            served.discard(int(handed.group(1)))
    return served


async def until(check: Callable[[], object], timeout: float, what: str) -> None:
    """Wait for ``check()`` to hold (it reads other processes' state, so it is polled)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if check():
                    return
                await asyncio.sleep(0.1)  # polling other processes' progress
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}") from None


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run([ANFANG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def site_env(port: int, database_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a site's worker: this machine's without any ``ANFANG_`` setting, the site
    ``youzheng`` on ``database_url``, an external broker on ``port`` and the HTTP API on a port of its
    own, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        {
            "ANFANG_SITE": "youzheng",
            "ANFANG_DATABASE_URL": database_url,
            "ANFANG_EMBEDDED_BROKER": "false",
            "ANFANG_MQTT_PORT": str(port),
            "ANFANG_LOG_LEVEL": "INFO",
            "ANFANG_API_BIND": "127.0.0.1:0",
            **extra,
        }
    )
    return env


def add_device(env: dict[str, str], cwd: Path, device_id: str, kind: str) -> str:
    """Register a device with ``anfang devices add``; returns its secret."""
    match = re.search(r"secret: (\S+)", cli(env, cwd, "devices", "add", device_id, "--kind", kind))
    assert match, f"no secret printed for {device_id}"
    return match.group(1)


def start_mosquitto(env: dict[str, str], cwd: Path, port: int) -> Mosquitto:
    """Mosquitto on ``port`` with the password and ACL files ``anfang broker mosquitto-config`` writes, every
    account on the one listener (the devices' and the platform's listeners apart: test_core_broker_security)."""
    cli(env, cwd, "broker", "mosquitto-config", "--out", str(cwd / "mq"), "--service-listener", "none")
    broker = Mosquitto(cwd / "mq", port=port)
    broker.start()
    return broker


def operator_credentials(env: dict[str, str]) -> tuple[str, str]:
    secret = (Path(env["ANFANG_DATA_DIR"]) / "secrets" / "anfang-operator.secret").read_text().strip()
    return "anfang-operator", secret


async def document_when(
    port: int,
    env: dict[str, str],
    device_id: str,
    last_seq: int,
    timeout: float = 30,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Ask the platform (as the operator, over MQTT) for a twin until it has applied ``last_seq``
    (and ``until`` holds for it)."""
    op = Device("127.0.0.1", port, *operator_credentials(env), site="youzheng", client_id="op", will=False)
    assert await op.connect() == 0
    try:
        await op.subscribe(f"anfang/youzheng/{device_id}/twin/document")
        async with asyncio.timeout(timeout):
            while True:
                op.publish(f"anfang/youzheng/{device_id}/twin/get", {"client_token": "x"}, raw_topic=True)
                _, doc = await op.expect(r"/twin/document$")
                if doc["last_seq"] == last_seq and (until is None or until(doc)):
                    return dict(doc)
                await asyncio.sleep(0.1)  # the platform in another process is still draining its backlog
    finally:
        op.close()


@contextlib.asynccontextmanager
async def fresh_postgres_database(prefix: str) -> AsyncIterator[str]:
    """A new PostgreSQL database on 127.0.0.1:5432 for one test (skips when no server runs there)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = await asyncpg.connect(PG_ADMIN)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL server at 127.0.0.1:5432 ({exc})")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
