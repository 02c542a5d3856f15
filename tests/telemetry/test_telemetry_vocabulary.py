"""One vocabulary: the dashboards, the platform's health counters, the rules' alarm states and the docs use
the names of telemetry.vocabulary and nothing else; event points are never overwritten by their twins."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from telemetry_servers import InfluxV1

from anfang.service import Counters
from registry.alarms import STATES
from telemetry import vocabulary as v
from telemetry.dashboards import build_dashboards, dashboard_json
from telemetry.handler import TelemetryHandler
from telemetry.sinks import InfluxV1Sink
from telemetry.writer import TelemetryWriter, WriterStats

REPO = Path(__file__).resolve().parents[2]


def _queries() -> list[str]:
    return [t["query"] for d in build_dashboards() for p in dashboard_json(d)["panels"] for t in p["targets"]]


def test_dashboards_read_only_vocabulary_names() -> None:
    for query in _queries():
        measurements = re.findall(r'FROM "([^"]+)"', query)
        assert measurements, query
        for measurement in measurements:
            assert measurement in v.MEASUREMENTS, query
        tags, fields = v.SCHEMA[measurements[-1]]
        aliases = set(re.findall(r'AS "([^"]+)"', query))
        for name in re.findall(r'"([^"]+)"', query):
            assert name in v.MEASUREMENTS | tags | fields | aliases, f"{name!r} in {query}"
        for value in re.findall(r"\"state\" = '([^']+)'", query):
            assert value in v.ALARM_STATES, query


def test_the_platform_and_the_writer_report_vocabulary_names() -> None:
    numeric = {k for k, val in Counters().as_json().items() if not isinstance(val, dict)}
    assert numeric <= v.PLATFORM_HEALTH_FIELDS
    assert set(WriterStats().as_counters()) == v.WRITER_FIELDS


def test_alarm_states_and_fence_kinds_are_the_rules_engine_ones() -> None:
    assert set(STATES) == v.ALARM_STATES
    raised = set(re.findall(r"^\s+kind: (\w+)$", "\n".join(
        p.read_text() for p in (REPO / "rules" / "builtin").glob("*.yaml")), re.M))  # fmt: skip
    assert set(v.FENCE_ALARM_KINDS) <= raised


def test_the_docs_schema_table_is_the_vocabulary() -> None:
    text = (REPO / "docs" / "telemetry.md").read_text()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_]+)` \|.*$", text, re.M)}
    assert set(rows) >= v.MEASUREMENTS
    for measurement, (tags, fields) in v.SCHEMA.items():
        named = set(re.findall(r"`([a-z_0-9]+)`", rows[measurement]))
        if measurement == v.PLATFORM_HEALTH:
            fields = v.PLATFORM_HEALTH_FIELDS  # the writer's are listed as `telemetry_*`
        assert tags | fields <= named, (measurement, sorted(tags | fields - named))


async def test_202_alarms_in_the_same_microsecond_are_202_points_stored(influx_v1: InfluxV1) -> None:
    influx_v1.query('DROP MEASUREMENT "alarm"')
    writer = TelemetryWriter(InfluxV1Sink(influx_v1.url, influx_v1.database), batch_size=50, flush_interval=0.02)
    handler = TelemetryHandler(writer, site="s")
    async with handler:
        for n in range(202):  # one rule raising for many residents at once
            handler.record_alarm("s", f"a-{n}", "elderly-left-fence", "elderly_left_fence", "high", "raised", 1e9)
        await writer.wait_until(lambda s: s.written == 202, within=30)
    result = influx_v1.query('SELECT count("alarm_id") FROM "alarm"')
    assert result["results"][0]["series"][0]["values"][0][1] == 202


class Capture:
    """Keeps the lines it is given (the same handler and writer as the platform's, no server)."""

    name = "capture"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, lines: Sequence[str]) -> None:
        self.lines.extend(lines)

    def check(self) -> None: ...

    def close(self) -> None: ...


@pytest.mark.parametrize("ts", [1e9, 1_700_000_000.123456])
async def test_event_points_of_one_series_get_distinct_timestamps(ts: float) -> None:
    sink = Capture()
    writer = TelemetryWriter(sink, flush_interval=0.02)
    handler = TelemetryHandler(writer, site="s")
    async with handler:
        for _ in range(5):
            handler.record_access("s", "door-1", ts, False, "card", "revoked", "in")
            handler.record_rule_firing("s", "r", ts)
        await writer.wait_until(lambda s: s.written == 10, within=30)
    stamps = {m: [int(ln.rsplit(" ", 1)[1]) for ln in sink.lines if ln.startswith(m)] for m in ("access", "rule")}
    for series in stamps.values():
        assert len(series) == 5 and series == sorted(set(series)) and series[0] == round(ts * 1e6) * 1000
