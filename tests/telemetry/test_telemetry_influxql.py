"""Every dashboard panel's InfluxQL runs on a real influxd 1.x loaded with points in our schema."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from telemetry_servers import InfluxV1

from telemetry.dashboards import build_dashboards, dashboard_json
from telemetry.handler import TelemetryHandler
from telemetry.schema import GeoOrigin
from telemetry.sinks import FileSink
from telemetry.writer import TelemetryWriter
from twins.hooks import DeviceEvent, TwinChange

SITE = "demo"
DOORS = ["door-a1", "door-b2"]
GATES = ["gate-north"]
TAGS = {"tag-01": "elderly", "tag-02": "child", "tag-03": "elderly"}


def _event(device: str, kind: str, etype: str, ts: float, data: dict[str, Any]) -> DeviceEvent:
    return DeviceEvent(SITE, device, kind, etype, f"{device}-{etype}-{ts}", ts, data)


async def _community_day(path: Path) -> None:
    """Three hours of a small community, written through the real handler → writer → FileSink."""
    writer = TelemetryWriter(FileSink(path), batch_size=1000, flush_interval=0.05)
    handler = TelemetryHandler(writer, site=SITE, tag_groups=TAGS, origin=GeoOrigin(31.2304, 121.4737))
    start = time.time() - 3 * 3600
    async with handler:
        for step in range(36):  # every 5 minutes
            ts = start + step * 300
            for n, device in enumerate([*DOORS, *GATES, "cam-1"]):
                kind = "vehicle_gate" if device in GATES else "camera" if device == "cam-1" else "door_lock"
                handler.record_telemetry(SITE, device, kind, ts + n, {"battery": 90.0 - step, "rssi": -60.0 - n,
                                         "temperature": 25.0, "uptime": 3600.0 + step * 300})  # fmt: skip
                handler.record_status(
                    SITE, device, kind, ts + n, online=not (device == "cam-1" and step % 12 in (6, 11))
                )
            for door in DOORS:
                handler.handle_event(_event(door, "door_lock", "door_opened", ts + 10, {"by": "access"}))
                handler.handle_event(_event(door, "door_lock", "door_opened", ts + 20, {"by": "exit_button"}))
                handler.record_access(SITE, door, ts + 9, True, "face", "allow list", "in")
                handler.record_access(SITE, door, ts + 30, False, "card", "card revoked", "in")
            plate = f"沪A{step:05d}"
            gate = GATES[0]
            handler.handle_event(
                _event(
                    gate,
                    "vehicle_gate",
                    "plate_captured",
                    ts + 40,
                    {"camera": "c1", "direction": "in", "plate": plate, "confidence": 0.93},
                )
            )
            handler.handle_event(
                _event(
                    gate,
                    "vehicle_gate",
                    "plate_captured",
                    ts + 240,
                    {"camera": "c2", "direction": "out", "plate": plate, "confidence": 0.9},
                )
            )
            handler.handle_event(
                _event(gate, "vehicle_gate", "plate_captured", ts + 50, {"camera": "c1", "direction": "in"})
            )
            handler.record_access(SITE, gate, ts + 51, False, "plate", "unknown plate", "in", kind="vehicle_gate")
            handler.handle_event(_event(gate, "vehicle_gate", "access_decided", ts + 41,
                                        {"allowed": True, "subject": "resident-7", "credential_kind": "plate",
                                         "reason": "allow list"}))  # fmt: skip
            for i, (tag, _group) in enumerate(TAGS.items()):
                pos = {"x": 10.0 * i + step, "y": 5.0 * i - step}
                handler.handle_twin_change(TwinChange(SITE, tag, "rfid_tag", step, ts + 60 + i,
                                                      {"position": pos, "rssi": -70.0, "reader": "rdr-1"}, {},
                                                      {}, {"position": pos}))  # fmt: skip
            if step % 6 == 0:
                handler.record_alarm(SITE, f"al-{step}", "fence-elderly", "geofence_exit", "high", "raised", ts + 70)
                handler.record_alarm(SITE, f"df-{step}", "door-forced", "door_forced", "critical", "raised", ts + 80)
                handler.record_alarm(SITE, f"al-{step}", "fence-elderly", "geofence_exit", "high", "cleared",
                                     ts + 200)  # fmt: skip
                handler.record_rule_firing(SITE, "fence-elderly", ts + 70)
            for k in range(10):  # health every 30 s, cumulative counters
                t = ts + k * 30
                n_msgs = (step * 10 + k) * 1000.0
                handler.record_health(t, {"msgs_in": n_msgs, "msgs_out": n_msgs / 2, "rejected": n_msgs / 100,
                                          "queue_depth": 3.0, "ingest_latency_ms_p99": 12.5})  # fmt: skip
            handler.handle_twin_change(TwinChange(SITE, gate, "vehicle_gate", step, ts + 45, {"barrier": "up"},
                                                  {}, {}, {"barrier": "up"}))  # fmt: skip
    assert writer.stats.buffer_dropped == 0


def _panels() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for dash in build_dashboards():
        model = dashboard_json(dash)
        for panel in model["panels"]:
            for target in panel["targets"]:
                out.append((dash.uid, panel["title"], target))
    return out


def _expand(query: str) -> str:
    return query.replace("$timeFilter", "time > now() - 6h").replace("$__interval", "1m").replace("$site", SITE)


@pytest.fixture(scope="module")
def loaded(influx_v1: InfluxV1, tmp_path_factory: pytest.TempPathFactory) -> InfluxV1:
    path = tmp_path_factory.mktemp("lp") / "telemetry.lp"
    asyncio.run(_community_day(path))
    influx_v1.write(path.read_text())
    return influx_v1


@pytest.mark.parametrize(("dashboard", "title", "target"), _panels(), ids=lambda v: v if isinstance(v, str) else "")
def test_panel_query_returns_data(loaded: InfluxV1, dashboard: str, title: str, target: dict[str, Any]) -> None:
    assert target["rawQuery"] is True
    result = loaded.query(_expand(target["query"]))
    assert result["_status"] == 200, result
    statement = result["results"][0]
    assert "error" not in statement, f"{dashboard}/{title}: {statement.get('error')}"
    series = statement.get("series", [])
    assert series, f"{dashboard}/{title}: query returned no data"
    values = [v for s in series for row in s["values"] for v in row[1:] if v is not None]
    assert values, f"{dashboard}/{title}: only nulls"


def test_site_variable_lists_the_site(loaded: InfluxV1) -> None:
    variable = dashboard_json(build_dashboards()[0])["templating"]["list"][0]
    result = loaded.query(variable["query"])
    assert result["results"][0]["series"][0]["values"] == [["site", SITE]]


def test_panels_show_the_numbers_a_user_expects(loaded: InfluxV1) -> None:
    def scalar(query: str) -> Any:
        return loaded.query(_expand(query))["results"][0]["series"][0]["values"][0][1]

    by_title = {title: target["query"] for _d, title, target in _panels()}
    assert scalar(by_title["Devices online"]) == 3  # cam-1 ended offline
    assert scalar(by_title["Devices offline"]) == 1
    assert scalar(by_title["Active alarms"]) == 6  # door_forced never cleared, fences cleared
    assert scalar(by_title["Denied attempts"]) == 36 * 3
    people = loaded.query(_expand(by_title["Tag positions"]))["results"][0]["series"]
    assert {s["tags"]["tag"] for s in people} == set(TAGS)
    lat, lon = people[0]["values"][0][1:3]
    assert 31.22 < lat < 31.24 and 121.46 < lon < 121.49
    dwell = loaded.query(_expand(by_title["Dwell time"]))["results"][0]["series"][0]["values"]
    assert {round(row[1], 3) for row in dwell if row[1] is not None} == {round(200 / 60, 3)}


def test_no_person_identifier_reaches_the_database(loaded: InfluxV1) -> None:
    keys = loaded.query("SHOW TAG KEYS")["results"][0]["series"]
    all_keys = {k[0] for s in keys for k in s["values"]}
    assert all_keys <= {"site", "device", "kind", "result", "credential", "direction", "via", "plate_read",
                        "rule", "severity", "state", "tag", "tag_group", "worker"}  # fmt: skip
    dump = loaded.query("SELECT * FROM /.*/ WHERE time > now() - 6h")
    assert "resident-7" not in str(dump)
