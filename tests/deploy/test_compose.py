"""docker-compose.yml as shipped, without Docker: every command line of the anfang image's services runs
with the compose environment (values from deploy/env.example) on anfang installed from its wheel, in the
order compose starts them (demo profile), and the healthchecks run against what they started.

Only the addresses change: service names become 127.0.0.1 with free ports, container paths become test
folders. Mosquitto runs with the passwd/acl the ``broker-config`` service wrote; InfluxDB is Debian's
1.x (the image's 2.x and Grafana cannot be installed here — their healthchecks are not run). With Docker
installed, ``docker compose config`` must accept the file too.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from installed import REPO, Installed
from telemetry_servers import InfluxV1, _binary
from testkit import Mosquitto, free_port

# the first test also builds and installs the wheel (session fixture): minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ANFANG_SERVICES = ("demo-provision", "broker-config", "platform", "simulator")


def _env_example() -> dict[str, str]:
    """deploy/env.example filled in as its comments say (a fresh secret for every ``replace-me``)."""
    pairs = (line.split("=", 1) for line in (REPO / "deploy" / "env.example").read_text().splitlines()
             if line and not line.startswith("#"))  # fmt: skip
    filled = {}
    for name, value in pairs:
        if value == "replace-me":
            value = base64.b64encode(os.urandom(32)).decode() if name == "ANFANG_SECRET_KEY" else os.urandom(24).hex()
        filled[name] = value
    return filled


def _substitute(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` with the .env values."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in dotenv:
            return dotenv[name]
        assert op != ":?", f"compose would refuse to start: {arg}"
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


class Stack:
    """The compose services' addresses mapped onto this machine."""

    def __init__(self, root: Path, installed: Installed, compose: dict[str, Any]) -> None:
        self.root, self.installed, self.compose = root, installed, compose
        self.paths = {"/data": root / "data", "/mosquitto/auth": root / "auth"}
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)
        self.mqtt_port, self.api_port = free_port(), free_port()
        self.influx_url = ""
        self.dotenv = _env_example()

    def _local(self, value: str) -> str:
        for inside, outside in self.paths.items():
            if value == inside or value.startswith(inside + "/"):
                return str(outside) + value[len(inside) :]
        return (value.replace("mosquitto:1883", f"127.0.0.1:{self.mqtt_port}")
                .replace("mosquitto:1884", f"127.0.0.1:{self.mqtt_port}")
                .replace("http://influxdb:8086", self.influx_url)
                .replace("0.0.0.0:8080", f"127.0.0.1:{self.api_port}"))  # fmt: skip

    def site_ca(self) -> ssl.SSLContext:
        """Trusts the site CA broker-config made (the API is served over HTTPS, as in production)."""
        return ssl.create_default_context(cafile=str(self.paths["/data"] / "tls" / "ca.crt"))

    def env(self, service: str) -> dict[str, str]:
        raw = self.compose["services"][service].get("environment", {})
        env = {k: self._local(_substitute(str(v), self.dotenv)) for k, v in raw.items()}
        if env.get("ANFANG_MQTT_HOST") == "mosquitto":
            env["ANFANG_MQTT_HOST"], env["ANFANG_MQTT_PORT"] = "127.0.0.1", str(self.mqtt_port)
        return self.installed.env(**env)

    def argv(self, service: str) -> list[str]:
        """The service's command line, run as the image runs it (ENTRYPOINT ``anfang``)."""
        command = self.compose["services"][service]["command"]
        return [self.installed.anfang, *(self._local(str(arg)) for arg in command)]

    def run(self, service: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(self.argv(service), env=self.env(service), cwd=self.installed.home,
                             capture_output=True, text=True, timeout=timeout)  # fmt: skip
        assert out.returncode == 0, f"{service}: {out.stderr[-3000:]}"
        return out

    def healthcheck(self, service: str) -> subprocess.CompletedProcess[str]:
        test = self.compose["services"][service]["healthcheck"]["test"]
        if test[0] == "CMD":
            argv = [self._local(a) for a in test[1:]]
            if argv[0] == "anfang":
                argv[0] = self.installed.anfang
            return subprocess.run(argv, env=self.env(service), capture_output=True, text=True, timeout=30)
        assert test[0] == "CMD-SHELL"
        shell = test[1].replace("127.0.0.1 1883", f"127.0.0.1 {self.mqtt_port}")
        return subprocess.run(["sh", "-c", shell], capture_output=True, text=True, timeout=30)


@pytest.fixture
def stack(tmp_path: Path, installed: Installed, compose: dict[str, Any]) -> Iterator[Stack]:
    yield Stack(tmp_path, installed, compose)


def _until(check: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        time.sleep(0.5)  # another process's state: poll it, as compose polls a healthcheck


def test_the_demo_stack_comes_up_from_its_command_lines(stack: Stack, tmp_path: Path) -> None:
    if shutil.which("nc") is None:
        pytest.skip("nc (netcat) not installed: Mosquitto's healthcheck uses it")
    # 1. demo-provision, then broker-config (it waits for demo-provision): passwd/acl know the devices
    provisioned = stack.run("demo-provision")
    assert "provisioned 60 devices" in provisioned.stdout
    stack.run("broker-config")
    auth = stack.paths["/mosquitto/auth"]
    passwd, services = (auth / "passwd").read_text(), (auth / "services.passwd").read_text()
    assert "door-b1-u1:" in passwd and "anfang-platform:" not in passwd  # devices' listener: devices only
    assert "anfang-platform:" in services and "door-b1-u1:" not in services
    # here one listener stands in for the compose file's two (devices 1883, platform 1884)
    (auth / "passwd").write_text(passwd + services)

    # 2. mosquitto with those files; its healthcheck
    mosquitto = Mosquitto(stack.paths["/mosquitto/auth"], port=stack.mqtt_port)
    mosquitto.start()
    influx = InfluxV1(_binary("influxd"), tmp_path / "influxd")
    influx.root.mkdir()
    platform: subprocess.Popen[str] | None = None
    simulator: subprocess.Popen[str] | None = None
    try:
        assert stack.healthcheck("mosquitto").returncode == 0
        influx.start()
        stack.influx_url = influx.url

        # 3. platform: not ready until it is, then its healthcheck (/readyz) passes
        log: list[str] = []
        platform = subprocess.Popen(stack.argv("platform"), env=stack.env("platform"), cwd=stack.installed.home,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        threading.Thread(target=lambda: log.extend(platform.stderr or []), daemon=True).start()  # type: ignore[union-attr]
        _until(lambda: stack.healthcheck("platform").returncode == 0, 120,
               "platform healthcheck never passed:\n" + "".join(log[-30:]))  # fmt: skip
        ready = httpx.get(f"https://127.0.0.1:{stack.api_port}/readyz", timeout=5, verify=stack.site_ca()).json()
        assert ready["status"] == "ready", ready

        # 4. simulator: the provisioned devices are let in by Mosquitto and reach the platform
        simulator = subprocess.Popen(stack.argv("simulator"), env=stack.env("simulator"), cwd=stack.installed.home,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip

        def received() -> float:
            text = httpx.get(f"https://127.0.0.1:{stack.api_port}/metrics", timeout=5, verify=stack.site_ca()).text
            match = re.search(r"^anfang_messages_received_total (\S+)$", text, re.M)
            return float(match.group(1)) if match else 0.0

        _until(lambda: received() > 50, 120, "the simulated devices' messages never reached the platform")
        assert simulator.poll() is None, simulator.stderr.read() if simulator.stderr else ""
        text = httpx.get(f"https://127.0.0.1:{stack.api_port}/metrics", timeout=5, verify=stack.site_ca()).text
        assert not re.search(r'^anfang_messages_rejected_total\{code="(401|403)"\} [1-9]', text, re.M)
        assert platform.poll() is None and not any("Traceback" in line for line in log), "".join(log)
    finally:
        for proc in (simulator, platform):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
        influx.stop()
        mosquitto.stop()


def test_docker_compose_accepts_the_file_where_docker_exists() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("Docker is not installed here; the command lines are run without it above")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("docker has no compose plugin here; the command lines are run without it above")
    env_file = REPO / "deploy" / "env.example"
    for profile in ([], ["--profile", "demo"]):
        out = subprocess.run([docker, "compose", "--env-file", str(env_file), *profile, "config", "--quiet"],
                             cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
