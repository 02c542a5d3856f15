"""deploy/district/docker-compose.yml: one site, three workers in separate containers, Mosquitto and
PostgreSQL. Checked statically (what the workers share and what each has of its own), then its command
lines are run without Docker as compose would start them — the three ``broker-config`` one-shots, then
Mosquitto with the files they wrote, then the three workers — with service names mapped to 127.0.0.1,
and every worker's healthcheck (``anfang health --ready``: /readyz) must pass while the six partitions
are split between them. With Docker's compose plugin, ``docker compose config`` must accept the file."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from process_kit import ANFANG, PlatformProcess, fresh_postgres_database, partitions_served, until
from testkit import Mosquitto, free_port

REPO = Path(__file__).resolve().parents[2]
DISTRICT = REPO / "deploy" / "district"
WORKERS = ("worker-1", "worker-2", "worker-3")
CONFIGS = ("broker-config-1", "broker-config-2", "broker-config-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DISTRICT / "docker-compose.yml").read_text())
    return data


def _dotenv() -> dict[str, str]:
    lines = (DISTRICT / "env.example").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {
        k: ("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" if k == "ANFANG_SECRET_KEY" else v) for k, v in pairs.items()
    }


def _substitute(value: str, dotenv: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in dotenv:
            return dotenv[name]
        assert op != ":?", f"compose would refuse to start: {arg}"
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def test_three_workers_of_one_site_share_what_they_must_and_have_their_own_accounts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [services[w]["environment"] for w in WORKERS]
    shared = ("ANFANG_SITE", "ANFANG_DATABASE_URL", "ANFANG_PARTITIONS", "ANFANG_SECRET_KEY", "ANFANG_MQTT_HOST")
    for key in shared:
        assert len({str(env[key]) for env in envs}) == 1, f"the workers differ in {key}"
    assert int(envs[0]["ANFANG_PARTITIONS"]) >= len(WORKERS)  # none of the three stands by without a partition
    assert (
        envs[0]["ANFANG_DATABASE_URL"].startswith("postgres://") and "@postgres:5432/" in envs[0]["ANFANG_DATABASE_URL"]
    )
    assert envs[0]["ANFANG_EMBEDDED_BROKER"] == "false"
    assert len({env["ANFANG_WORKER_INDEX"] for env in envs}) == 3
    accounts = [env["ANFANG_MQTT_USERNAME"] for env in envs]
    assert len(set(accounts)) == 3, "each worker has its own MQTT account"
    created = [services[c]["environment"]["ANFANG_MQTT_USERNAME"] for c in CONFIGS]
    assert sorted(created) == sorted(accounts), "every worker's account is written to Mosquitto's files"
    for worker, env in zip(WORKERS, envs, strict=True):
        config = next(
            c for c in CONFIGS if services[c]["environment"]["ANFANG_MQTT_USERNAME"] == env["ANFANG_MQTT_USERNAME"]
        )
        assert services[config]["environment"]["ANFANG_MQTT_PASSWORD"] == env["ANFANG_MQTT_PASSWORD"], worker
        assert "${" in env["ANFANG_MQTT_PASSWORD"], "no password in clear in the compose file"
        assert services[worker]["healthcheck"]["test"] == ["CMD", "anfang", "health", "--ready"]
        assert services[worker]["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    mosquitto = services["mosquitto"]
    assert "../mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in mosquitto["volumes"]
    conf = (REPO / "deploy" / "mosquitto" / "mosquitto.conf").read_text()
    for setting in ("persistence true", "max_queued_messages", "max_inflight_messages", "listener 1884"):
        assert setting in conf, setting
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    used = set(re.findall(r"\$\{(\w+):\?", (DISTRICT / "docker-compose.yml").read_text()))
    assert used <= set(_dotenv()), f"env.example lacks {used - set(_dotenv())}"


def test_docker_compose_accepts_the_file_where_docker_exists() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode:
        pytest.skip("no docker compose here; the command lines are run without it below")
    out = subprocess.run(
        [docker, "compose", "-f", str(DISTRICT / "docker-compose.yml"), "--env-file", str(DISTRICT / "env.example"),
         "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    async with fresh_postgres_database("anfang_district") as url:
        yield url


@pytest.mark.postgres
@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_district_comes_up_from_its_command_lines(
    compose: dict[str, Any], tmp_path: Path, pg_url: str
) -> None:
    services, dotenv, port = compose["services"], _dotenv(), free_port()
    paths = {"/data": tmp_path / "data", "/mosquitto/auth": tmp_path / "auth"}

    def local(value: str) -> str:
        for inside, outside in paths.items():
            if value == inside or value.startswith(inside + "/"):
                return str(outside) + value[len(inside) :]
        return value.replace("mosquitto:1884", f"127.0.0.1:{port}")

    def env(service: str, api_port: int | None = None) -> dict[str, str]:
        out = {k: local(_substitute(str(v), dotenv)) for k, v in services[service]["environment"].items()}
        out |= {"ANFANG_DATABASE_URL": pg_url, "ANFANG_MQTT_HOST": "127.0.0.1", "ANFANG_MQTT_PORT": str(port)}
        if api_port is not None:
            out["ANFANG_API_BIND"] = f"127.0.0.1:{api_port}"
        return {"PATH": "/usr/bin:/bin", **out}

    def argv(service: str) -> list[str]:
        return [ANFANG, *(local(str(a)) for a in services[service]["command"])]

    for config in CONFIGS:  # in the order of their depends_on
        done = await asyncio.to_thread(
            subprocess.run, argv(config), env=env(config), cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
    auth = paths["/mosquitto/auth"]
    accounts = (auth / "services.passwd").read_text()
    assert all(f"anfang-worker-{i}:" in accounts for i in (1, 2, 3))
    # one listener here stands in for the file's devices' and service listeners
    (auth / "passwd").write_text((auth / "passwd").read_text() + accounts)
    broker = Mosquitto(auth, port=port)
    broker.start()
    api_ports = {w: free_port() for w in WORKERS}
    workers = {w: PlatformProcess(env(w, api_ports[w]), tmp_path, own_api_port=False) for w in WORKERS}
    try:
        for worker in workers.values():
            worker.start(wait_ready=False)

        def healthy(worker: str) -> bool:
            test = services[worker]["healthcheck"]["test"]
            check = [ANFANG if a == "anfang" else a for a in test[1:]]
            return (
                subprocess.run(check, env=env(worker, api_ports[worker]), capture_output=True, timeout=30).returncode
                == 0
            )

        await until(lambda: sorted(len(partitions_served(w)) for w in workers.values()) == [2, 2, 2], 240, "2 each")
        await until(lambda: all(healthy(w) for w in WORKERS), 120, "every worker's healthcheck passes")
    finally:
        for worker in workers.values():
            worker.stop()
        broker.stop()
    assert not any("Traceback" in line for w in workers.values() for line in w.log)
