"""Real time-series servers for the telemetry tests, each started on a free port in a tmp dir.

Install them with ``scripts/install-tsdb.sh`` (Debian: victoria-metrics, influxdb 1.x); tests
that need a missing binary are skipped with that reason.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http(method: str, url: str, data: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _wait_http(url: str, ok: set[int], proc: subprocess.Popen[bytes], log: Path, within: float = 30.0) -> None:
    """Poll ``url`` until it answers with a status in ``ok`` (the server is then ready)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            status, _ = _http("GET", url, timeout=1.0)
            if status in ok:
                return
        except OSError:
            pass
        time.sleep(0.05)  # polling a foreign process's readiness: there is no event to wait on
    raise TimeoutError(f"{url} not ready after {within}s: {log.read_text()[-2000:]}")


class VictoriaMetrics:
    """A victoria-metrics process; stop()/start() keep the port and the data directory."""

    def __init__(self, binary: str, data_dir: Path) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / "vm.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, f"-storageDataPath={self.data_dir}", f"-httpListenAddr=127.0.0.1:{self.port}",
                 "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_http(f"{self.url}/health", {200}, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def force_flush(self) -> None:
        status, body = _http("GET", f"{self.url}/internal/force_flush")
        assert status == 200, body

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of every series matching ``match`` (one dict per series)."""
        self.force_flush()
        end = str(int(time.time()) + 2 * 86_400)  # points stamped by accelerated simulator clocks lie ahead
        query = urllib.parse.urlencode({"match[]": match, "start": "0", "end": end})
        status, body = _http("GET", f"{self.url}/api/v1/export?{query}")
        assert status == 200, body
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


class InfluxV1:
    """An influxd 1.x process with one database, for running InfluxQL."""

    def __init__(self, binary: str, root: Path, database: str = "anfang") -> None:
        self.binary = binary
        self.root = root
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = root / "influxd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        config = self.root / "influxdb.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{free_port()}"
[meta]
  dir = "{self.root}/meta"
[data]
  dir = "{self.root}/data"
  wal-dir = "{self.root}/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  log-enabled = false
[monitor]
  store-enabled = false
"""
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT)
        _wait_http(f"{self.url}/ping", {204}, self.proc, self.log)
        self.query(f'CREATE DATABASE "{self.database}"', db=None)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None

    def write(self, lines: str) -> None:
        status, body = _http("POST", f"{self.url}/write?db={self.database}&precision=ns", lines.encode())
        assert status == 204, body

    def query(self, q: str, db: str | None = "") -> dict[str, Any]:
        params = {"q": q}
        if db is not None:
            params["db"] = db or self.database
        status, body = _http("POST", f"{self.url}/query", urllib.parse.urlencode(params).encode())
        result: dict[str, Any] = json.loads(body)
        result["_status"] = status
        return result


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: run scripts/install-tsdb.sh (apt-get install victoria-metrics influxdb)")
    return path


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(_binary("victoria-metrics"), tmp_path / "vm-data")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture(scope="module")
def influx_v1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    server = InfluxV1(_binary("influxd"), tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
