"""InfluxDB 1.x's ``/write?db=`` beside the v2 API, chosen by setting or by asking the server; settings
that cannot work are named at start-up instead of being ridden out as an outage.

Real servers: Debian's influxd 1.6.7 and VictoriaMetrics, each started on a free port.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from telemetry_servers import InfluxV1, VictoriaMetrics, free_port

from telemetry.config import TelemetrySettings
from telemetry.factory import build_sink, build_writer
from telemetry.lineproto import Point
from telemetry.sinks import AutoInfluxSink, InfluxSink, InfluxV1Sink, SinkMisconfigured, SinkUnavailable
from telemetry.writer import TelemetryWriter

ANFANG = str(Path(sys.executable).parent / "anfang")


def _points(n: int, ts0: float = 1_700_000_000.0, device: str = "d1") -> list[Point]:
    return [Point.make("device_telemetry", {"site": "s", "device": device}, {"battery": float(i)}, ts0 + i)
            for i in range(n)]  # fmt: skip


def _count(server: InfluxV1, measurement: str = "device_telemetry") -> int:
    result = server.query(f'SELECT count("battery") FROM "{measurement}"')
    series = result["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


async def test_points_reach_influxdb_1x_through_its_write_api_chosen_by_asking_it(
    influx_v1: InfluxV1, tmp_path: Path
) -> None:
    influx_v1.query('DROP MEASUREMENT "device_telemetry"')
    settings = TelemetrySettings(influx_url=influx_v1.url, bucket=influx_v1.database, spool_dir=tmp_path / "spool")
    async with build_writer(settings) as writer:
        await writer.check()
        for point in _points(300):
            writer.submit(point)
        await writer.wait_until(lambda s: s.written == 300, within=30)
    assert isinstance(writer.sink, AutoInfluxSink) and isinstance(writer.sink.chosen, InfluxV1Sink)
    assert _count(influx_v1) == 300
    assert writer.health().state == "stopped" and writer.stats.rejected == 0


async def test_a_device_clock_far_off_loses_its_own_point_not_the_batch(influx_v1: InfluxV1, tmp_path: Path) -> None:
    influx_v1.query('DROP MEASUREMENT "clock_test"')
    points = [Point.make("clock_test", {"d": "x"}, {"battery": float(i)}, 1_700_000_000.0 + i) for i in range(50)]
    points[25] = points[25]._replace(ts=1e12)  # 1e21 ns: beyond what InfluxDB can store
    settings = TelemetrySettings(influx_url=influx_v1.url, api="v1", bucket=influx_v1.database,
                                 spool_dir=tmp_path / "spool")  # fmt: skip
    async with build_writer(settings) as writer:
        for point in points:
            writer.submit(point)
        await writer.wait_until(lambda s: s.written == 49, within=30)
    assert writer.stats.invalid == 1 and writer.stats.rejected == 0
    assert _count(influx_v1, "clock_test") == 49


def test_a_database_that_does_not_exist_is_named_before_anything_is_written(influx_v1: InfluxV1) -> None:
    sink = InfluxV1Sink(influx_v1.url, "no_such_db")
    with pytest.raises(SinkMisconfigured, match=r"database 'no_such_db'.*no such database"):
        sink.check()
    with pytest.raises(SinkMisconfigured, match="no_such_db"):
        sink.write(["m v=1 1"])  # and a write says the same, not "outage"


def test_the_v2_api_against_influxdb_1x_is_named_as_such(influx_v1: InfluxV1) -> None:
    sink = InfluxSink(influx_v1.url, None, "anfang", "anfang")
    with pytest.raises(SinkMisconfigured, match=r"InfluxDB 1\.\d.*no v2 write API: set the API to v1"):
        sink.check()
    with pytest.raises(SinkMisconfigured, match="HTTP 404"):
        sink.write(["m v=1 1"])
    sink.close()


def test_victoriametrics_gets_the_v2_api_when_asked_and_passes_the_checks(victoria: VictoriaMetrics) -> None:
    auto = AutoInfluxSink(victoria.url, None, None, "anfang")
    auto.check()
    assert isinstance(auto.chosen, InfluxSink)  # its /ping carries no InfluxDB version
    auto.write([f"vm_probe,site=s v=1 {time.time_ns() - 60 * 10**9}"])  # (VM drops points beyond its retention)
    auto.close()
    InfluxV1Sink(victoria.url, "anfang").check()  # and its 1.x API takes any database name
    assert victoria.export('{__name__="vm_probe_v"}')


def test_an_unreachable_server_is_an_outage_not_a_setting() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for sink in (AutoInfluxSink(url, None, None, "b"), InfluxV1Sink(url, "db"), InfluxSink(url, None, None, "b")):
        sink.check()  # no error: the spool rides it out
        with pytest.raises(SinkUnavailable):
            sink.write(["m v=1 1"])
        sink.close()


async def test_wrong_database_is_reported_on_health_and_spooled_until_it_exists(
    influx_v1: InfluxV1, tmp_path: Path
) -> None:
    influx_v1.query('DROP DATABASE "later"', db=None)
    sink = build_sink(TelemetrySettings(influx_url=influx_v1.url, api="v1", bucket="later"))
    from telemetry.spool import Spool

    writer = TelemetryWriter(sink, spool=Spool(tmp_path / "spool", 1 << 20), batch_size=10, flush_interval=0.02)
    writer.core.max_backoff = 0.2  # (15 s in production: a setting is not fixed within seconds)
    async with writer:
        for point in _points(20):
            writer.submit(point)
        await writer.wait_until(lambda s: s.misconfigured and s.spool_lines == 20, within=30)
        health = writer.health()
        assert health.state == "misconfigured" and not health.ready and "'later'" in health.detail
        influx_v1.query('CREATE DATABASE "later"', db=None)
        await writer.wait_until(lambda s: s.replayed == 20 and not s.misconfigured, within=30)
        assert writer.health().state == "ok"
    result = influx_v1.query('SELECT count("battery") FROM "device_telemetry"', db="later")
    assert result["results"][0]["series"][0]["values"][0][1] == 20


def test_the_platform_refuses_to_start_with_a_database_that_does_not_exist(influx_v1: InfluxV1, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANFANG_DATA_DIR": str(tmp_path / "data"),
           "ANFANG_BROKER_BIND": f"127.0.0.1:{free_port()}", "ANFANG_INFLUX_URL": influx_v1.url,
           "ANFANG_INFLUX_BUCKET": "no_such_db"}  # fmt: skip
    out = subprocess.run([ANFANG, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: telemetry:") and "no_such_db" in last and influx_v1.url in last, out.stderr
    assert "Traceback" not in out.stderr
