"""Scenarios played against a real broker, checked the way an operator would see them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from firmware_sim.cli import app
from firmware_sim.community import Community
from firmware_sim.mosquitto import Mosquitto
from firmware_sim.runner import run_scenario
from firmware_sim.scenarios.library import SCENARIOS, build


def _publish_retained(broker: Mosquitto, topic: str, payload: bytes) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(broker.host, broker.port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


@pytest.fixture
def features(broker: Mosquitto) -> Iterator[Any]:
    """Set the retained ``_platform/features`` message as a platform would (cleared afterwards)."""
    topic = "anfang/youzheng/_platform/features"

    def set_features(names: list[str]) -> None:
        _publish_retained(broker, topic, json.dumps({"features": names}).encode())

    yield set_features
    _publish_retained(broker, topic, b"")


class StandInPlatform:
    """A stand-in for the rules engine (the real one is tested with ``platform_stack``): raises the
    ``door_forced`` alarm when a door reports being forced."""

    def __init__(self, broker: Mosquitto) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        ready = threading.Event()
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe("anfang/youzheng/+/events/door_forced", qos=1)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        device = m.topic.split("/")[2]
        alarm = {"kind": "door_forced", "subject": device, "severity": "high"}
        c.publish(f"anfang/youzheng/alarms/a-{device}", json.dumps(alarm), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _run(broker: Mosquitto, tmp_path: Path, scenario: str, *extra: str) -> Any:
    return CliRunner().invoke(
        app,
        [
            "run",
            "youzheng",
            "--scenario",
            scenario,
            "--check",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--speed",
            "600",
            "--data-dir",
            str(tmp_path),
            *extra,
        ],
    )


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_every_scenario_plays_and_its_devices_behave(broker: Mosquitto, youzheng: Community, name: str) -> None:
    report = await run_scenario(
        build(name, youzheng), youzheng, host=broker.host, port=broker.port, secrets={}, speed=600
    )
    assert report.ok, report.text()
    device_level = [o for o in report.outcomes if o.expect.level == "device"]
    assert all(o.status == "met" for o in device_level), report.text()
    platform_level = [o for o in report.outcomes if o.expect.level == "platform"]
    assert all(o.status == "skipped" and "no platform" in o.detail for o in platform_level)


def test_power_cut_check_passes_on_a_bare_broker(broker: Mosquitto, tmp_path: Path) -> None:
    r = _run(broker, tmp_path, "power-cut")
    assert r.exit_code == 0, r.output
    assert "scenario power-cut: PASSED" in r.output
    assert "[ok] the exit made during the outage arrives after reconnecting" in r.output


def test_checker_skips_what_the_platform_lacks(broker: Mosquitto, tmp_path: Path, features: Any) -> None:
    features(["twins"])
    r = _run(broker, tmp_path, "forced-door")
    assert r.exit_code == 0, r.output
    assert "[SKIPPED] alarm: door forced — platform lacks feature(s) rules (has: twins)" in r.output


def test_checker_fails_loudly_when_a_reaction_is_missing(broker: Mosquitto, tmp_path: Path, features: Any) -> None:
    features(["twins", "rules"])  # a platform that claims rules but never raises the alarm
    r = _run(broker, tmp_path, "forced-door", "--patience", "0.1")
    assert r.exit_code == 1, r.output
    assert "[MISSING] alarm: door forced — nothing within 1 s" in r.output


def test_checker_sees_the_alarm_when_the_platform_reacts(broker: Mosquitto, tmp_path: Path, features: Any) -> None:
    features(["twins", "rules"])
    platform = StandInPlatform(broker)
    try:
        r = _run(broker, tmp_path, "forced-door")
    finally:
        platform.close()
    assert r.exit_code == 0, r.output
    assert "[ok] alarm: door forced" in r.output


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_against_the_real_platform(platform_stack: Any, youzheng: Community, name: str) -> None:
    """Each scenario with its checks against the running platform (scenarios whose features the platform
    lacks have their platform expectations skipped, with the reason in the report)."""
    from firmware_sim.provision import provision

    scenario = build(name, youzheng)
    device_ids = set(scenario.devices)
    subset = youzheng.model_copy(update={"devices": [d for d in youzheng.devices if d.id in device_ids]})
    secrets = await provision(subset, platform_stack.registrar)
    report = await run_scenario(
        scenario,
        youzheng,
        host=platform_stack.host,
        port=platform_stack.port,
        secrets=secrets,
        operator=platform_stack.operator_credentials,
        speed=600,
    )
    print(report.text())
    assert report.ok, report.text()
    assert report.features is not None and "twins" in report.features


def test_community_mode_plays_the_morning(broker: Mosquitto, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "run",
            "youzheng",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--speed",
            "3600",
            "--duration",
            "1200",
            "--start",
            "2026-11-25T07:40:00+08:00",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    played = int(r.output.split("played ")[1].split()[0])
    assert played > 100


def test_visitor_qr_without_a_pass_says_which_pass_to_issue(broker: Mosquitto, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        [
            "run",
            "youzheng",
            "--scenario",
            "visitor-qr",
            "--check",
            "--host",
            broker.host,
            "--port",
            str(broker.port),
            "--speed",
            "600",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "anfang community pass issue --issuer p0001 --door door-b1-u1 --uses 1" in r.output
    assert "[SKIPPED] door stays shut for a code nobody signed" in r.output
