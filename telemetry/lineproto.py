"""InfluxDB line protocol: the :class:`Point` value type and its encoding (pure, no IO).

Every point carries an explicit timestamp, so writing the same point twice overwrites rather
than duplicates in InfluxDB; the writer still guarantees each point is sent exactly once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

FieldValue = float | int | bool | str

_KEY_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": " ", "\r": " "})
_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "\n": " ", "\r": " "})
_STRING_ESCAPES = str.maketrans({'"': r"\"", "\\": "\\\\", "\n": " ", "\r": " "})


class InvalidPoint(ValueError):
    """A point that cannot be encoded (no measurement or no usable field)."""

    def __init__(self, measurement: str, reason: str) -> None:
        super().__init__(f"invalid point {measurement!r}: {reason}")
        self.measurement = measurement
        self.reason = reason


class Point(NamedTuple):
    """One time-series point: measurement, tags (indexed, low cardinality), fields, epoch seconds.

    A named tuple rather than a dataclass: telemetry builds up to 100k of these per second.
    """

    measurement: str
    tags: tuple[tuple[str, str], ...]
    fields: tuple[tuple[str, FieldValue], ...]
    ts: float

    @staticmethod
    def make(
        measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, FieldValue | None], ts: float
    ) -> Point:
        """Build a point, dropping empty tags and ``None`` fields; tags are sorted (InfluxDB's preference)."""
        clean_tags = tuple(sorted((k, str(v)) for k, v in tags.items() if v is not None and str(v) != ""))
        clean_fields = tuple((k, v) for k, v in fields.items() if v is not None)
        return Point(measurement, clean_tags, clean_fields, ts)

    def tag(self, key: str) -> str | None:
        """The value of tag ``key`` or ``None``."""
        for k, v in self.tags:
            if k == key:
                return v
        return None

    def field(self, key: str) -> FieldValue | None:
        """The value of field ``key`` or ``None``."""
        for k, v in self.fields:
            if k == key:
                return v
        return None


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key."""
    return text.translate(_KEY_ESCAPES)


@functools.lru_cache(maxsize=4096)
def _field_key(key: str) -> str:
    return escape_key(key)


def _encode_field_value(value: FieldValue) -> str | None:
    kind = type(value)
    if kind is float:
        return repr(value) if math.isfinite(value) else None  # type: ignore[arg-type]  # line protocol has no NaN/Inf
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return f"{value}i"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return repr(float(value)) if math.isfinite(value) else None
    return '"' + str(value).translate(_STRING_ESCAPES) + '"'


# InfluxDB's representable time range (1677-09-21 .. 2262-04-11): a point outside it makes the server
# refuse the whole batch carrying it, so it is refused here, alone (a device clock of 1e21 ns).
MIN_TS = -9_223_372_036.854775
MAX_TS = 9_223_372_036.854775


def timestamp_ns(ts: float) -> int:
    """Epoch seconds → integer nanoseconds (deterministic, so a re-encode is byte-identical)."""
    return round(ts * 1_000_000) * 1000


def valid_ts(ts: float) -> bool:
    """Whether ``ts`` (epoch seconds) is a time InfluxDB can store."""
    return MIN_TS < ts < MAX_TS  # False for NaN too


@functools.lru_cache(maxsize=8192)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=value,...`` — cached: a site has few series and each repeats constantly."""
    key = measurement.translate(_MEASUREMENT_ESCAPES)
    return key + "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in tags if k and v)


def encode(point: Point) -> str:
    """Encode one point as a line of line protocol (no trailing newline).

    Raises :class:`InvalidPoint` when nothing writable is left (InfluxDB rejects field-less lines).
    """
    if not point.measurement:
        raise InvalidPoint(point.measurement, "empty measurement")
    if not valid_ts(point.ts):
        raise InvalidPoint(point.measurement, f"timestamp {point.ts!r} s outside InfluxDB's range")
    parts = [_series_key(point.measurement, point.tags)]
    fields = []
    for key, fvalue in point.fields:
        if type(fvalue) is float and fvalue - fvalue == 0.0:  # fast path: finite float (NaN/Inf fail)
            fields.append(f"{_field_key(key)}={fvalue!r}")
            continue
        encoded = _encode_field_value(fvalue)
        if encoded is not None and key:
            fields.append(f"{_field_key(key)}={encoded}")
    if not fields:
        raise InvalidPoint(point.measurement, "no writable field")
    parts.append(" ")
    parts.append(",".join(fields))
    parts.append(f" {timestamp_ns(point.ts)}")
    return "".join(parts)


def encode_many(points: Iterable[Point]) -> tuple[list[str], int]:
    """Encode points, skipping invalid ones; returns (lines, number skipped)."""
    lines: list[str] = []
    skipped = 0
    for point in points:
        try:
            lines.append(encode(point))
        except InvalidPoint:
            skipped += 1
    return lines, skipped
