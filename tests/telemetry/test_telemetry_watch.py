"""A stopped, dropping or misconfigured telemetry writer raises an alarm (the one alarm system), clears it
when well again, and /readyz learns whether telemetry can be delivered."""

from __future__ import annotations

from collections.abc import Sequence

from anfang.services import TelemetryWatch
from registry.alarms import AlarmManager, InMemoryAlarmStore
from telemetry.handler import TelemetryHandler
from telemetry.lineproto import Point
from telemetry.sinks import SinkMisconfigured, SinkUnavailable
from telemetry.writer import TelemetryWriter


class Switchable:
    """A sink that is down, refuses our settings, or takes everything."""

    name = "switchable"

    def __init__(self) -> None:
        self.mode = "down"
        self.lines: list[str] = []

    def write(self, lines: Sequence[str]) -> None:
        if self.mode == "down":
            raise SinkUnavailable(self.name, "connection refused")
        if self.mode == "refused":
            raise SinkMisconfigured(self.name, "database 'x' not found", 404)
        self.lines.extend(lines)

    def check(self) -> None: ...

    def close(self) -> None: ...


def _point(i: int) -> Point:
    return Point.make("m", {"d": "x"}, {"v": i}, 1e9 + i)


async def test_a_dropping_writer_raises_an_alarm_that_clears_when_it_delivers_again() -> None:
    sink = Switchable()
    writer = TelemetryWriter(sink, batch_size=5, flush_interval=0.01)  # no spool: an outage drops points
    handler = TelemetryHandler(writer, site="s")
    alarms = AlarmManager("s", InMemoryAlarmStore())
    watch = TelemetryWatch(handler, alarms)
    assert writer.readiness() == "the telemetry writer is not running"
    async with writer:
        assert writer.readiness() == "ok"
        for i in range(10):
            writer.submit(_point(i))
        await writer.wait_until(lambda s: s.buffer_dropped == 10, within=30)
        assert writer.readiness() == "ok"  # an outage is not a setting: still ready
        await watch.check(None, 100.0)
        (alarm,) = await alarms.store.list(active_only=True)
        assert alarm.kind == "telemetry_dropping" and alarm.severity == "high" and "10 points dropped" in alarm.message

        sink.mode = "ok"
        writer.submit(_point(11))
        await writer.wait_until(lambda s: s.written == 1, within=30)
        await watch.check(None, 110.0)
        assert await alarms.store.list(active_only=True) == []

        sink.mode = "refused"
        writer.submit(_point(12))
        await writer.wait_until(lambda s: s.misconfigured, within=30)
        assert writer.readiness() == "misconfigured: switchable: database 'x' not found (HTTP 404)"
        await watch.check(None, 120.0)
        (alarm,) = await alarms.store.list(active_only=True)
        assert alarm.kind == "telemetry_misconfigured"
    await watch.check(None, 130.0)  # stopped: the open alarm is bumped, not duplicated
    (alarm,) = await alarms.store.list(active_only=True)
    assert alarm.count == 2
