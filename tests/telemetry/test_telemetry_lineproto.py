"""Line protocol encoding and the schema's bounded tags (pure logic, property-tested)."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st

from telemetry import schema
from telemetry.lineproto import InvalidPoint, Point, encode, encode_many, timestamp_ns


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], "", 0
    in_quotes = False
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i : i + 2]
            i += 2
            continue
        if ch == '"':
            in_quotes = not in_quotes
        if ch == sep and not in_quotes:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    parts.append(cur)
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """A small reference parser of what encode() produces (test oracle)."""
    head, fields_text, ts = _split_unescaped(line, " ")
    measurement, *tag_parts = _split_unescaped(head, ",")
    tags = dict((_unescape(k), _unescape(v)) for k, v in (_split_unescaped(t, "=") for t in tag_parts))
    fields: dict[str, object] = {}
    for part in _split_unescaped(fields_text, ","):
        key, value = _split_unescaped(part, "=")
        if value.startswith('"'):
            fields[_unescape(key)] = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        elif value.endswith("i"):
            fields[_unescape(key)] = int(value[:-1])
        elif value in ("true", "false"):
            fields[_unescape(key)] = value == "true"
        else:
            fields[_unescape(key)] = float(value)
    return _unescape(measurement), tags, fields, int(ts)


names = st.text(st.characters(codec="utf-8", exclude_characters='\n\r\\"'), min_size=1, max_size=12).filter(
    lambda s: not s.endswith("\\")
)
values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**62), 2**62),
    st.booleans(),
    st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=20),
)


@given(
    measurement=names,
    tags=st.dictionaries(names, names, max_size=4),
    fields=st.dictionaries(names, values, min_size=1, max_size=4),
    ts=st.floats(0, 4e9),
)
def test_encode_round_trips(measurement: str, tags: dict[str, str], fields: dict[str, object], ts: float) -> None:
    point = Point.make(measurement, tags, fields, ts)  # type: ignore[arg-type]
    got = parse(encode(point))
    assert got[0] == measurement
    assert got[1] == {k: v for k, v in tags.items() if v}
    assert got[2] == fields
    assert got[3] == timestamp_ns(ts)


def test_nan_fields_are_dropped_and_empty_points_refused() -> None:
    line = encode(Point.make("m", {"a": "b"}, {"x": math.nan, "y": 1.5}, 1.0))
    assert line == "m,a=b y=1.5 1000000000"
    try:
        encode(Point.make("m", {}, {"x": math.inf}, 1.0))
    except InvalidPoint as exc:
        assert exc.measurement == "m"
    else:
        raise AssertionError("expected InvalidPoint")
    lines, skipped = encode_many([Point.make("m", {}, {}, 1.0), Point.make("m", {}, {"v": 1}, 2.0)])
    assert lines == ["m v=1i 2000000000"] and skipped == 1


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=20)), st.one_of(st.none(), st.text()))
def test_access_tags_stay_in_their_vocabularies(device: str, credential: str | None, direction: str | None) -> None:
    point = schema.access_point("s", device, "door_lock", 1.0, allowed=False, credential_kind=credential,
                                reason="x", direction=direction)  # fmt: skip
    assert point.tag("credential") in schema.CREDENTIALS | {schema.OTHER}
    assert point.tag("direction") in schema.DIRECTIONS
    assert point.tag("result") == "deny"
    assert len(point.tag("device") or "") <= 64
    assert re.fullmatch(r"[A-Za-z0-9_.:-]+", point.tag("device") or "")


@given(st.floats(-60, 60), st.floats(-179, 179), st.floats(-2000, 2000), st.floats(-2000, 2000))
def test_plan_to_latlon_preserves_distances(lat0: float, lon0: float, x: float, y: float) -> None:
    origin = schema.GeoOrigin(lat0, lon0)
    lat, lon = schema.plan_to_latlon(origin, x, y)
    # haversine distance back from the origin matches the plan distance within 0.1 %
    p1, p2 = math.radians(lat0), math.radians(lat)
    dp, dl = p2 - p1, math.radians(lon - lon0)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    dist = 2 * schema.EARTH_RADIUS_M * math.asin(math.sqrt(a))
    assert math.isclose(dist, math.hypot(x, y), rel_tol=1e-3, abs_tol=1e-3)


def test_twin_state_charts_only_known_fields() -> None:
    point = schema.twin_state_point("s", "gate-1", "vehicle_gate", 5.0, {
        "barrier": "up", "open_seconds": 10, "cameras": {"c1": {"online": True}, "c2": {"online": False}}})  # fmt: skip
    assert point is not None
    assert dict(point.fields) == {"barrier_up": 1, "cameras_online": 1, "cameras_total": 2}
    assert schema.twin_state_point("s", "gate-1", "vehicle_gate", 5.0, {"open_seconds": 10}) is None
    assert schema.telemetry_point("s", "d", "camera", 1.0, {"bogus": 1.0, "battery": True}) is None
