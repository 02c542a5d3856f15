"""Fleet mode: many devices from one process; the wire codec underneath it."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from firmware_sim.cli import app
from firmware_sim.fleet import FleetConfig, run_fleet
from firmware_sim.mosquitto import Mosquitto
from firmware_sim.mqtt_wire import PUBLISH, Decoder, connect_packet, encode_length, publish_packet


@given(st.integers(0, 268_435_455))
def test_remaining_length_round_trips(n: int) -> None:
    enc = encode_length(n)
    assert 1 <= len(enc) <= 4
    value, mult = 0, 1
    for b in enc:
        value += (b & 0x7F) * mult
        mult *= 128
    assert value == n


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=8), st.integers(1, 50))
def test_decoder_reassembles_packets_split_anywhere(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(publish_packet("a/b", p, qos=1, packet_id=i + 1) for i, p in enumerate(payloads))
    dec = Decoder()
    packets = []
    for i in range(0, len(stream), chunk):
        packets += dec.feed(stream[i : i + chunk])
    assert [p.type for p in packets] == [PUBLISH] * len(payloads)
    assert [p.body[5 + 2 :] for p in packets] == payloads


def test_connect_packet_carries_credentials_and_will() -> None:
    pkt = connect_packet("dev-1", username="dev-1", password="s3cret", will=("anfang/s/dev-1/status", b"offline"))
    assert pkt[0] == 0x10 and b"MQTT" in pkt and b"s3cret" in pkt and b"offline" in pkt
    flags = pkt[2 + 6 + 1]
    assert flags & 0x80 and flags & 0x40 and flags & 0x04 and flags & 0x20


async def test_fleet_connects_every_device_and_gets_acks() -> None:
    with Mosquitto(fleet=True) as b:
        r = await run_fleet(FleetConfig(host=b.host, port=b.port, devices=500, rate=3000, duration=1.5))
    assert r.connected == 500 and r.errors == 0
    assert r.acked >= 0.9 * 3000 * 1.5
    assert r.sustained_rate > 2500 and r.peak_rss_mb > 0


def test_fleet_cli_prints_rate_and_memory(tmp_path: Path) -> None:
    with Mosquitto(fleet=True) as b:
        r = CliRunner().invoke(
            app,
            [
                "fleet",
                "--devices",
                "200",
                "--rate",
                "1000",
                "--duration",
                "1",
                "--host",
                b.host,
                "--port",
                str(b.port),
                "--json",
                str(tmp_path / "f.json"),
            ],
        )
    assert r.exit_code == 0, r.output
    assert "200/200 devices connected" in r.output and "msg/s" in r.output and "peak RSS" in r.output
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["connected"] == 200 and doc["errors"] == 0


async def _fleet_messages(**cfg: Any) -> list[tuple[str, bytes]]:
    """Run a fleet on a private Mosquitto (``cfg``: FleetConfig fields) and return every message it sent, as a
    subscriber to ``anfang/#`` got them (the fleet's acked count includes its status messages)."""
    got: list[tuple[str, bytes]] = []
    done, subscribed = threading.Event(), threading.Event()
    expected = [0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        got.append((msg.topic, bytes(msg.payload)))
        if expected[0] and len(got) >= expected[0]:
            done.set()

    with Mosquitto(fleet=True) as b:
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.on_message = on_message
        watcher.on_subscribe = lambda *args: subscribed.set()
        watcher.connect(b.host, b.port)
        watcher.subscribe("anfang/#", qos=1)
        watcher.loop_start()
        try:
            assert await asyncio.to_thread(subscribed.wait, 10)
            r = await run_fleet(FleetConfig(host=b.host, port=b.port, **cfg))
            expected[0] = r.acked
            if len(got) >= r.acked:
                done.set()
            assert await asyncio.to_thread(done.wait, 10), len(got)
        finally:
            watcher.loop_stop()
            watcher.disconnect()
    return list(got)


async def test_fleet_sends_the_asked_share_of_events_with_ids_of_their_own() -> None:
    messages = await _fleet_messages(devices=20, rate=1000, duration=1, events=0.5)
    topics = Counter(topic.split("/", 3)[3] for topic, _ in messages)
    ids = {topic + json.loads(body)["id"] for topic, body in messages if topic.endswith("events/motion")}
    assert abs(topics["events/motion"] - topics["twin/reported"]) <= 1, topics
    assert len(ids) == topics["events/motion"]  # every event is new, as a device's next event would be


def test_fleet_cli_refuses_an_events_share_outside_0_to_1() -> None:
    r = CliRunner().invoke(app, ["fleet", "--events", "1.5"])
    assert r.exit_code == 2 and "--events" in r.output


async def test_a_changing_fleet_changes_each_twin_at_every_report() -> None:
    """``--changing``: consecutive reports of a device differ, so a rules benchmark evaluates every one."""
    fps: dict[str, list[int]] = {}
    for topic, body in await _fleet_messages(devices=5, rate=500, duration=1, changing=True):
        if topic.endswith("/twin/reported"):
            fps.setdefault(topic, []).append(int(json.loads(body)["state"]["fps"]))
    assert len(fps) == 5
    for values in fps.values():
        assert all(15 <= v <= 25 for v in values)
        assert all(a != b for a, b in itertools.pairwise(values)), values
