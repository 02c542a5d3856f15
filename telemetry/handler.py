"""TelemetryHandler: turns platform happenings into points and hands them to the writer.

Implements :class:`twins.hooks.PlatformHandler` plus direct ``record_*`` calls. Every method is
non-blocking: it builds a point and submits it to the writer's bounded buffer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from prometheus_client.core import Metric

from telemetry import schema
from telemetry.dwell import DwellTracker
from telemetry.lineproto import Point
from telemetry.metrics import counter, gauge, labelled_counter
from telemetry.schema import GeoOrigin, bounded, safe_name
from telemetry.vocabulary import ALARM_CLEARED, ALARM_STATES, ALLOW, CREDENTIALS, DENY
from telemetry.writer import TelemetryWriter
from twins.hooks import DeviceEvent, PlatformActions, TwinChange

log = logging.getLogger(__name__)

_DOOR_OPENED_DIRECTION = {"access": "in", "key": "in", "exit_button": "out"}
_MAX_TRACKED = 100_000  # devices / alarms remembered for online and active-alarm state


class TelemetryHandler:
    """Feeds a :class:`TelemetryWriter` from events, twin changes and direct platform calls.

    ``tag_groups`` maps an ``rfid_tag`` device id to its group (elderly/child/staff/asset) from the
    community file; ``origin`` is the site plan's lat/lon origin for map positions.
    """

    def __init__(
        self,
        writer: TelemetryWriter,
        *,
        site: str,
        worker: str = "platform",
        tag_groups: Mapping[str, str] | None = None,
        origin: GeoOrigin | None = None,
        max_plates: int = 10_000,
    ) -> None:
        self.writer = writer
        self.site = site
        self.worker = worker
        self.tag_groups = dict(tag_groups or {})
        self.origin = origin
        self.dwell = DwellTracker(max_plates)
        self._online: dict[tuple[str, str], bool] = {}
        self._active_alarms: dict[str, set[str]] = {}
        self._last_event_us: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        # what /metrics counts (bounded keys: result x credential, state x kind, rule ids)
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.alarms: Counter[tuple[str, str]] = Counter()
        self.firings: Counter[str] = Counter()

    def _submit(self, point: Point | None) -> None:
        if point is not None:
            self.writer.submit(point)

    def _submit_event(self, point: Point | None) -> None:
        """An event point (counted, never overwritten): InfluxDB keeps one point per series and timestamp,
        so two events of one series in the same microsecond (a rule raising alarms for many people at
        once, a device stamping whole seconds) would become one. Such a point moves 1 µs later."""
        if point is None:
            return
        key = (point.measurement, point.tags)
        last = self._last_event_us.get(key)
        us = round(point.ts * 1_000_000)
        if last is not None and us <= last:
            us = last + 1
            point = point._replace(ts=us / 1_000_000)
        if last is None and len(self._last_event_us) >= _MAX_TRACKED:
            self._last_event_us.clear()
        self._last_event_us[key] = us
        self.writer.submit(point)

    # -- PlatformHandler --------------------------------------------------------------------
    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        """Access decisions, passages and plate captures become points; other events are ignored."""
        self.handle_event(event)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        """Charted reported fields → ``twin_state``; an ``rfid_tag`` position → ``tag_position``."""
        self.handle_twin_change(change)

    def handle_event(self, event: DeviceEvent) -> None:
        """Synchronous body of :meth:`on_event`."""
        data = event.data
        if event.type == "access_decided":
            self.record_access(
                event.site, event.device_id, event.ts,
                allowed=bool(data.get("allowed")),
                credential_kind=_str(data.get("credential_kind")),
                reason=_str(data.get("reason")),
                direction=_str(data.get("direction")) or "in",
                kind=event.kind,
            )  # fmt: skip
        elif event.type == "door_opened":
            by = _str(data.get("by")) or "access"
            direction = _DOOR_OPENED_DIRECTION.get(by, "in")
            self._submit_event(
                schema.passage_point(event.site, event.device_id, event.kind, event.ts, direction=direction, via=by)
            )
        elif event.type == "plate_captured":
            self._plate_captured(event)

    def _plate_captured(self, event: DeviceEvent) -> None:
        data = event.data
        direction = _str(data.get("direction")) or "in"
        plate = _str(data.get("plate"))
        confidence = data.get("confidence")
        self._submit_event(
            schema.vehicle_point(
                event.site, event.device_id, event.ts, direction=direction, plate=plate,
                confidence=confidence if isinstance(confidence, int | float) else None,
            )
        )  # fmt: skip
        if event.kind == "vehicle_gate":
            self._submit_event(
                schema.passage_point(
                    event.site, event.device_id, event.kind, event.ts, direction=direction, via="plate"
                )
            )
        if plate:
            dwell = self.dwell.observe(plate, direction, event.ts)
            if dwell is not None:
                self._submit(schema.dwell_point(event.site, event.device_id, event.ts, dwell))

    def handle_twin_change(self, change: TwinChange) -> None:
        """Synchronous body of :meth:`on_twin_change`."""
        if change.kind == "rfid_tag":
            position = change.changed.get("position")
            if isinstance(position, Mapping) and _is_num(position.get("x")) and _is_num(position.get("y")):
                rssi = change.reported.get("rssi")
                reader = change.reported.get("reader")
                self._submit(
                    schema.tag_position_point(
                        change.site, change.device_id, self.tag_groups.get(change.device_id), change.ts,
                        x=float(position["x"]), y=float(position["y"]), origin=self.origin,
                        rssi=rssi if isinstance(rssi, int | float) else None,
                        reader=reader if isinstance(reader, str) else None,
                    )
                )  # fmt: skip
            return
        self._submit(schema.twin_state_point(change.site, change.device_id, change.kind, change.ts, change.changed))

    # -- direct calls from the platform -----------------------------------------------------
    def record_telemetry(self, site: str, device_id: str, kind: str, ts: float, metrics: dict[str, float]) -> None:
        """A device's ``telemetry`` message."""
        self._submit(schema.telemetry_point(site, device_id, kind, ts, metrics))

    def record_status(self, site: str, device_id: str, kind: str, ts: float, online: bool) -> None:
        """A device's retained ``status`` (online/offline); a return after offline counts a reconnect."""
        key = (site, device_id)
        was = self._online.get(key)
        if was is None and len(self._online) >= _MAX_TRACKED:
            self._online.clear()
        self._online[key] = online
        self._submit_event(schema.status_point(site, device_id, kind, ts, online, was))

    def record_health(self, ts: float, counters: dict[str, float]) -> None:
        """Platform health counters (cumulative totals and gauges), plus the writer's own."""
        merged: dict[str, Any] = dict(counters)
        merged.update(self.writer.stats.as_counters())
        self._submit(schema.health_point(self.site, self.worker, ts, merged))

    def record_access(
        self,
        site: str,
        device_id: str,
        ts: float,
        allowed: bool,
        credential_kind: str | None,
        reason: str | None,
        direction: str | None,
        *,
        kind: str = "door_lock",
        score: float | None = None,
    ) -> None:
        """An access decision (central or edge); who it was is never recorded."""
        self.decisions[(ALLOW if allowed else DENY, bounded(credential_kind, CREDENTIALS))] += 1
        self._submit_event(
            schema.access_point(
                site, device_id, kind, ts, allowed=allowed, credential_kind=credential_kind,
                reason=reason, direction=direction, score=score,
            )
        )  # fmt: skip

    def record_alarm(
        self, site: str, alarm_id: str, rule_id: str, kind: str, severity: str, state: str, ts: float
    ) -> None:
        """An alarm was raised, acknowledged or cleared; tracks the site's active count."""
        self.alarms[(bounded(state, ALARM_STATES), safe_name(kind))] += 1
        active = self._active_alarms.setdefault(site, set())
        if state == ALARM_CLEARED:
            active.discard(alarm_id)
        elif len(active) < _MAX_TRACKED:
            active.add(alarm_id)
        self._submit_event(schema.alarm_point(site, alarm_id, rule_id, kind, severity, state, ts, len(active)))

    def record_rule_firing(self, site: str, rule_id: str, ts: float) -> None:
        """A rule fired."""
        self.firings[safe_name(rule_id)] += 1
        self._submit_event(schema.rule_firing_point(site, rule_id, ts))

    def metrics(self) -> Iterable[Metric]:
        """What ``/metrics`` shows of telemetry: decisions, alarms, rule firings and the writer."""
        yield labelled_counter("access_decisions", "Access decisions, by result and credential.",
                               ["result", "credential"], self.decisions.items())  # fmt: skip
        yield labelled_counter("alarms", "Alarm state changes, by state and kind.", ["state", "kind"],
                               self.alarms.items())  # fmt: skip
        yield labelled_counter("rule_firings", "Times a rule's actions ran, by rule.", ["rule"],
                               [((rule,), n) for rule, n in self.firings.items()])  # fmt: skip
        stats = self.writer.stats
        for name in ("submitted", "written", "replayed", "buffer_dropped", "spool_dropped", "rejected", "invalid",
                     "quarantined", "restarts", "write_errors"):  # fmt: skip
            yield counter(f"telemetry_{name}", f"Telemetry writer: points {name.replace('_', ' ')}.",
                          float(getattr(stats, name)))  # fmt: skip
        yield gauge("telemetry_spool_bytes", "Telemetry points waiting on disk, bytes.", stats.spool_bytes)
        yield gauge("telemetry_spool_lines", "Telemetry points waiting on disk.", stats.spool_lines)
        yield gauge("telemetry_buffered", "Telemetry points waiting in memory.", stats.buffered)
        yield gauge("telemetry_server_up", "1 while the time-series server takes points.", float(stats.server_up))
        yield gauge("telemetry_misconfigured", "1 while the server refuses the settings.", float(stats.misconfigured))
        yield gauge("telemetry_running", "1 while the telemetry writer runs.", float(stats.running))

    # -- lifecycle ----------------------------------------------------------------------------
    async def run(self) -> None:
        """The writer loop; put it in the platform's TaskGroup and call :meth:`stop` to end it."""
        await self.writer.run()

    def stop(self) -> None:
        """Flush and end :meth:`run`."""
        self.writer.stop()

    async def __aenter__(self) -> TelemetryHandler:
        """Check the sink's settings with the server (raises :class:`telemetry.sinks.SinkMisconfigured`
        naming what cannot work; an unreachable server is an outage, not an error), then start the writer."""
        await self.writer.check()
        await self.writer.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.writer.__aexit__(exc_type, exc, tb)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
