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

DATASOURCE_UID = "anfang-influxdb"
DATASOURCE: dict[str, str] = {"type": "influxdb", "uid": DATASOURCE_UID}
SITE = '"site" =~ /^$site$/'


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
        "query": 'SHOW TAG VALUES FROM "device_telemetry" WITH KEY = "site"',
        "definition": 'SHOW TAG VALUES FROM "device_telemetry" WITH KEY = "site"',
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


def _overview() -> Dashboard:
    per_hour = 'GROUP BY time(1h), "device" fill(0)'
    return Dashboard(
        "anfang-overview",
        "Community overview",
        "Entries and exits, denied attempts, alarms and device availability for the whole community.",
        (
            Panel("stat", "Active alarms", "Alarms currently raised and not cleared (last known count).",
                  (Query(f'SELECT last("active_total") FROM "alarm" WHERE {SITE} AND $timeFilter'),),
                  w=6, h=5, options=_STAT),
            Panel("stat", "Devices online", "Devices whose last status in the range was online.",
                  (Query('SELECT sum("online") FROM (SELECT last("online") AS "online" FROM "device_status" '
                         f'WHERE {SITE} AND $timeFilter GROUP BY "device") WHERE $timeFilter'),),
                  w=6, h=5, options=_STAT),
            Panel("stat", "Devices offline", "Devices whose last status in the range was offline.",
                  (Query('SELECT count("online") FROM (SELECT last("online") AS "online" FROM "device_status" '
                         f'WHERE {SITE} AND $timeFilter GROUP BY "device") WHERE "online" = 0 AND $timeFilter'),),
                  w=6, h=5, options=_STAT),
            Panel("stat", "Denied attempts", "Access attempts refused by any door or gate in the range.",
                  (Query(f'SELECT sum("count") FROM "access" WHERE {SITE} AND "result" = \'deny\' '
                         "AND $timeFilter"),),
                  w=6, h=5, options=_STAT),
            Panel("timeseries", "Entries per hour by gate and door",
                  "People through unit doors (credential or key) and vehicles in at gates, per hour.",
                  (Query(f'SELECT sum("count") FROM "passage" WHERE {SITE} AND "direction" = \'in\' '
                         f"AND $timeFilter {per_hour}", alias="$tag_device"),),
                  custom=_BARS),
            Panel("timeseries", "Exits per hour by gate and door",
                  "Exit-button openings of unit doors and vehicles out at gates, per hour.",
                  (Query(f'SELECT sum("count") FROM "passage" WHERE {SITE} AND "direction" = \'out\' '
                         f"AND $timeFilter {per_hour}", alias="$tag_device"),),
                  custom=_BARS),
            Panel("timeseries", "Denied attempts per hour by credential",
                  "Refused access decisions per hour, split by credential (face, card, QR, PIN, plate).",
                  (Query(f'SELECT sum("count") FROM "access" WHERE {SITE} AND "result" = \'deny\' '
                         'AND $timeFilter GROUP BY time(1h), "credential" fill(0)', alias="$tag_credential"),),
                  custom=_BARS),
            Panel("timeseries", "Alarms raised per hour by kind",
                  "New alarms per hour grouped by alarm kind (forced door, fence, tailgating, ...).",
                  (Query(f'SELECT sum("count") FROM "alarm" WHERE {SITE} AND "state" = \'raised\' '
                         'AND $timeFilter GROUP BY time(1h), "kind" fill(0)', alias="$tag_kind"),),
                  custom=_BARS),
        ),
    )  # fmt: skip


def _people() -> Dashboard:
    group = '"tag_group" =~ /^(elderly|child)$/'
    return Dashboard(
        "anfang-people",
        "Elderly and children",
        "Where the worn RFID tags of elderly residents and children were last located, and fence alarms. "
        "Tags are shown by tag id; who wears which tag stays in the community database.",
        (
            Panel("geomap", "Tag positions",
                  "Last known position of every elderly/child tag on the site map (from RFID readers).",
                  (Query('SELECT last("lat") AS "latitude", last("lon") AS "longitude" FROM "tag_position" '
                         f'WHERE {SITE} AND {group} AND $timeFilter GROUP BY "tag", "tag_group"', table=True),),
                  w=14, h=14,
                  options={
                      "view": {"id": "fit", "zoom": 17},
                      "controls": {"showZoom": True, "mouseWheelZoom": True, "showScale": True},
                      "basemap": {"type": "default", "name": "Basemap"},
                      "layers": [{
                          "type": "markers", "name": "Tags",
                          "location": {"mode": "coords", "latitude": "latitude", "longitude": "longitude"},
                          "config": {"showLegend": True, "style": {
                              "size": {"fixed": 8}, "color": {"field": "tag_group"},
                              "text": {"mode": "field", "field": "tag"},
                          }},
                      }],
                  }),
            Panel("table", "Last seen per tag",
                  "Time each tag was last located, its site-plan position (metres) and the reader that saw it.",
                  (Query('SELECT last("x") AS "x_m", "y" AS "y_m", "reader" FROM "tag_position" '
                         f'WHERE {SITE} AND {group} AND $timeFilter GROUP BY "tag", "tag_group"', table=True),),
                  w=10, h=14),
            Panel("timeseries", "Fence alarms per hour",
                  "Geofence alarms (a tag leaving its allowed area) raised per hour, by rule.",
                  (Query(f'SELECT sum("count") FROM "alarm" WHERE {SITE} AND "kind" =~ /fence/ '
                         "AND \"state\" = 'raised' AND $timeFilter GROUP BY time(1h), \"rule\" fill(0)",
                         alias="$tag_rule"),),
                  custom=_BARS),
            Panel("table", "Recent fence alarms",
                  "The latest fence alarm state changes (raised, acknowledged, cleared).",
                  (Query('SELECT "alarm_id", "state", "severity", "rule" FROM "alarm" '
                         f'WHERE {SITE} AND "kind" =~ /fence/ AND $timeFilter ORDER BY time DESC LIMIT 50',
                         table=True),)),
            Panel("timeseries", "Tag sightings per hour",
                  "How often tags were located per hour, by group — a drop means readers or tags are failing.",
                  (Query(f'SELECT count("x") FROM "tag_position" WHERE {SITE} AND {group} AND $timeFilter '
                         'GROUP BY time(1h), "tag_group" fill(0)', alias="$tag_tag_group"),),
                  w=24, custom=_BARS),
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
                  (Query(f'SELECT sum("count") FROM "vehicle" WHERE {SITE} AND $timeFilter '
                         'GROUP BY time(1h), "direction" fill(0)', alias="$tag_direction"),),
                  custom=_BARS),
            Panel("timeseries", "Unknown plates per hour",
                  "Plates read but not on the allow list (denied plate access), per gate.",
                  (Query(f'SELECT sum("count") FROM "access" WHERE {SITE} AND "credential" = \'plate\' '
                         "AND \"result\" = 'deny' AND $timeFilter GROUP BY time(1h), \"device\" fill(0)",
                         alias="$tag_device"),),
                  custom=_BARS),
            Panel("timeseries", "Unread plates per hour",
                  "Vehicles whose plate the camera could not read (no plate in the capture).",
                  (Query(f'SELECT sum("count") FROM "vehicle" WHERE {SITE} AND "plate_read" = \'no\' '
                         'AND $timeFilter GROUP BY time(1h), "device" fill(0)', alias="$tag_device"),),
                  custom=_BARS),
            Panel("timeseries", "Dwell time",
                  "Mean and longest stay (minutes) of vehicles that left in each hour (entry paired by plate).",
                  (Query('SELECT mean("dwell_s") / 60 AS "mean", max("dwell_s") / 60 AS "max" '
                         f'FROM "vehicle_dwell" WHERE {SITE} AND $timeFilter GROUP BY time(1h) fill(none)'),),
                  unit="m"),
            Panel("table", "Recent plate captures",
                  "The latest plate captures with read confidence, direction and gate.",
                  (Query('SELECT "plate", "confidence", "direction", "device" FROM "vehicle" '
                         f"WHERE {SITE} AND $timeFilter ORDER BY time DESC LIMIT 50", table=True),),
                  w=24),
        ),
    )  # fmt: skip


def _devices() -> Dashboard:
    by_device = 'GROUP BY time($__interval), "device" fill(none)'
    return Dashboard(
        "anfang-devices",
        "Device health",
        "Battery, signal, temperature, last report and reconnects of every device.",
        (
            Panel("timeseries", "Battery", "Battery level (%) per device.",
                  (Query(f'SELECT mean("battery") FROM "device_telemetry" WHERE {SITE} AND $timeFilter '
                         f"{by_device}", alias="$tag_device"),), unit="percent"),
            Panel("timeseries", "RSSI", "Radio signal strength (dBm) per device; below -80 dBm is weak.",
                  (Query(f'SELECT mean("rssi") FROM "device_telemetry" WHERE {SITE} AND $timeFilter '
                         f"{by_device}", alias="$tag_device"),), unit="dBm"),
            Panel("table", "Last report", "When each device last sent telemetry, with its latest battery.",
                  (Query('SELECT last("battery") AS "battery" FROM "device_telemetry" '
                         f'WHERE {SITE} AND $timeFilter GROUP BY "device", "kind"', table=True),)),
            Panel("timeseries", "Reconnects per hour",
                  "Times a device came back online after being offline — flapping devices stand out.",
                  (Query(f'SELECT sum("reconnect") FROM "device_status" WHERE {SITE} AND $timeFilter '
                         'GROUP BY time(1h), "device" fill(0)', alias="$tag_device"),), custom=_BARS),
            Panel("timeseries", "Temperature", "Device temperature (°C).",
                  (Query(f'SELECT mean("temperature") FROM "device_telemetry" WHERE {SITE} AND $timeFilter '
                         f"{by_device}", alias="$tag_device"),), unit="celsius"),
            Panel("state-timeline", "Online", "Online (1) / offline (0) per device over time.",
                  (Query(f'SELECT last("online") FROM "device_status" WHERE {SITE} AND $timeFilter '
                         'GROUP BY time($__interval), "device" fill(previous)', alias="$tag_device"),)),
        ),
    )  # fmt: skip


def _platform() -> Dashboard:
    interval = 'GROUP BY time($__interval), "worker" fill(none)'
    return Dashboard(
        "anfang-platform",
        "Platform health",
        "Message ingest rate, latency, rejections, queue depths, rule firings and the telemetry writer.",
        (
            Panel("timeseries", "Ingest rate", "MQTT messages per second into and out of the platform.",
                  (Query('SELECT non_negative_derivative(last("msgs_in"), 1s) AS "in", '
                         'non_negative_derivative(last("msgs_out"), 1s) AS "out" FROM "platform_health" '
                         f"WHERE {SITE} AND $timeFilter {interval}"),), unit="reqps"),
            Panel("timeseries", "Ingest latency p99", "99th percentile of broker-to-twin-applied latency.",
                  (Query('SELECT max("ingest_latency_ms_p99") FROM "platform_health" '
                         f"WHERE {SITE} AND $timeFilter {interval}"),), unit="ms"),
            Panel("timeseries", "Rejections", "Rejected reports/events per second (answered on errors topics).",
                  (Query('SELECT non_negative_derivative(last("rejected"), 1s) FROM "platform_health" '
                         f"WHERE {SITE} AND $timeFilter {interval}"),), unit="reqps"),
            Panel("timeseries", "Queue depth", "Deepest internal queue (bounded) — near its cap means overload.",
                  (Query('SELECT max("queue_depth") FROM "platform_health" '
                         f"WHERE {SITE} AND $timeFilter {interval}"),)),
            Panel("timeseries", "Rule firings per hour", "How often each rule's actions ran.",
                  (Query(f'SELECT sum("count") FROM "rule_firing" WHERE {SITE} AND $timeFilter '
                         'GROUP BY time(1h), "rule" fill(0)', alias="$tag_rule"),), custom=_BARS),
            Panel("timeseries", "Telemetry writer",
                  "Points waiting in the disk spool and points dropped (buffer full / spool cap) — "
                  "dropped must stay 0.",
                  (Query('SELECT max("telemetry_spool_lines") AS "spooled", '
                         'max("telemetry_buffer_dropped") AS "buffer dropped", '
                         'max("telemetry_spool_dropped") AS "spool dropped" FROM "platform_health" '
                         f"WHERE {SITE} AND $timeFilter {interval}"),)),
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
