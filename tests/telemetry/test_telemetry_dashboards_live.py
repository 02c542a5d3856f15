"""Every dashboard panel against points the real platform wrote: the pilot community's simulator plays an
hour (at high speed) against the full platform — rules, access control, vision, telemetry — which writes
to a real influxd 1.x; then every panel's InfluxQL runs there. Panels that an ordinary hour rarely feeds
are listed in ``RARE`` with the scenario that feeds them; the test plays those and asks again.

A second platform writes the same kind of hour to VictoriaMetrics (InfluxDB v2 write API, no InfluxQL):
every measurement and field the dashboards read must arrive there as a series.

No hand-made point is written anywhere in this module.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sim_e2e_kit import FullPlatform, full_platform
from telemetry_servers import InfluxV1, VictoriaMetrics
from testkit import Device

from anfang.config import Settings
from firmware_sim.runner import run_community
from firmware_sim.scenarios.library import DEFAULT_DAY
from telemetry import vocabulary as v
from telemetry.dashboards import build_dashboards, dashboard_json

pytestmark = pytest.mark.slow

SPEED = 900.0  # an hour in 4 s
HOUR = 3600.0
#: (dashboard uid, panel title) -> the scenario that produces what the panel needs ("gate-visitor": a
#: vehicle not on the allow list comes and goes, and one plate the camera cannot read — see _gate_visitor)
RARE: dict[tuple[str, str], str] = {
    ("anfang-overview", "Denied attempts"): "gate-visitor",
    ("anfang-overview", "Denied attempts per hour by credential"): "gate-visitor",
    ("anfang-vehicles", "Unknown plates per hour"): "gate-visitor",
    ("anfang-vehicles", "Unread plates per hour"): "gate-visitor",
    ("anfang-vehicles", "Dwell time"): "gate-visitor",
    ("anfang-people", "Fence alarms per hour"): "child-leaves-kindergarten",
    ("anfang-people", "Recent fence alarms"): "child-leaves-kindergarten",
    ("anfang-devices", "Reconnects per hour"): "power-cut",
    ("anfang-overview", "Devices offline"): "power-cut",
    ("anfang-platform", "Rejections"): "bad-firmware",
    ("anfang-overview", "Active alarms"): "forced-door",
    ("anfang-overview", "Alarms raised per hour by kind"): "forced-door",
    ("anfang-platform", "Alarm changes per hour"): "forced-door",
}


@dataclass(frozen=True)
class Target:
    dashboard: str
    title: str
    query: str


def _targets() -> list[Target]:
    return [Target(d.uid, p["title"], t["query"]) for d in build_dashboards()
            for p in dashboard_json(d)["panels"] for t in p["targets"]]  # fmt: skip


def _expand(query: str, site: str) -> str:
    """Grafana's macros as a user's view sets them. Device clocks run on the simulator's accelerated clock,
    so device points lie up to hours around now, and the hour played may be yesterday's morning (two days
    back, a day ahead, one-minute buckets); the platform's
    own health is charted in real time, as one would look at it: the last 15 minutes, by the second."""
    if f'"{v.PLATFORM_HEALTH}"' in query:
        time_filter, interval = "time > now() - 15m", "1s"
    else:
        # the rare events' scenarios play their own simulated day (DEFAULT_DAY) and rules stamp what they
        # raise with the events' time: the view reaches back to that day as well
        since = min(time.time() - 2 * 86400, time.mktime(DEFAULT_DAY.timetuple()) - 2 * 86400)
        time_filter, interval = f"time > {int(since)}s AND time < now() + 1d", "1m"
    return query.replace("$timeFilter", time_filter).replace("$__interval", interval).replace("$site", site)


def _has_data(server: InfluxV1, target: Target, site: str) -> bool:
    result = server.query(_expand(target.query, site))
    statement = result["results"][0]
    assert result["_status"] == 200 and "error" not in statement, f"{target}: {statement.get('error')}"
    return any(value is not None for s in statement.get("series", []) for row in s["values"] for value in row[1:])


def _configure(url: str, api: str, database: str) -> Any:
    def configure(settings: Settings) -> None:
        settings.telemetry.influx_url = url
        settings.telemetry.influx_api = api  # type: ignore[assignment]
        settings.telemetry.influx_bucket = database
        settings.limits.health_interval_s = 0.5

    return configure


async def _play_hour(fp: FullPlatform, seed: int) -> None:
    # an afternoon (15:30 at the site: the kindergarten's pick-up, people, vehicles and tags all move) the
    # day before the scenarios' own simulated day: no report is stamped ahead of the platform's clock (it
    # would be clamped), and the rare events' scenarios come after the hour in event time (a report older
    # than what a twin holds does not move it)
    site_tz = dt.timezone(dt.timedelta(hours=8))
    day = DEFAULT_DAY - dt.timedelta(days=1)
    start = dt.datetime.combine(day, dt.time(15, 30), tzinfo=site_tz).timestamp()
    played = await run_community(fp.community, host=fp.stack.host, port=fp.stack.port, secrets=fp.secrets,
                                 start=start, speed=SPEED, duration=HOUR, seed=seed)  # fmt: skip
    assert played > 100


async def _settled(fp: FullPlatform, within: float = 30.0) -> None:
    """Until the platform's telemetry writer has written everything it was given."""
    telemetry = next(h for h in fp.stack.platform.handlers if hasattr(h, "telemetry")).telemetry
    writer = telemetry.writer
    await writer.wait_until(lambda s: s.written + s.invalid + s.rejected >= s.submitted - s.buffered, within)
    assert writer.stats.dropped == 0 and writer.stats.rejected == 0, writer.stats


async def _gate_visitor(fp: FullPlatform) -> None:
    """A vehicle gate's cameras, as its firmware reports them: an unknown plate in, the same plate out
    (a short stay), and a capture without a readable plate."""
    gate = next(d for d in fp.community.devices if d.kind == "vehicle_gate")
    cams = gate.cameras or [gate.id]
    device = Device(fp.stack.host, fp.stack.port, gate.id, fp.secrets[gate.id], site=fp.community.site, will=False)
    assert await device.connect() == 0
    now = time.time()
    captures = [
        {"camera": cams[0], "direction": "in", "plate": "粤B0TEST", "confidence": 0.97},
        {"camera": cams[-1], "direction": "out", "plate": "粤B0TEST", "confidence": 0.95},
        {"camera": cams[0], "direction": "in", "confidence": 0.3},
    ]
    while not fp.observed.decisions.empty():  # decisions of the hour just played
        fp.observed.decisions.get_nowait()
    try:
        for n, data in enumerate(captures):
            info = device.publish("events/plate_captured", {"id": f"visitor-{n}", "ts": now + 60 * n, "data": data})
            await device.published(info)
        assert (await fp.observed.decision(gate.id, timeout=30))["allowed"] is False
    finally:
        device.close()


async def _rare_events(fp: FullPlatform) -> None:
    """Produce what every :data:`RARE` panel needs: its scenario, through the platform."""
    for scenario in sorted(set(RARE.values())):
        if scenario == "gate-visitor":
            await _gate_visitor(fp)
        else:
            # its own check may find the community already in that state after the hour (an alarm still
            # active for the same child); what matters here is what the panels show afterwards
            await fp.play(scenario)


async def test_every_panel_shows_what_the_platform_wrote(influx_v1: InfluxV1, tmp_path: Path) -> None:
    influx_v1.query('DROP DATABASE "live"', db=None)
    influx_v1.query('CREATE DATABASE "live"', db=None)
    influx = InfluxV1(influx_v1.binary, influx_v1.root, database="live")
    influx.port, influx.url = influx_v1.port, influx_v1.url
    async with full_platform(tmp_path, "mosquitto", _configure(influx.url, "v1", "live")) as fp:
        site = fp.community.site
        await _play_hour(fp, seed=7)
        await _settled(fp)
        targets = _targets()
        empty = {(t.dashboard, t.title) for t in targets if not _has_data(influx, t, site)}
        assert empty <= set(RARE), f"panels without data after an hour, not listed as rare: {empty - set(RARE)}"

        await _rare_events(fp)
        await _settled(fp)
        still = sorted((t.dashboard, t.title) for t in targets if not _has_data(influx, t, site))
        assert not still, f"panels without data even after their scenarios: {still}"
        variable = dashboard_json(build_dashboards()[0])["templating"]["list"][0]
        assert influx.query(variable["query"])["results"][0]["series"][0]["values"] == [["site", site]]
        _only_the_vocabulary_and_no_person(influx, fp)


def _only_the_vocabulary_and_no_person(influx: InfluxV1, fp: FullPlatform) -> None:
    """What the platform wrote uses only names of telemetry.vocabulary, and no person's name."""
    measurements = {row[0] for row in influx.query("SHOW MEASUREMENTS")["results"][0]["series"][0]["values"]}
    assert measurements <= v.MEASUREMENTS
    for measurement in measurements:
        tags, fields = v.SCHEMA[measurement]
        shown = influx.query(f'SHOW FIELD KEYS FROM "{measurement}"')["results"][0]["series"][0]["values"]
        assert {row[0] for row in shown} <= fields, measurement
        keys = influx.query(f'SHOW TAG KEYS FROM "{measurement}"')["results"][0]["series"][0]["values"]
        assert {row[0] for row in keys} <= tags, measurement
    states = influx.query(f'SHOW TAG VALUES FROM "{v.ALARM}" WITH KEY = "{v.T_STATE}"')["results"][0]["series"]
    assert {row[1] for row in states[0]["values"]} <= v.ALARM_STATES
    dump = str(influx.query("SELECT * FROM /.*/ WHERE time > now() - 1d AND time < now() + 1d"))
    assert not [p.name for p in fp.community.people if p.name in dump]


def _dashboard_series() -> set[str]:
    """``<measurement>_<field>`` of every field a panel reads (how VictoriaMetrics names InfluxDB points)."""
    out = set()
    for target in _targets():
        measurement = re.search(r'FROM "([a-z_]+)"', target.query)
        if measurement is None:
            continue
        _tags, fields = v.SCHEMA[measurement.group(1)]
        for name in re.findall(r'"([a-z_0-9]+)"', target.query):
            if name in fields:
                out.add(f"{measurement.group(1)}_{name}")
    return out


async def test_victoriametrics_receives_every_series_the_dashboards_read(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    async with full_platform(tmp_path, "mosquitto", _configure(victoria.url, "auto", "anfang")) as fp:
        await _play_hour(fp, seed=9)
        await _rare_events(fp)
        await _settled(fp)
    stored = {s["metric"]["__name__"] for s in victoria.export('{__name__=~".+"}')}
    wanted = _dashboard_series()
    assert len(wanted) > 20
    assert wanted <= stored, sorted(wanted - stored)
