"""The writer against a real VictoriaMetrics (InfluxDB v2 write API), including an outage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from telemetry_servers import VictoriaMetrics

from telemetry.handler import TelemetryHandler
from telemetry.lineproto import timestamp_ns
from telemetry.schema import telemetry_point
from telemetry.sinks import InfluxSink
from telemetry.spool import Spool
from telemetry.writer import TelemetryWriter


async def test_points_arrive_in_victoriametrics_and_read_back(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    sink = InfluxSink(victoria.url, token=None, org="anfang", bucket="anfang", timeout_s=5)
    writer = TelemetryWriter(sink, spool=Spool(tmp_path / "spool", 1 << 24), batch_size=100, flush_interval=0.05)
    handler = TelemetryHandler(writer, site="demo")
    ts0 = time.time() - 300
    async with handler:
        for i in range(250):
            handler.record_telemetry("demo", f"door-{i % 5}", "door_lock", ts0 + i, {"battery": 50.0 + i % 50,
                                     "rssi": -60.0, "temperature": 21.5, "uptime": float(i)})  # fmt: skip
        handler.record_access("demo", "gate-1", ts0, False, "plate", "not on allow list", "in", kind="vehicle_gate")
        await writer.wait_until(lambda s: s.written == 251, within=30)

    series = victoria.export('{__name__=~"device_telemetry_.*"}')
    names = {s["metric"]["__name__"] for s in series}
    assert names == {"device_telemetry_battery", "device_telemetry_rssi", "device_telemetry_temperature",
                     "device_telemetry_uptime"}  # fmt: skip
    uptime = [s for s in series if s["metric"]["__name__"] == "device_telemetry_uptime"]
    assert {s["metric"]["device"] for s in uptime} == {f"door-{i}" for i in range(5)}
    assert all(s["metric"]["site"] == "demo" and s["metric"]["kind"] == "door_lock" for s in uptime)
    assert sorted(v for s in uptime for v in s["values"]) == [float(i) for i in range(250)]
    first = next(s for s in uptime if s["metric"]["device"] == "door-0")
    assert first["timestamps"][0] == timestamp_ns(ts0) // 1_000_000  # VM keeps milliseconds

    access = victoria.export('{__name__="access_count"}')
    assert len(access) == 1
    assert access[0]["metric"] | {"__name__": "x"} == {
        "__name__": "x", "site": "demo", "device": "gate-1", "kind": "vehicle_gate", "result": "deny",
        "credential": "plate", "direction": "in",
    }  # fmt: skip


async def test_server_down_under_load_every_point_arrives_exactly_once(
    victoria: VictoriaMetrics, tmp_path: Path
) -> None:
    sink = InfluxSink(victoria.url, token=None, org="anfang", bucket="anfang", timeout_s=5)
    spool = Spool(tmp_path / "spool", 1 << 26)
    writer = TelemetryWriter(sink, spool=spool, batch_size=400, flush_interval=0.05)
    writer.core.max_backoff = 0.5
    ts0 = time.time() - 900
    produced = 0
    phase = asyncio.Event()  # set when the producer should stop

    async def produce() -> None:
        nonlocal produced
        while not phase.is_set():
            for _ in range(100):
                point = telemetry_point("demo", f"cam-{produced % 7}", "camera", ts0 + produced * 0.002,
                                        {"uptime": float(produced), "battery": 99.0})  # fmt: skip
                assert point is not None
                writer.submit(point)
                produced += 1
            await asyncio.sleep(0.01)  # pacing the load (~10k points/s), not synchronisation

    async with writer, asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        await writer.wait_until(lambda s: s.written >= 2000, within=30)
        await asyncio.to_thread(victoria.stop)
        await writer.wait_until(lambda s: s.spool_lines >= 15_000, within=30)  # ~1.5 s of outage
        assert not writer.stats.server_up
        await asyncio.to_thread(victoria.start)
        await writer.wait_until(lambda s: s.server_up and s.replayed > 0, within=30)
        await writer.wait_until(lambda s: s.written >= produced, within=30)
        phase.set()
    await writer.wait_until(lambda s: s.written == produced and s.spool_lines == 0, within=1)

    stats = writer.stats
    assert stats.buffer_dropped == 0 and stats.spool_dropped == 0 and stats.rejected == 0
    assert stats.spooled >= 15_000 and stats.write_errors >= 1
    assert not list((tmp_path / "spool").glob("*.lp"))
    series = victoria.export('{__name__="device_telemetry_uptime"}')
    values = sorted(v for s in series for v in s["values"])
    assert len(values) == produced  # nothing lost, nothing twice
    assert values == [float(i) for i in range(produced)]
    for s in series:  # and per series in time order with the value matching its timestamp
        seqs = [round((t / 1000 - ts0) / 0.002) for t in s["timestamps"]]
        assert seqs == sorted(seqs) == [int(v) for v in s["values"]]
