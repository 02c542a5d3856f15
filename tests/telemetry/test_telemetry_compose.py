"""docker-compose.yml consistency (Docker does not run here, so the file itself is checked)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from telemetry.dashboards import DATASOURCE_UID, build_dashboards

REPO = Path(__file__).resolve().parents[2]
# The platform settings documented in the protocol brief; anfang.config.ENV_VARS is the authority.
DOCUMENTED_ENV = {
    "ANFANG_SITE", "ANFANG_DATA_DIR", "ANFANG_DATABASE_URL", "ANFANG_MQTT_HOST", "ANFANG_MQTT_PORT",
    "ANFANG_MQTT_USERNAME", "ANFANG_MQTT_PASSWORD", "ANFANG_EMBEDDED_BROKER", "ANFANG_BROKER_BIND",
    "ANFANG_INFLUX_URL", "ANFANG_INFLUX_TOKEN", "ANFANG_INFLUX_ORG", "ANFANG_INFLUX_BUCKET",
    "ANFANG_TELEMETRY_FILE", "ANFANG_TELEMETRY_SPOOL_DIR", "ANFANG_TELEMETRY_SPOOL_MAX_MB", "ANFANG_LOG_LEVEL",
    "ANFANG_SECRET_KEY", "ANFANG_RULES_DIR", "ANFANG_COMMUNITY_FILE", "ANFANG_API_BIND",
    "ANFANG_MOSQUITTO_DIR", "ANFANG_TLS_API",
}  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    return {str(k): str(v) for k, v in env.items()}


def test_the_whole_stack_is_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"broker-config", "demo-provision", "mosquitto", "influxdb", "grafana", "platform",
                             "simulator"}  # fmt: skip
    assert services["simulator"]["profiles"] == services["demo-provision"]["profiles"] == ["demo"]
    assert services["simulator"]["command"][:2] == ["sim", "run"]
    assert services["demo-provision"]["command"][:2] == ["sim", "provision"]
    # the simulated devices are registered before Mosquitto's passwd is written and before they play
    assert services["broker-config"]["depends_on"]["demo-provision"] == {
        "condition": "service_completed_successfully", "required": False}  # fmt: skip
    assert services["simulator"]["depends_on"]["demo-provision"]["condition"] == "service_completed_successfully"
    assert services["platform"]["command"][:2] == ["run", "--external-broker"]
    assert services["platform"]["command"][2].startswith("mosquitto:")
    published = {name: s.get("ports", []) for name, s in services.items()}
    # beyond this host only what people and devices use: MQTT, Grafana, the platform's API
    wide = {name for name, ports in published.items() for p in ports if not p.startswith("127.0.0.1:")}
    assert wide == {"mosquitto", "grafana", "platform"}
    assert published["influxdb"] == ["127.0.0.1:8086:8086"]
    host_ports = [p.rsplit(":", 2)[-2] for ps in published.values() for p in ps]
    assert len(host_ports) == len(set(host_ports))
    for name, service in services.items():  # long-running services are health-checked
        if name not in ("broker-config", "demo-provision", "simulator"):
            assert service["healthcheck"]["test"], name
    assert services["platform"]["healthcheck"]["test"] == ["CMD", "anfang", "health", "--ready"]  # /readyz
    assert services["platform"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"
    assert services["mosquitto"]["depends_on"]["broker-config"]["condition"] == "service_completed_successfully"
    build = services["broker-config"]["build"]
    assert (REPO / build["context"] / build["dockerfile"]).is_file()


def test_every_piece_of_state_is_on_a_volume_and_bind_mounts_exist(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source} missing from the repo"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
                used.add((source, target))
    assert declared == {s for s, _ in used}
    targets = {t for _, t in used}
    assert {"/data", "/mosquitto/data", "/var/lib/influxdb2", "/var/lib/grafana", "/mosquitto/auth"} <= targets


def test_anfang_variables_are_ones_the_platform_reads(compose: dict[str, Any]) -> None:
    names = set(re.findall(r"\bANFANG_[A-Z0-9_]+", (REPO / "docker-compose.yml").read_text()))
    assert names, "compose sets no ANFANG_* variable"
    assert names <= DOCUMENTED_ENV, names - DOCUMENTED_ENV
    config = pytest.importorskip("anfang.config", reason="anfang.config (the lead's) not importable")
    assert names <= set(config.ENV_VARS), names - set(config.ENV_VARS)


def test_influx_grafana_and_platform_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    influx, grafana, platform = _env(services["influxdb"]), _env(services["grafana"]), _env(services["platform"])
    assert influx["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    bucket, org = influx["DOCKER_INFLUXDB_INIT_BUCKET"], influx["DOCKER_INFLUXDB_INIT_ORG"]
    assert platform["ANFANG_INFLUX_BUCKET"] == bucket == grafana["INFLUX_DB"]
    assert platform["ANFANG_INFLUX_ORG"] == org
    assert platform["ANFANG_INFLUX_TOKEN"] == influx["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == grafana["INFLUX_TOKEN"]
    assert platform["ANFANG_INFLUX_URL"] == grafana["INFLUX_URL"] == "http://influxdb:8086"
    assert platform["ANFANG_MQTT_USERNAME"] == "anfang-platform"
    assert platform["ANFANG_EMBEDDED_BROKER"] == "false" and platform["ANFANG_MQTT_HOST"] == "mosquitto"
    assert "${" in platform["ANFANG_MQTT_PASSWORD"]  # secrets come from .env, never the file


def test_grafana_provisioning_matches_the_dashboards(compose: dict[str, Any]) -> None:
    mounts = dict(m.split(":")[:2] for m in compose["services"]["grafana"]["volumes"])
    ds_dir = REPO / next(s for s, t in mounts.items() if t == "/etc/grafana/provisioning/datasources")
    datasource = yaml.safe_load((ds_dir / "anfang.yml").read_text())["datasources"][0]
    assert datasource["uid"] == DATASOURCE_UID and datasource["jsonData"]["version"] == "InfluxQL"
    for var in re.findall(r"\$\{(\w+)\}", (ds_dir / "anfang.yml").read_text()):
        assert var in _env(compose["services"]["grafana"]), var
    dash_dir = REPO / next(s for s, t in mounts.items() if t == "/etc/grafana/provisioning/dashboards")
    provider = yaml.safe_load((dash_dir / "anfang.yml").read_text())["providers"][0]
    json_source = next(s for s, t in mounts.items() if t == provider["options"]["path"])
    files = {p.stem for p in (REPO / json_source).glob("*.json")}
    assert files == {d.uid for d in build_dashboards()}
    home = _env(compose["services"]["grafana"])["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).name in {f"{f}.json" for f in files}


def test_mosquitto_uses_the_generated_password_and_acl_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    conf_mount = next(m for m in services["mosquitto"]["volumes"] if m.endswith("mosquitto.conf:ro"))
    conf = (REPO / conf_mount.split(":")[0]).read_text()
    out_dir = services["broker-config"]["command"][services["broker-config"]["command"].index("--out") + 1]
    assert f"password_file {out_dir}/passwd" in conf and f"acl_file {out_dir}/acl" in conf
    assert "allow_anonymous false" in conf
    auth_volume = {m.split(":")[0] for m in services["broker-config"]["volumes"] if m.split(":")[1] == out_dir}
    assert auth_volume == {m.split(":")[0] for m in services["mosquitto"]["volumes"] if m.split(":")[1] == out_dir}


def test_docs_describe_every_dashboard_panel() -> None:
    docs = (REPO / "docs" / "telemetry.md").read_text()
    for dash in build_dashboards():
        assert dash.title in docs
        for panel in dash.panels:
            assert f"| {panel.title} | {panel.kind} | {panel.description} |" in docs, panel.title
    assert "grafana-api" in docs and "2020" in docs
    assert "docker compose up" in (REPO / "docs" / "deploy.md").read_text()
