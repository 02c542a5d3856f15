"""Start a private Mosquitto on a free port (tests and the fleet bench; never the system's 1883)."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

MOSQUITTO = "/usr/sbin/mosquitto"


class BrokerStartError(RuntimeError):
    """Mosquitto did not start accepting connections in time."""

    def __init__(self, port: int, output: str) -> None:
        super().__init__(f"mosquitto on port {port} did not start: {output[-2000:]}")
        self.port = port
        self.output = output


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, deadline_s: float = 10.0) -> bool:
    """Poll until ``host:port`` accepts a TCP connection or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


@dataclass
class Mosquitto:
    """``with Mosquitto() as broker:`` runs ``mosquitto -c`` with ``allow_anonymous true``.

    ``fleet=True`` raises the queue/in-flight limits and allows unlimited connections, as the
    fleet bench needs (the default ``max_queued_messages 1000`` drops QoS 1 bursts).
    """

    fleet: bool = False
    extra_config: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Mosquitto:
        self._tmp = tempfile.TemporaryDirectory(prefix="anfang-mosq-")
        self.port = self.port or free_port()
        lines = [
            f"listener {self.port} {self.host}",
            "allow_anonymous true",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        if self.fleet:
            lines += [
                "max_connections -1",
                "max_queued_messages 100000",
                "max_inflight_messages 1000",
                "set_tcp_nodelay true",
            ]
        lines += self.extra_config
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        log_path = Path(self._tmp.name) / "mosquitto.log"
        with log_path.open("wb") as log_file:
            self._proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=log_file)
        if not wait_for_port(self.host, self.port):
            self.__exit__(None, None, None)
            raise BrokerStartError(self.port, log_path.read_text(errors="replace"))
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
