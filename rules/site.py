"""The site plan the engine reasons over: zones as geometry, devices, tags and the people wearing them.

Compiled from the platform's one site model (:class:`twins.site.SiteModel`) — in the platform the model
kept in the registry, with people and vehicles from the access-control registry and every registered
device (:meth:`SitePlan.from_site`); for ``anfang rules check|test`` a site file, whose ``people`` and
``vehicles`` sections stand in for the registry (:func:`load_site_plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta, timezone, tzinfo
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shapely.geometry import Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from twins.site import DeviceInfo, SiteError, SiteModel, read_site_file, site_from_mapping

#: The roles a registered person has (the access-control registry's vocabulary).
ROLES = frozenset({"owner", "family", "tenant", "elderly_alone", "child", "staff", "police"})

__all__ = ["DeviceInfo", "Person", "SitePlan", "SitePlanError", "TagInfo", "Zone", "hhmm_to_minutes", "load_site_plan"]


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
    margin: float = 0.0  # metres outside before a tag counts as gone (position noise)
    dwell: float = 0.0  # seconds on the new side before a tag's membership changes

    def covers(self, x: float, y: float) -> bool:
        """Inside or on the boundary."""
        return bool(self.prepared.covers(Point(x, y)))

    def outside_by(self, x: float, y: float) -> float:
        """How far outside the polygon a point is (0 inside or on the boundary)."""
        point = Point(x, y)
        return 0.0 if self.prepared.covers(point) else float(self.polygon.exterior.distance(point))


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A planned shutdown of some devices (ids or globs) from ``start`` to ``end`` (epoch seconds)."""

    devices: tuple[str, ...]
    start: float
    end: float
    reason: str = ""

    def covers(self, device_id: str, ts: float) -> bool:
        """Is ``device_id`` in this window at ``ts``?"""
        return self.start <= ts < self.end and any(fnmatchcase(device_id, p) for p in self.devices)


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
    maintenance: list[MaintenanceWindow] = field(default_factory=list)
    tz: tzinfo = field(default_factory=lambda: timezone(timedelta(hours=8)))

    @classmethod
    def from_site(
        cls,
        model: SiteModel,
        people: Iterable[Person] = (),
        vehicles: Mapping[str, str] | None = None,
        devices: Iterable[DeviceInfo] = (),
        source: str = "<site model>",
    ) -> SitePlan:
        """Compile a site model; ``people`` and ``vehicles`` (plate → owner) come from the registry,
        ``devices`` are registered devices the plan does not place (rules watch them too)."""
        plan = cls(site=model.site, name=model.name)
        if model.timezone:
            plan.tz = ZoneInfo(model.timezone)
        for z in model.zones:
            poly = Polygon([(float(x), float(y)) for x, y in z.polygon])
            if not poly.is_valid:
                raise SitePlanError(source, f"zone {z.id!r}: polygon is not valid")
            plan.zones[z.id] = Zone(z.id, z.name, z.kind, poly, prep(poly), z.margin, z.dwell)
        for d in model.devices:
            plan.devices[d.id] = d.info(model.site)
        for registered in devices:
            plan.devices.setdefault(registered.id, registered)
        worn = {t.person: t.id for t in model.tags if t.person}
        for p in people:
            plan.people[p.id] = (
                p if p.tag or p.id not in worn else Person(p.id, p.name, p.role, p.household, worn[p.id])
            )
        for t in model.tags:
            plan.tags[t.id] = TagInfo(t.id, t.person, t.group)
        plan.vehicles.update(vehicles or {})
        for w in model.pickup_windows:
            plan.pickup_windows.append((hhmm_to_minutes(w.start), hhmm_to_minutes(w.end)))
        for m in model.maintenance:
            start, end = (t if t.tzinfo else t.replace(tzinfo=plan.tz) for t in (m.start, m.end))
            plan.maintenance.append(MaintenanceWindow(tuple(m.devices), start.timestamp(), end.timestamp(), m.reason))
        return plan

    @classmethod
    def from_mapping(cls, doc: dict[str, Any], source: str = "<community>") -> SitePlan:
        """Compile a parsed site file: the plan, and its ``people``/``vehicles`` sections as the roster."""
        if not isinstance(doc, dict) or "site" not in doc:
            raise SitePlanError(source, "not a community file: missing 'site'")
        try:
            model = site_from_mapping(doc, source)
        except SiteError as exc:
            raise SitePlanError(source, exc.reason) from exc
        people = [
            Person(str(p["id"]), str(p.get("name", "")), str(p.get("role", "")), p.get("household"), p.get("tag"))
            for p in doc.get("people") or []
        ]
        vehicles = {str(v["plate"]): str(v.get("owner", "")) for v in doc.get("vehicles") or []}
        return cls.from_site(model, people, vehicles, source=source)

    @classmethod
    def from_community(cls, community: Any) -> SitePlan:
        """Compile a loaded community model (a site model with its roster) or a parsed site file."""
        if hasattr(community, "model_dump"):
            return cls.from_mapping(community.model_dump(mode="json"), "<community model>")
        return cls.from_mapping(dict(community), "<community>")

    def in_maintenance(self, device_id: str, ts: float) -> bool:
        """Is a planned shutdown of this device under way at ``ts``?"""
        return any(w.covers(device_id, ts) for w in self.maintenance)

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
        """Tag groups on the site (elderly, child, ...) and every role a person can have: roles are the
        platform's vocabulary, so a rule naming one stays valid while nobody registered has it yet."""
        return {t.group for t in self.tags.values()} | {p.role for p in self.people.values()} | ROLES


def hhmm_to_minutes(text: str) -> int:
    """``"16:30"`` → 990."""
    hh, _, mm = text.partition(":")
    value = int(hh) * 60 + int(mm or 0)
    if not 0 <= value <= 24 * 60:
        raise ValueError(f"time of day out of range: {text!r}")
    return value


def load_site_plan(path: Path) -> SitePlan:
    """Read a site file (plan and roster)."""
    try:
        doc = read_site_file(path)
    except SiteError as exc:
        raise SitePlanError(str(path), f"cannot read community file: {exc.reason}") from exc
    return SitePlan.from_mapping(doc, str(path))
