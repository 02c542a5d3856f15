"""The anfang command: config loading, device management, broker files, clear errors."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from testkit import free_port
from typer.testing import CliRunner

from anfang.cli import app
from anfang.config import ENV_VARS, ConfigError, load_settings

runner = CliRunner()


def test_defaults_need_no_file_and_env_overrides(tmp_path: Path) -> None:
    settings = load_settings(None, environ={})
    assert settings.broker.embedded and settings.broker.bind == "127.0.0.1:1883"
    assert settings.db_url.startswith("sqlite://")
    cfg = tmp_path / "a.yaml"
    cfg.write_text("site: demo\nmqtt:\n  port: 2883\n")
    settings = load_settings(cfg, environ={"ANFANG_MQTT_PORT": "3883", "ANFANG_EMBEDDED_BROKER": "false"})
    assert settings.site == "demo" and settings.mqtt.port == 3883 and not settings.broker.embedded
    assert "ANFANG_DATABASE_URL" in ENV_VARS


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("mqtt:\n  port: not-a-port\n")
    with pytest.raises(ConfigError, match=r"mqtt\.port"):
        load_settings(cfg, environ={})
    cfg.write_text("mqtt:\n  hots: x\n")
    with pytest.raises(ConfigError, match=r"mqtt\.hots"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match=r"workers\.partitions"):
        load_settings(None, environ={"ANFANG_PARTITIONS": "0"})
    with pytest.raises(ConfigError, match=r"workers\.index"):
        load_settings(None, environ={"ANFANG_WORKER_INDEX": "-1"})


def test_devices_add_list_show_rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ANFANG_BROKER_BIND", f"127.0.0.1:{free_port()}")  # no platform runs: nothing to cut
    added = runner.invoke(app, ["devices", "add", "gate-north", "--kind", "vehicle_gate", "--x", "130", "--y", "180"])
    assert added.exit_code == 0, added.output
    assert "secret: " in added.output
    dup = runner.invoke(app, ["devices", "add", "gate-north", "--kind", "vehicle_gate"])
    assert dup.exit_code == 1 and "already exists" in dup.output
    bad = runner.invoke(app, ["devices", "add", "x", "--kind", "toaster"])
    assert bad.exit_code == 1 and "unknown device kind" in bad.output
    listed = runner.invoke(app, ["devices", "list"])
    assert "gate-north" in listed.output and "vehicle_gate" in listed.output
    shown = runner.invoke(app, ["devices", "show", "gate-north"])
    assert '"kind": "vehicle_gate"' in shown.output and "secret" not in shown.output
    assert runner.invoke(app, ["devices", "show", "nope"]).exit_code == 1
    rotated = runner.invoke(app, ["devices", "rotate-secret", "gate-north"])
    assert rotated.exit_code == 0 and "secret: " in rotated.output
    assert runner.invoke(app, ["devices", "disable", "gate-north"]).exit_code == 0
    assert "disabled" in runner.invoke(app, ["devices", "list"]).output
    assert '"disabled": true' in runner.invoke(app, ["devices", "show", "gate-north"]).output
    assert runner.invoke(app, ["devices", "enable", "gate-north"]).exit_code == 0
    assert runner.invoke(app, ["devices", "add", "anfang-x", "--kind", "door_lock"]).exit_code == 1
    out = tmp_path / "mq"
    written = runner.invoke(app, ["broker", "mosquitto-config", "--out", str(out)])
    assert written.exit_code == 0, written.output
    acl = (out / "acl").read_text()
    assert "user gate-north" in acl and "topic write anfang/youzheng/gate-north/twin/reported" in acl
    assert "gate-north:$7$" in (out / "passwd").read_text()
    assert (out / "passwd").stat().st_mode & 0o077 == 0
    # devices and the platform's accounts on listeners of their own; a device's client id is its user name
    assert "anfang-platform:" in (out / "services.passwd").read_text() and "anfang-platform" not in passwd_text(out)
    conf = (out / "mosquitto.conf").read_text()
    assert "use_username_as_clientid true" in conf and "listener 1884 127.0.0.1" in conf
    assert runner.invoke(app, ["devices", "delete", "gate-north", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["devices", "show", "gate-north"]).exit_code == 1


def passwd_text(out: Path) -> str:
    return (out / "passwd").read_text()


def test_run_on_a_taken_port_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["run", "--broker-bind", f"127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in result.output
    assert "Traceback" not in result.output


def test_twin_commands_without_a_running_platform_explain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ANFANG_BROKER_BIND", f"127.0.0.1:{port}")
    result = runner.invoke(app, ["twin", "get", "door-1"])
    assert result.exit_code == 1 and "anfang run" in result.output
    assert runner.invoke(app, ["twin", "set", "door-1", "novalue"]).exit_code == 2


def test_run_with_a_malformed_broker_address_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    for bad in (["--external-broker", "localhost"], ["--external-broker", "h:99999"], ["--broker-bind", "x:y"]):
        result = runner.invoke(app, ["run", *bad])
        assert result.exit_code in (1, 2) and "expected host:port" in result.output, result.output
        assert "Traceback" not in result.output


def test_several_workers_on_the_embedded_broker_are_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, ["run", "--workers", "2"])
    assert result.exit_code == 2 and "needs an external broker" in result.output, result.output
    # --external-broker counts before the check: the next refusal is the next thing wrong, not the broker
    monkeypatch.setenv("ANFANG_MQTT_SHARED_GROUP", "g")
    result = runner.invoke(app, ["run", "--workers", "2", "--external-broker", "127.0.0.1:1"])
    assert result.exit_code == 2 and "not both" in result.output, result.output
    monkeypatch.delenv("ANFANG_MQTT_SHARED_GROUP")
    monkeypatch.setenv("ANFANG_PARTITIONS", "2")
    result = runner.invoke(app, ["run"])  # a worker started by hand with partitions on the embedded broker
    assert result.exit_code == 2 and "needs an external broker" in result.output, result.output


def test_run_on_a_database_that_cannot_be_migrated_says_which_migration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "anfang.db") as db:
        db.execute("CREATE TABLE sites (something_else TEXT)")  # not this project's schema
    monkeypatch.setenv("ANFANG_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(app, ["run"])
    assert result.exit_code == 1, result.output
    assert "error: 0001_core.sql" in result.output and "already exists" in result.output
    assert "Traceback" not in result.output
