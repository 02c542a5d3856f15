"""The writer's delivery guarantees, with an in-memory test sink that can be switched off.

``ListSink`` is a test double of a time-series server (the real ones are exercised in
test_telemetry_victoria.py); it records every accepted line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.config import TelemetrySettings, settings_from_platform
from telemetry.factory import build_handler, build_writer
from telemetry.lineproto import Point
from telemetry.sinks import AutoInfluxSink, FileSink, InfluxSink, InfluxV1Sink, NullSink, SinkRejected, SinkUnavailable
from telemetry.spool import Spool
from telemetry.writer import TelemetryWriter, WriterCore, WriterStats


class ListSink:
    """In-memory stand-in for a server: ``up`` False makes writes fail like a refused connection."""

    name = "list"

    def __init__(self) -> None:
        self.up = True
        self.reject = False
        self.lines: list[str] = []
        self.closed = False

    def write(self, lines: Sequence[str]) -> None:
        if not self.up:
            raise SinkUnavailable(self.name, "connection refused")
        if self.reject:
            raise SinkRejected(self.name, "unable to parse", 400)
        self.lines.extend(lines)

    def close(self) -> None:
        self.closed = True


def _points(start: int, n: int) -> list[Point]:
    return [Point.make("m", {"d": "x"}, {"v": i}, 1000.0 + i) for i in range(start, start + n)]


def _seqs(lines: list[str]) -> list[int]:
    return [int(line.split("v=")[1].split("i")[0]) for line in lines]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.booleans(), st.floats(0, 3)), min_size=1, max_size=30))
def test_core_delivers_everything_once_in_order_whatever_the_outages(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, bool, float]]
) -> None:
    sink = ListSink()
    now = [0.0]
    core = WriterCore(sink, Spool(tmp_path_factory.mktemp("spool"), 1 << 24), WriterStats(), batch_size=25,
                      clock=lambda: now[0])  # fmt: skip
    sent = 0
    for n, up, advance in steps:
        sink.up = up
        now[0] += advance
        core.flush(_points(sent, n))
        sent += n
    sink.up = True
    for _ in range(1000):
        if not core.backlog:
            break
        now[0] += 100
        core.flush([])
    assert _seqs(sink.lines) == list(range(sent))
    assert core.stats.written == sent and core.stats.spool_lines == 0


async def test_buffer_full_drops_loudly_without_blocking(caplog: pytest.LogCaptureFixture) -> None:
    writer = TelemetryWriter(ListSink(), max_buffer=10, batch_size=100)
    with caplog.at_level(logging.ERROR):
        accepted = [writer.submit(p) for p in _points(0, 15)]
    assert accepted == [True] * 10 + [False] * 5
    assert writer.stats.buffer_dropped == 5
    assert "DROPPING" in caplog.text


async def test_cancelled_writer_parks_points_on_disk_and_next_start_sends_them(tmp_path: Path) -> None:
    sink = ListSink()
    sink.up = False
    writer = TelemetryWriter(sink, spool=Spool(tmp_path, 1 << 20), batch_size=10, flush_interval=30)
    task = asyncio.create_task(writer.run())
    for p in _points(0, 35):
        writer.submit(p)
    await writer.wait_until(lambda s: s.spool_lines >= 30, within=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert Spool(tmp_path, 1 << 20).lines == 35

    sink.up = True
    again = TelemetryWriter(sink, spool=Spool(tmp_path, 1 << 20), batch_size=10, flush_interval=0.01)
    async with again:
        again.submit(_points(35, 1)[0])
        await again.wait_until(lambda s: s.spool_lines == 0 and s.written == 36, within=10)
    assert _seqs(sink.lines) == list(range(36))
    assert sink.closed


async def test_rejected_batches_are_dropped_and_counted_not_retried(tmp_path: Path) -> None:
    sink = ListSink()
    sink.reject = True
    async with TelemetryWriter(sink, spool=Spool(tmp_path, 1 << 20), batch_size=5, flush_interval=0.01) as writer:
        for p in _points(0, 5):
            writer.submit(p)
        await writer.wait_until(lambda s: s.rejected == 5, within=10)
    assert writer.stats.spool_lines == 0 and sink.lines == []


async def test_without_spool_an_outage_drops_and_counts() -> None:
    sink = ListSink()
    sink.up = False
    async with TelemetryWriter(sink, batch_size=5, flush_interval=0.01) as writer:
        for p in _points(0, 5):
            writer.submit(p)
        await writer.wait_until(lambda s: s.buffer_dropped == 5, within=10)
    assert not writer.stats.server_up


def test_file_sink_rotates_and_caps_disk_use(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.lp"
    sink = FileSink(path, max_bytes=1000, backups=2)
    for k in range(50):
        sink.write([f"m v={k}i {k:020d}"] * 3)
    sink.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["telemetry.lp", "telemetry.lp.1", "telemetry.lp.2"]
    assert all(f.stat().st_size <= 1000 for f in files)
    assert path.read_text().splitlines()[-1] == f"m v=49i {49:020d}"


async def test_settings_pick_the_sink_and_the_platform_runs_the_same_without_influx(tmp_path: Path) -> None:
    influx = build_writer(TelemetrySettings(influx_url="http://127.0.0.1:1", spool_dir=tmp_path / "sp"))
    assert isinstance(influx.sink, AutoInfluxSink) and influx.core.spool is not None  # asks the server first
    for api, sink_type in (("v1", InfluxV1Sink), ("v2", InfluxSink)):
        chosen = build_writer(TelemetrySettings(influx_url="http://127.0.0.1:1", api=api, spool_dir=tmp_path / "sp"))
        assert type(chosen.sink) is sink_type
        chosen.sink.close()
    filed = build_writer(TelemetrySettings(file=tmp_path / "t.lp"))
    assert isinstance(filed.sink, FileSink) and filed.core.spool is None
    handler = build_handler(TelemetrySettings(), site="demo")
    assert isinstance(handler.writer.sink, NullSink)
    async with handler:
        handler.record_telemetry("demo", "d1", "camera", 1.0, {"battery": 50.0})
        handler.record_rule_firing("demo", "r1", 1.0)
        await handler.writer.wait_until(lambda s: s.written == 2, within=10)
    assert TelemetrySettings().mode == "off"


def test_settings_from_the_platform_config(tmp_path: Path) -> None:
    config = pytest.importorskip("anfang.config", reason="anfang.config (the lead's) not importable")
    loaded = config.load_settings(environ={"ANFANG_INFLUX_URL": "http://influxdb:8086", "ANFANG_INFLUX_TOKEN": "t",
                                           "ANFANG_DATA_DIR": str(tmp_path)})  # fmt: skip
    settings = settings_from_platform(loaded.telemetry, loaded.data_dir)
    assert settings.mode == "influx" and settings.token == "t" and settings.bucket == "anfang"
    assert settings.spool_dir == tmp_path / "telemetry-spool"
    assert settings_from_platform(config.load_settings(environ={}).telemetry).mode == "off"
