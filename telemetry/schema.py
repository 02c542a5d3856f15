"""The telemetry schema: pure point builders over the names of :mod:`telemetry.vocabulary`.

Rule of thumb used throughout (see docs/telemetry.md): a value is a *tag* only when it is
something a dashboard groups or filters by AND its set of values is bounded by the installation
(sites, devices, device kinds, fixed enums). Anything unbounded or personal (plates, subjects,
alarm ids, reasons) is a *field*.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry.lineproto import FieldValue, Point
from telemetry.vocabulary import (
    ACCESS,
    ALARM,
    ALARM_STATES,
    CREDENTIALS,
    DEVICE_STATUS,
    DEVICE_TELEMETRY,
    DIRECTIONS,
    OTHER,
    PASSAGE,
    PASSAGE_VIA,
    PLATFORM_HEALTH,
    RULE_FIRING,
    SEVERITIES,
    TAG_GROUPS,
    TAG_POSITION,
    TELEMETRY_METRICS,
    TWIN_STATE,
    VEHICLE,
    VEHICLE_DWELL,
)

_NAME_RE = re.compile(r"[^A-Za-z0-9_.:-]")


def bounded(value: object, allowed: frozenset[str], default: str = OTHER) -> str:
    """Map a value onto a fixed vocabulary so a tag's cardinality cannot grow with bad input."""
    text = str(value).lower() if value is not None else ""
    return text if text in allowed else default


def safe_name(value: object, max_len: int = 64) -> str:
    """An identifier-like tag value (device id, rule id, site): restricted charset, capped length."""
    return _NAME_RE.sub("_", str(value))[:max_len] or OTHER


def _number(value: Any) -> float | None:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def device_tags(site: str, device_id: str, kind: str) -> dict[str, str | None]:
    """The tag set identifying a device: site, device id, device kind."""
    return {"site": safe_name(site), "device": safe_name(device_id), "kind": safe_name(kind)}


@functools.lru_cache(maxsize=65_536)
def _device_tag_tuple(site: str, device_id: str, kind: str) -> tuple[tuple[str, str], ...]:
    # Telemetry is the hot path (up to 100k points/s): devices repeat, so their tags are cached.
    return (("device", safe_name(device_id)), ("kind", safe_name(kind)), ("site", safe_name(site)))


def telemetry_point(site: str, device_id: str, kind: str, ts: float, metrics: Mapping[str, Any]) -> Point | None:
    """``device_telemetry``: the four protocol metrics; unknown or non-numeric ones are ignored."""
    fields = []
    get = metrics.get
    for name in TELEMETRY_METRICS:
        value = get(name)
        if type(value) is float:
            if value - value == 0.0:  # finite
                fields.append((name, value))
        elif value is not None:
            number = _number(value)
            if number is not None:
                fields.append((name, number))
    if not fields:
        return None
    return Point(DEVICE_TELEMETRY, _device_tag_tuple(site, device_id, kind), tuple(fields), float(ts))


def status_point(site: str, device_id: str, kind: str, ts: float, online: bool, was_online: bool | None) -> Point:
    """``device_status``: online 1/0 and reconnect=1 when a device comes back after being offline."""
    reconnect = 1 if online and was_online is False else 0
    return Point.make(
        DEVICE_STATUS, device_tags(site, device_id, kind), {"online": int(online), "reconnect": reconnect}, ts
    )


# Reported twin fields worth charting, per kind: field name -> (point field, converter).
def _eq(expected: str) -> Any:
    return lambda v: int(v == expected) if isinstance(v, str) else None


def _bool(v: Any) -> int | None:
    return int(v) if isinstance(v, bool) else None


_TWIN_FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "vehicle_gate": {"barrier": ("barrier_up", _eq("up")), "mode": ("hold_open", _eq("hold_open"))},
    "door_lock": {"lock": ("lock_unlocked", _eq("unlocked")), "door": ("door_open", _eq("open"))},
    "camera": {"recording": ("recording", _bool), "fps": ("fps", _number)},
    "ptz_tracker": {
        "tracking": ("tracking", _bool),
        "pan": ("pan", _number),
        "tilt": ("tilt", _number),
        "zoom": ("zoom", _number),
    },
    "mac_sniffer": {"scanning": ("scanning", _bool)},
    "rfid_reader": {"scanning": ("scanning", _bool), "tx_power_dbm": ("tx_power_dbm", _number)},
}


def twin_state_point(site: str, device_id: str, kind: str, ts: float, changed: Mapping[str, Any]) -> Point | None:
    """``twin_state``: numeric views of the charted reported fields present in ``changed``."""
    table = _TWIN_FIELDS.get(kind, {})
    fields: dict[str, FieldValue | None] = {}
    for name, (field_name, convert) in table.items():
        if name in changed:
            fields[field_name] = convert(changed[name])
    cameras = changed.get("cameras")
    if kind == "vehicle_gate" and isinstance(cameras, Mapping):
        states = [c.get("online") for c in cameras.values() if isinstance(c, Mapping)]
        fields["cameras_online"] = sum(1 for s in states if s is True)
        fields["cameras_total"] = len(states)
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        return None
    return Point.make(TWIN_STATE, device_tags(site, device_id, kind), fields, ts)


def access_point(
    site: str,
    device_id: str,
    kind: str,
    ts: float,
    *,
    allowed: bool,
    credential_kind: str | None,
    reason: str | None,
    direction: str | None,
    score: float | None = None,
) -> Point:
    """``access``: one access decision. The subject is deliberately not recorded at all."""
    tags = device_tags(site, device_id, kind)
    tags["result"] = "allow" if allowed else "deny"
    tags["credential"] = bounded(credential_kind, CREDENTIALS)
    tags["direction"] = bounded(direction, DIRECTIONS, "in")
    fields: dict[str, FieldValue | None] = {
        "count": 1,
        "reason": (reason or "")[:200] or None,
        "score": _number(score),
    }
    return Point.make(ACCESS, tags, fields, ts)


def passage_point(site: str, device_id: str, kind: str, ts: float, *, direction: str, via: str) -> Point:
    """``passage``: someone or something went through a door or gate (entries/exits)."""
    tags = device_tags(site, device_id, kind)
    tags["direction"] = bounded(direction, DIRECTIONS, "in")
    tags["via"] = bounded(via, PASSAGE_VIA)
    return Point.make(PASSAGE, tags, {"count": 1}, ts)


def vehicle_point(
    site: str, device_id: str, ts: float, *, direction: str, plate: str | None, confidence: float | None
) -> Point:
    """``vehicle``: a plate capture at a gate; the plate itself is a field (personal, unbounded)."""
    read = bool(plate)
    tags = {
        "site": safe_name(site),
        "device": safe_name(device_id),
        "direction": bounded(direction, DIRECTIONS, "in"),
        "plate_read": "yes" if read else "no",
    }
    fields: dict[str, FieldValue | None] = {
        "count": 1,
        "confidence": _number(confidence),
        "plate": plate[:32] if plate else None,
    }
    return Point.make(VEHICLE, tags, fields, ts)


def dwell_point(site: str, device_id: str, ts: float, dwell_s: float) -> Point:
    """``vehicle_dwell``: how long a vehicle stayed, emitted when it leaves."""
    return Point.make(
        VEHICLE_DWELL,
        {"site": safe_name(site), "device": safe_name(device_id)},
        {"dwell_s": float(dwell_s)},
        ts,
    )


def alarm_point(
    site: str,
    alarm_id: str,
    rule_id: str,
    kind: str,
    severity: str,
    state: str,
    ts: float,
    active_total: int,
) -> Point:
    """``alarm``: an alarm state change and the site's number of active alarms after it."""
    tags = {
        "site": safe_name(site),
        "rule": safe_name(rule_id),
        "kind": safe_name(kind),
        "severity": bounded(severity, SEVERITIES),
        "state": bounded(state, ALARM_STATES),
    }
    fields: dict[str, FieldValue | None] = {
        "count": 1,
        "active_total": active_total,
        "alarm_id": alarm_id[:64],
    }
    return Point.make(ALARM, tags, fields, ts)


def rule_firing_point(site: str, rule_id: str, ts: float) -> Point:
    """``rule_firing``: a rule's actions ran once."""
    return Point.make(RULE_FIRING, {"site": safe_name(site), "rule": safe_name(rule_id)}, {"count": 1}, ts)


@dataclass(frozen=True, slots=True)
class GeoOrigin:
    """The site plan's origin: (0, 0) metres on the plan is this latitude/longitude."""

    lat: float
    lon: float


EARTH_RADIUS_M = 6_371_008.8


def plan_to_latlon(origin: GeoOrigin, x: float, y: float) -> tuple[float, float]:
    """Site metres (x east, y north) → (lat, lon) by a local equirectangular approximation.

    Good to centimetres over a residential community (a few hundred metres across).
    """
    lat = origin.lat + math.degrees(y / EARTH_RADIUS_M)
    lon = origin.lon + math.degrees(x / (EARTH_RADIUS_M * math.cos(math.radians(origin.lat))))
    return lat, lon


def tag_position_point(
    site: str,
    tag_id: str,
    tag_group: str | None,
    ts: float,
    *,
    x: float,
    y: float,
    origin: GeoOrigin | None,
    rssi: float | None = None,
    reader: str | None = None,
) -> Point:
    """``tag_position``: where a worn RFID tag was last located (no person identifiers)."""
    tags = {"site": safe_name(site), "tag": safe_name(tag_id), "tag_group": bounded(tag_group, TAG_GROUPS)}
    fields: dict[str, FieldValue | None] = {
        "x": float(x),
        "y": float(y),
        "rssi": _number(rssi),
        "reader": reader,
    }
    if origin is not None:
        fields["lat"], fields["lon"] = plan_to_latlon(origin, x, y)
    return Point.make(TAG_POSITION, tags, fields, ts)


def health_point(site: str, worker: str, ts: float, counters: Mapping[str, Any]) -> Point | None:
    """``platform_health``: numeric counters/gauges of one platform worker; non-numbers dropped."""
    fields: dict[str, FieldValue | None] = {safe_name(k): _number(v) for k, v in counters.items()}
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields:
        return None
    return Point.make(PLATFORM_HEALTH, {"site": safe_name(site), "worker": safe_name(worker)}, fields, ts)
