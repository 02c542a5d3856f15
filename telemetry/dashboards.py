"""Grafana dashboards as code (InfluxQL, so they run on InfluxDB 1.x, 2.x via v1 compat, and 3.x).

``build_dashboards()`` returns the dashboard models; ``anfang dashboards build`` writes them to
``dashboards/json/`` (committed, provisioned by Grafana) and a test keeps the two in sync.
Queries use Grafana's ``$timeFilter`` / ``$__interval`` macros and the ``$site`` variable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telemetry import vocabulary as v

DATASOURCE_UID = "anfang-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
SITE = f'"{v.T_SITE}" =~ /^$site$/'


@dataclass(frozen=True, slots=True)
class Query:
    """One InfluxQL target of a panel."""

    text: str
    table: bool = False
    alias: str | None = None

    def target(self, ref_id: str) -> dict[str, Any]:
        """The Grafana target JSON (raw InfluxQL)."""
        out: dict[str, Any] = {
            "refId": ref_id,
            "datasource": DATASOURCE,
            "query": self.text,
            "rawQuery": True,
            "resultFormat": "table" if self.table else "time_series",
        }
        if self.alias:
            out["alias"] = self.alias
        return out


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel: type, title, description (shown as the (i) tooltip and in docs), queries, layout."""

    kind: str
    title: str
    description: str
    queries: tuple[Query, ...]
    w: int = 12
    h: int = 8
    unit: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A dashboard: uid, title, description and its panels (laid out left to right, top to bottom)."""

    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]


def _site_variable() -> dict[str, Any]:
    return {
        "name": "site",
        "label": "Site",
        "type": "query",
        "datasource": DATASOURCE,
        "query": f'SHOW TAG VALUES FROM "{v.DEVICE_TELEMETRY}" WITH KEY = "{v.T_SITE}"',
        "definition": f'SHOW TAG VALUES FROM "{v.DEVICE_TELEMETRY}" WITH KEY = "{v.T_SITE}"',
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    """The Grafana JSON model of one panel."""
    defaults: dict[str, Any] = {"custom": dict(panel.custom)}
    if panel.unit:
        defaults["unit"] = panel.unit
    if panel.kind == "stat":
        defaults["noValue"] = "0"  # a count over no matching rows is 0, not "No data"
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.w, "h": panel.h},
        "targets": [q.target(chr(ord("A") + i)) for i, q in enumerate(panel.queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": dict(panel.options),
    }


def dashboard_json(dash: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of a dashboard (what provisioning reads and the push API uploads)."""
    panels = []
    x = y = row_h = 0
    for index, panel in enumerate(dash.panels, start=1):
        if x + panel.w > 24:
            x, y, row_h = 0, y + row_h, 0
        panels.append(panel_json(panel, index, x, y))
        x += panel.w
        row_h = max(row_h, panel.h)
    return {
        "uid": dash.uid,
        "title": dash.title,
        "description": dash.description,
        "tags": ["anfang"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": [_site_variable()]},
        "annotations": {"list": []},
        "panels": panels,
    }


_BARS = {"drawStyle": "bars", "fillOpacity": 80, "stacking": {"mode": "normal", "group": "A"}}
_STAT = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"}


def _q(fields: str, measurement: str, where: str = "", group: str = "") -> str:
    """``SELECT fields FROM "measurement" WHERE <site> AND [where AND] $timeFilter [group]``."""
    cond = f"{SITE} AND {where} AND $timeFilter" if where else f"{SITE} AND $timeFilter"
    return f'SELECT {fields} FROM "{measurement}" WHERE {cond}' + (f" {group}" if group else "")


def _eq(tag: str, value: str) -> str:
    return f"\"{tag}\" = '{value}'"


def _one_of(tag: str, values: tuple[str, ...] | frozenset[str]) -> str:
    return f'"{tag}" =~ /^({"|".join(sorted(values))})$/'


def _count_by(tag: str) -> str:
    return f'GROUP BY time(1h), "{tag}" fill(0)'


_COUNT = f'sum("{v.F_COUNT}")'
_RAISED = _eq(v.T_STATE, v.ALARM_RAISED)
_FENCE = _one_of(v.T_KIND, v.FENCE_ALARM_KINDS)


def _overview() -> Dashboard:
    online = (
        f'SELECT last("{v.F_ONLINE}") AS "online" FROM "{v.DEVICE_STATUS}" '
        f'WHERE {SITE} AND $timeFilter GROUP BY "{v.T_DEVICE}"'
    )
    return Dashboard(
        "anfang-overview",
        "Community overview",
        "Entries and exits, denied attempts, alarms and device availability for the whole community.",
        (
            Panel("stat", "Active alarms", "Alarms currently raised and not cleared (last known count).",
                  (Query(_q(f'last("{v.F_ACTIVE_TOTAL}")', v.ALARM)),), w=6, h=5, options=_STAT),
            Panel("stat", "Devices online", "Devices whose last status in the range was online.",
                  (Query(f'SELECT sum("online") FROM ({online}) WHERE $timeFilter'),), w=6, h=5, options=_STAT),
            Panel("stat", "Devices offline", "Devices whose last status in the range was offline.",
                  (Query(f'SELECT count("online") FROM ({online}) WHERE "online" = 0 AND $timeFilter'),),
                  w=6, h=5, options=_STAT),
            Panel("stat", "Denied attempts", "Access attempts refused by any door or gate in the range.",
                  (Query(_q(_COUNT, v.ACCESS, _eq(v.T_RESULT, v.DENY))),), w=6, h=5, options=_STAT),
            Panel("timeseries", "Entries per hour by gate and door",
                  "People through unit doors (credential or key) and vehicles in at gates, per hour.",
                  (Query(_q(_COUNT, v.PASSAGE, _eq(v.T_DIRECTION, v.IN), _count_by(v.T_DEVICE)),
                         alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Exits per hour by gate and door",
                  "Exit-button openings of unit doors and vehicles out at gates, per hour.",
                  (Query(_q(_COUNT, v.PASSAGE, _eq(v.T_DIRECTION, v.OUT), _count_by(v.T_DEVICE)),
                         alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Denied attempts per hour by credential",
                  "Refused access decisions per hour, split by credential (face, card, QR, PIN, plate).",
                  (Query(_q(_COUNT, v.ACCESS, _eq(v.T_RESULT, v.DENY), _count_by(v.T_CREDENTIAL)),
                         alias="$tag_credential"),), custom=_BARS),
            Panel("timeseries", "Alarms raised per hour by kind",
                  "New alarms per hour grouped by alarm kind (forced door, fence, watchlist, ...).",
                  (Query(_q(_COUNT, v.ALARM, _RAISED, _count_by(v.T_KIND)), alias="$tag_kind"),), custom=_BARS),
        ),
    )  # fmt: skip


def _people() -> Dashboard:
    group = _one_of(v.T_TAG_GROUP, ("elderly", "child"))
    by_tag = f'GROUP BY "{v.T_TAG}", "{v.T_TAG_GROUP}"'
    return Dashboard(
        "anfang-people",
        "Elderly and children",
        "Where the worn RFID tags of elderly residents and children were last located, and fence alarms. "
        "Tags are shown by tag id; who wears which tag stays in the community database.",
        (
            Panel("geomap", "Tag positions",
                  "Last known position of every elderly/child tag on the site map (from RFID readers).",
                  (Query(_q(f'last("{v.F_LAT}") AS "latitude", last("{v.F_LON}") AS "longitude"', v.TAG_POSITION,
                            group, by_tag), table=True),),
                  w=14, h=14,
                  options={
                      "view": {"id": "fit", "zoom": 17},
                      "controls": {"showZoom": True, "mouseWheelZoom": True, "showScale": True},
                      "basemap": {"type": "default", "name": "Basemap"},
                      "layers": [{
                          "type": "markers", "name": "Tags",
                          "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                          "config": {"showLegend": True, "style": {
                              "size": {"fixed": 8}, "color": {"field": v.T_TAG_GROUP},
                              "text": {"mode": "field", "field": v.T_TAG},
                          }},
                      }],
                  }),
            Panel("table", "Last seen per tag",
                  "Time each tag was last located, its site-plan position (metres) and the reader that saw it.",
                  (Query(_q(f'last("{v.F_X}") AS "x_m", "{v.F_Y}" AS "y_m", "{v.F_READER}"', v.TAG_POSITION, group,
                            by_tag), table=True),),
                  w=10, h=14),
            Panel("timeseries", "Fence alarms per hour",
                  "Geofence alarms (a tag leaving its allowed area) raised per hour, by rule.",
                  (Query(_q(_COUNT, v.ALARM, f"{_FENCE} AND {_RAISED}", _count_by(v.T_RULE)), alias="$tag_rule"),),
                  custom=_BARS),
            Panel("table", "Recent fence alarms",
                  "The latest fence alarm state changes (raised, acknowledged, cleared).",
                  (Query(_q(f'"{v.F_ALARM_ID}", "{v.T_STATE}", "{v.T_SEVERITY}", "{v.T_RULE}"', v.ALARM, _FENCE,
                            "ORDER BY time DESC LIMIT 50"), table=True),)),
            Panel("timeseries", "Tag sightings per hour",
                  "How often tags were located per hour, by group — a drop means readers or tags are failing.",
                  (Query(_q(f'count("{v.F_X}")', v.TAG_POSITION, group, _count_by(v.T_TAG_GROUP)),
                         alias="$tag_tag_group"),), w=24, custom=_BARS),
        ),
    )  # fmt: skip


def _vehicles() -> Dashboard:
    return Dashboard(
        "anfang-vehicles",
        "Vehicles",
        "Vehicle traffic at the gates: in/out, unknown and unread plates, dwell time.",
        (
            Panel("timeseries", "Vehicles in / out per hour",
                  "Plate captures at gate cameras per hour, by direction.",
                  (Query(_q(_COUNT, v.VEHICLE, group=_count_by(v.T_DIRECTION)), alias="$tag_direction"),),
                  custom=_BARS),
            Panel("timeseries", "Unknown plates per hour",
                  "Plates read but not on the allow list (denied plate access), per gate.",
                  (Query(_q(_COUNT, v.ACCESS, f"{_eq(v.T_CREDENTIAL, 'plate')} AND {_eq(v.T_RESULT, v.DENY)}",
                            _count_by(v.T_DEVICE)), alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Unread plates per hour",
                  "Vehicles whose plate the camera could not read (no plate in the capture).",
                  (Query(_q(_COUNT, v.VEHICLE, _eq(v.T_PLATE_READ, v.NO), _count_by(v.T_DEVICE)),
                         alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Dwell time",
                  "Mean and longest stay (minutes) of vehicles that left in each hour (entry paired by plate).",
                  (Query(_q(f'mean("{v.F_DWELL_S}") / 60 AS "mean", max("{v.F_DWELL_S}") / 60 AS "max"',
                            v.VEHICLE_DWELL, group="GROUP BY time(1h) fill(none)")),), unit="m"),
            Panel("table", "Recent plate captures",
                  "The latest plate captures with read confidence, direction and gate.",
                  (Query(_q(f'"{v.F_PLATE}", "{v.F_CONFIDENCE}", "{v.T_DIRECTION}", "{v.T_DEVICE}"', v.VEHICLE,
                            group="ORDER BY time DESC LIMIT 50"), table=True),), w=24),
        ),
    )  # fmt: skip


def _devices() -> Dashboard:
    by_device = f'GROUP BY time($__interval), "{v.T_DEVICE}" fill(none)'
    battery, rssi, temperature, _uptime = v.TELEMETRY_METRICS
    return Dashboard(
        "anfang-devices",
        "Device health",
        "Battery, signal, temperature, last report and reconnects of every device.",
        (
            Panel("timeseries", "Battery", "Battery level (%) per device.",
                  (Query(_q(f'mean("{battery}")', v.DEVICE_TELEMETRY, group=by_device), alias="$tag_device"),),
                  unit="percent"),
            Panel("timeseries", "RSSI", "Radio signal strength (dBm) per device; below -80 dBm is weak.",
                  (Query(_q(f'mean("{rssi}")', v.DEVICE_TELEMETRY, group=by_device), alias="$tag_device"),),
                  unit="dBm"),
            Panel("table", "Last report", "When each device last sent telemetry, with its latest battery.",
                  (Query(_q(f'last("{battery}") AS "battery"', v.DEVICE_TELEMETRY,
                            group=f'GROUP BY "{v.T_DEVICE}", "{v.T_KIND}"'), table=True),)),
            Panel("timeseries", "Reconnects per hour",
                  "Times a device came back online after being offline — flapping devices stand out.",
                  (Query(_q(f'sum("{v.F_RECONNECT}")', v.DEVICE_STATUS, group=_count_by(v.T_DEVICE)),
                         alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Temperature", "Device temperature (°C).",
                  (Query(_q(f'mean("{temperature}")', v.DEVICE_TELEMETRY, group=by_device), alias="$tag_device"),),
                  unit="celsius"),
            Panel("state-timeline", "Online", "Online (1) / offline (0) per device over time.",
                  (Query(_q(f'last("{v.F_ONLINE}")', v.DEVICE_STATUS,
                            group=f'GROUP BY time($__interval), "{v.T_DEVICE}" fill(previous)'),
                         alias="$tag_device"),)),
        ),
    )  # fmt: skip


def _rate(field_name: str, alias: str) -> str:
    return f'non_negative_derivative(last("{field_name}"), 1s) AS "{alias}"'


def _platform() -> Dashboard:
    interval = f'GROUP BY time($__interval), "{v.T_WORKER}" fill(none)'
    w = v.WRITER_PREFIX
    return Dashboard(
        "anfang-platform",
        "Platform health",
        "The platform's own health, on the names it also exposes on /metrics: message ingest rate, latency, "
        "rejections, queue depths, rule firings, alarms and the telemetry writer.",
        (
            Panel("timeseries", "Ingest rate", "MQTT messages per second into and out of the platform.",
                  (Query(_q(f"{_rate(v.H_RECEIVED, 'in')}, {_rate(v.H_PUBLISHED, 'out')}", v.PLATFORM_HEALTH,
                            group=interval)),), unit="reqps"),
            Panel("timeseries", "Ingest latency p99", "99th percentile of broker-to-twin-applied latency.",
                  (Query(_q(f'max("{v.H_LATENCY_P99}")', v.PLATFORM_HEALTH, group=interval)),), unit="ms"),
            Panel("timeseries", "Rejections", "Rejected reports/events per second (answered on errors topics).",
                  (Query(_q(_rate(v.H_REJECTED, "rejected"), v.PLATFORM_HEALTH, group=interval)),), unit="reqps"),
            Panel("timeseries", "Queue depth",
                  "Messages waiting for ingest and in the deepest handler queue (both bounded) — near the cap "
                  "means overload.",
                  (Query(_q(f'max("{v.H_INBOX_DEPTH}") AS "inbox", max("{v.H_DISPATCH_DEPTH}") AS "dispatch"',
                            v.PLATFORM_HEALTH, group=interval)),)),
            Panel("timeseries", "Rule firings per hour", "How often each rule's actions ran.",
                  (Query(_q(_COUNT, v.RULE_FIRING, group=_count_by(v.T_RULE)), alias="$tag_rule"),), custom=_BARS),
            Panel("timeseries", "Alarm changes per hour",
                  "Alarm state changes per hour: raised, acknowledged and cleared.",
                  (Query(_q(_COUNT, v.ALARM, group=_count_by(v.T_STATE)), alias="$tag_state"),), custom=_BARS),
            Panel("timeseries", "Telemetry writer",
                  "Points waiting in the disk spool, and points dropped (buffer full / spool cap / disk) or "
                  "quarantined (damaged spool segments) — those must stay 0.",
                  (Query(_q(f'max("{w}spool_lines") AS "spooled", max("{w}buffer_dropped") AS "buffer dropped", '
                            f'max("{w}spool_dropped") AS "spool dropped", max("{w}quarantined") AS "quarantined"',
                            v.PLATFORM_HEALTH, group=interval)),)),
            Panel("timeseries", "Telemetry writer state",
                  "1 while the time-series server takes points and the settings work; restarts of the writer.",
                  (Query(_q(f'min("{w}server_up") AS "server up", min("{w}running") AS "running", '
                            f'max("{w}restarts") AS "restarts"', v.PLATFORM_HEALTH, group=interval)),)),
        ),
    )  # fmt: skip


def build_dashboards() -> list[Dashboard]:
    """Every dashboard of the project."""
    return [_overview(), _people(), _vehicles(), _devices(), _platform()]


def render(dash: Dashboard) -> str:
    """Stable JSON text of a dashboard (what is committed under dashboards/json/)."""
    return json.dumps(dashboard_json(dash), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def write_all(directory: Path) -> list[Path]:
    """Write every dashboard as ``<uid>.json`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for dash in build_dashboards():
        path = directory / f"{dash.uid}.json"
        path.write_text(render(dash), encoding="utf-8")
        paths.append(path)
    return paths
