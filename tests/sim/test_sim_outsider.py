"""The simulator as an outsider (issue 14 item 4): it finds the broker in the operator's configuration but
never the platform's own account, and provisions through ``anfang site load`` with what its hardware
presents."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import yaml

from firmware_sim.cli import _operator
from firmware_sim.community import Community
from firmware_sim.endpoint import Endpoint, find_endpoint
from firmware_sim.provision import roster_document, site_load_command
from twins.site import site_from_mapping


def test_the_endpoint_has_the_broker_and_data_dir_and_never_the_platform_account(tmp_path: Path) -> None:
    config = tmp_path / "anfang.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "d"),
                "broker": {"bind": "0.0.0.0:18999"},
                "mqtt": {"username": "anfang-platform", "password": "platform-secret"},
            }
        )
    )
    found = find_endpoint(config, environ={})
    assert found == Endpoint("127.0.0.1", 18999, tmp_path / "d")
    assert {f.name for f in dataclasses.fields(Endpoint)} == {"host", "port", "data_dir"}, "no credentials at all"
    external = find_endpoint(config, environ={"ANFANG_EMBEDDED_BROKER": "false", "ANFANG_MQTT_PORT": "1884"})
    assert (external.host, external.port) == ("127.0.0.1", 1884)


def test_check_watches_only_as_the_operator_the_command_line_names(tmp_path: Path) -> None:
    assert _operator(None, None, None) is None, "without --username the watcher has no account (never the platform's)"
    secret = tmp_path / "operator.secret"
    secret.write_text("s3cret\n")
    assert _operator("anfang-operator", None, secret) == ("anfang-operator", "s3cret")


def test_provisioning_hands_the_platform_a_site_file_with_what_the_hardware_presents(youzheng: Community) -> None:
    doc = roster_document(youzheng)
    assert site_from_mapping(doc) == youzheng.plan(), "the plan part is the site model"
    consenting = [p for p in doc["people"] if p["face_consent"]]
    assert consenting and all(len(p["face_template"]) == 128 for p in consenting)
    assert all(len(w["face_template"]) == 128 for w in doc["watchlist"]) and "paths" not in doc
    assert "people" not in roster_document(youzheng, people=False)
    cmd = site_load_command(Path("s.json"), Path("out.json"), roster=True, config=Path("a.yaml"))
    assert cmd == [sys.executable, "-m", "anfang.cli", "site", "load", "s.json", "--secrets-out", "out.json",
                   "--roster", "--config", "a.yaml"]  # fmt: skip
