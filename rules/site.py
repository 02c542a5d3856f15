"""The site plan the engine reasons over: zones, device positions and the people wearing tags.

Built from the community file (``firmware_sim/communities/*.yaml``); only the sections the rules
need are read, so the engine does not depend on the simulator's loader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep


class SitePlanError(Exception):
    """The community file lacks something the rules engine needs."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Zone:
    """A polygon on the site plan (metres)."""

    id: str
    name: str
    kind: str
    polygon: Polygon
    prepared: PreparedGeometry

    def covers(self, x: float, y: float) -> bool:
        """Inside or on the boundary."""
        return bool(self.prepared.covers(Point(x, y)))


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A physical device from the community file."""

    id: str
    kind: str
    name: str = ""
    position: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class Person:
    """A resident (or staff) who may be the subject of a rule."""

    id: str
    name: str = ""
    role: str = ""
    household: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class TagInfo:
    """An RFID tag worn by a person."""

    id: str
    person: str | None
    group: str


@dataclass
class SitePlan:
    """Zones, devices and subjects of one site."""

    site: str
    name: str = ""
    zones: dict[str, Zone] = field(default_factory=dict)
    devices: dict[str, DeviceInfo] = field(default_factory=dict)
    tags: dict[str, TagInfo] = field(default_factory=dict)
    people: dict[str, Person] = field(default_factory=dict)
    vehicles: dict[str, str] = field(default_factory=dict)
    pickup_windows: list[tuple[int, int]] = field(default_factory=list)
    tz: tzinfo = field(default_factory=lambda: timezone(timedelta(hours=8)))

    @classmethod
    def from_mapping(cls, doc: dict[str, Any], source: str = "<community>") -> SitePlan:
        """Build from a parsed community document."""
        if not isinstance(doc, dict) or "site" not in doc:
            raise SitePlanError(source, "not a community file: missing 'site'")
        plan = cls(site=str(doc["site"]), name=str(doc.get("name", "")))
        if doc.get("timezone"):
            plan.tz = ZoneInfo(str(doc["timezone"]))
        for z in doc.get("zones") or []:
            try:
                poly = Polygon([(float(p[0]), float(p[1])) for p in z["polygon"]])
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise SitePlanError(source, f"zone {z.get('id')!r}: bad polygon ({exc})") from exc
            if not poly.is_valid:
                raise SitePlanError(source, f"zone {z.get('id')!r}: polygon is not valid")
            plan.zones[str(z["id"])] = Zone(
                str(z["id"]), str(z.get("name", "")), str(z.get("kind", "")), poly, prep(poly)
            )
        for d in doc.get("devices") or []:
            pos = d.get("position")
            plan.devices[str(d["id"])] = DeviceInfo(
                str(d["id"]),
                str(d["kind"]),
                str(d.get("name", "")),
                (float(pos[0]), float(pos[1])) if pos else None,
            )
        for p in doc.get("people") or []:
            plan.people[str(p["id"])] = Person(
                str(p["id"]), str(p.get("name", "")), str(p.get("role", "")), p.get("household"), p.get("tag")
            )
        for t in doc.get("tags") or []:
            plan.tags[str(t["id"])] = TagInfo(str(t["id"]), t.get("person"), str(t.get("group", "")))
        for v in doc.get("vehicles") or []:
            plan.vehicles[str(v["plate"])] = str(v.get("owner", ""))
        for w in doc.get("pickup_windows") or []:
            plan.pickup_windows.append((hhmm_to_minutes(str(w["start"])), hhmm_to_minutes(str(w["end"]))))
        return plan

    @classmethod
    def from_community(cls, community: Any) -> SitePlan:
        """Build from a loaded community model (``firmware_sim.community.load_community``) or a dict."""
        if hasattr(community, "model_dump"):
            return cls.from_mapping(community.model_dump(mode="json"), "<community model>")
        return cls.from_mapping(dict(community), "<community>")

    def reader_position(self, device_id: str) -> tuple[float, float] | None:
        """Where a reader is, if it is on the plan."""
        dev = self.devices.get(device_id)
        return dev.position if dev else None

    def person_for_tag(self, tag_id: str) -> Person | None:
        """The person wearing ``tag_id``."""
        tag = self.tags.get(tag_id)
        if tag is None or tag.person is None:
            return None
        return self.people.get(tag.person)

    def groups(self) -> set[str]:
        """Tag groups (elderly, child, ...) and roles present on the site."""
        return {t.group for t in self.tags.values()} | {p.role for p in self.people.values()}


def hhmm_to_minutes(text: str) -> int:
    """``"16:30"`` → 990."""
    hh, _, mm = text.partition(":")
    value = int(hh) * 60 + int(mm or 0)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"time of day out of range: {text!r}")
    return value


def load_site_plan(path: Path) -> SitePlan:
    """Read a community YAML file."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise SitePlanError(str(path), f"cannot read community file: {exc}") from exc
    return SitePlan.from_mapping(doc, str(path))
