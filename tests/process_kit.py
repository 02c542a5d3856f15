"""``anfang`` as real processes, for crash and failover tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

ANFANG = str(Path(sys.executable).parent / "anfang")


class PlatformProcess:
    """``anfang run`` as a real process, with its log watched for readiness."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self.ready = threading.Event()
        self.standing_by = threading.Event()

    def start(self, timeout: float = 30, wait_ready: bool = True) -> None:
        ready = threading.Event()
        self.proc = subprocess.Popen([ANFANG, "run"], env=self.env, cwd=self.cwd, stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)

        def watch(stream: object) -> None:
            for line in stream:  # type: ignore[attr-defined]
                self.log.append(line)
                if "platform ready" in line:
                    ready.set()
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


def cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    out = subprocess.run([ANFANG, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout




def operator_credentials(env: dict[str, str]) -> tuple[str, str]:
    secret = (Path(env["ANFANG_DATA_DIR"]) / "secrets" / "anfang-operator.secret").read_text().strip()
    return "anfang-operator", secret
