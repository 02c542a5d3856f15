"""The writer cannot die or lose points silently: damaged spool segments, its own failures, a full spool
or disk while the server is up, floods of drops. Against a real influxd 1.x started by the test."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from telemetry_servers import InfluxV1, _binary

from telemetry.lineproto import Point, encode
from telemetry.sinks import InfluxV1Sink, SinkUnavailable
from telemetry.spool import Spool
from telemetry.writer import TelemetryWriter

TS0 = 1_700_000_000.0


def _points(start: int, n: int, measurement: str = "m") -> list[Point]:
    return [Point.make(measurement, {"d": "x"}, {"v": i}, TS0 + i) for i in range(start, start + n)]


def _values(server: InfluxV1, measurement: str = "m") -> list[int]:
    series = server.query(f'SELECT "v" FROM "{measurement}"')["results"][0].get("series")
    return sorted(int(row[1]) for row in series[0]["values"]) if series else []


@pytest.fixture
def influxd(tmp_path: Path) -> Iterator[InfluxV1]:
    """An influxd of this test's own, so it can be stopped and started again (same port)."""
    server = InfluxV1(_binary("influxd"), tmp_path / "influxd")
    server.root.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_torn_segments_are_quarantined_and_later_points_delivered(influxd: InfluxV1, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool = Spool(spool_dir, 1 << 20)
    spool.append([encode(p) for p in _points(0, 10)])
    spool.append([encode(p) for p in _points(10, 10)])
    spool.append([encode(p) for p in _points(20, 10)])
    first, second, _third = sorted(spool_dir.glob("*.lp"))
    first.write_bytes(first.read_bytes()[:40] + b"\xe6\x97")  # a torn UTF-8 character, as a crash leaves it
    second.write_bytes(b"\n".join(second.read_bytes().split(b"\n")[:4]))  # lines missing

    writer = TelemetryWriter(InfluxV1Sink(influxd.url, influxd.database), spool=Spool(spool_dir, 1 << 20),
                             batch_size=10, flush_interval=0.02)  # fmt: skip
    async with writer:
        for point in _points(30, 10):
            writer.submit(point)
        await writer.wait_until(lambda s: s.spool_lines == 0 and s.written == 20, within=30)
        assert writer.health().state == "ok"
    assert writer.stats.quarantined == 20
    assert sorted(p.name for p in (spool_dir / "quarantine").iterdir()) == [first.name, second.name]
    assert _values(influxd) == list(range(20, 40))


class FlakySink:
    """Passes writes to a real sink, but the first call fails with an error nobody expected."""

    name = "flaky"

    def __init__(self, inner: InfluxV1Sink) -> None:
        self.inner, self.failed = inner, False

    def write(self, lines: Sequence[str]) -> None:
        if not self.failed:
            self.failed = True
            raise RuntimeError("a bug in a sink")
        self.inner.write(lines)

    def check(self) -> None:
        self.inner.check()

    def close(self) -> None:
        self.inner.close()


async def test_a_writer_failure_is_logged_counted_and_the_writer_restarted(
    influxd: InfluxV1, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = TelemetryWriter(FlakySink(InfluxV1Sink(influxd.url, influxd.database)),
                             spool=Spool(tmp_path / "spool", 1 << 20), batch_size=10, flush_interval=0.02)  # fmt: skip
    writer.restart_pause = 0.05
    async with writer:
        for point in _points(0, 10):
            writer.submit(point)
        await writer.wait_until(lambda s: s.restarts == 1, within=30)
        for point in _points(10, 10):
            writer.submit(point)
        await writer.wait_until(lambda s: s.written == 20 and s.spool_lines == 0, within=30)
        assert writer.health().state == "ok"
    assert _values(influxd) == list(range(20))  # the batch in flight was parked, then delivered
    assert any("telemetry writer failed (restart 1)" in r.message and r.exc_info for r in caplog.records)


async def test_spool_at_its_cap_and_server_back_fresh_points_go_straight_to_it(
    influxd: InfluxV1, tmp_path: Path
) -> None:
    sink = InfluxV1Sink(influxd.url, influxd.database)
    spool = Spool(tmp_path / "spool", sum(len(encode(p)) + 1 for p in _points(0, 30)))  # just the first 30 points
    writer = TelemetryWriter(sink, spool=spool, batch_size=10, flush_interval=0.02)
    influxd.stop()
    async with writer:
        for point in _points(0, 30):
            writer.submit(point)
        await writer.wait_until(lambda s: s.spool_lines == 30, within=30)
        influxd.start()
        for point in _points(30, 50):
            writer.submit(point)
        await writer.wait_until(lambda s: s.written == 80 and s.spool_lines == 0, within=30)
        assert writer.stats.spool_dropped == 0  # nothing old pushed out to make room
        assert writer.health().state == "ok"
    assert _values(influxd) == list(range(80))


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs (needs root to mount; skipped where that is refused)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write zeros until the disk is full to the last byte."""
    with open(path, "wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 512)


async def test_full_disk_with_the_server_up_loses_no_fresh_point(
    influxd: InfluxV1, tmp_path: Path, full_disk: Path
) -> None:
    writer = TelemetryWriter(InfluxV1Sink(influxd.url, influxd.database), spool=Spool(full_disk / "spool", 1 << 30),
                             batch_size=10, flush_interval=0.02)  # fmt: skip
    influxd.stop()
    async with writer:
        for point in _points(0, 20):
            writer.submit(point)
        await writer.wait_until(lambda s: s.spool_lines == 20, within=30)
        with pytest.raises(OSError, match="No space left"):
            _fill(full_disk / "filler")
        influxd.start()
        for point in _points(20, 100):
            writer.submit(point)
        await writer.wait_until(lambda s: s.written == 120 and s.spool_lines == 0, within=30)
        assert writer.stats.spool_dropped == 0 and writer.health().state == "ok"
    assert _values(influxd) == list(range(120))
    shutil.rmtree(full_disk / "spool")


async def test_a_flood_of_drops_logs_a_line_now_and_then_not_one_per_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Down:
        name = "down"

        def write(self, lines: Sequence[str]) -> None:
            raise SinkUnavailable(self.name, "connection refused")

        def check(self) -> None: ...

        def close(self) -> None: ...

    writer = TelemetryWriter(Down(), batch_size=5, flush_interval=0.01)  # no spool: every batch is lost
    caplog.set_level(logging.ERROR, logger="telemetry")
    async with writer:
        for point in _points(0, 500):
            writer.submit(point)
        await writer.wait_until(lambda s: s.buffer_dropped == 500, within=30)
        assert writer.health().state == "dropping"
        assert writer.health().state == "spooling"  # nothing dropped since the last look
    drops = [r for r in caplog.records if "DROPPED" in r.message]
    assert 1 <= len(drops) <= 2, [r.message for r in drops]
