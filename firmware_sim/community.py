"""The community file: a site plan with devices, residents, vehicles and paths (pydantic models).

``load_community(path)`` reads the YAML file described in ``docs/simulator.md``.  Other services
(access control, rules, telemetry) read the same file, so the models reject unknown keys to catch
typos early.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DeviceKind = Literal["vehicle_gate", "camera", "ptz_tracker", "door_lock", "mac_sniffer", "rfid_reader"]
Role = Literal["owner", "family", "tenant", "elderly_alone", "child", "staff", "police"]
Point = tuple[float, float]
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-")


class CommunityError(ValueError):
    """The community file is unreadable or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Model):
    """Geographic position of the site plan's (0, 0)."""

    lat: float
    lon: float


class Zone(_Model):
    """A polygon on the site plan (metres): the fence, the kindergarten, ..."""

    id: str
    name: str
    kind: Literal["fence", "kindergarten", "area"]
    polygon: list[Point]


class Building(_Model):
    """A residential building."""

    id: str
    name: str
    units: int
    floors: int
    rooms_per_floor: int
    position: Point


class Device(_Model):
    """A physical device: ``cameras`` on gates, ``gate`` on gate cameras, ``building``/``unit`` on doors."""

    id: str
    kind: DeviceKind
    name: str
    position: Point
    cameras: list[str] = Field(default_factory=list)
    gate: str | None = None
    building: str | None = None
    unit: int | None = None

    @field_validator("id")
    @classmethod
    def _lower_id(cls, v: str) -> str:
        if not v or not set(v) <= _ID_CHARS:
            raise ValueError(f"device id {v!r} must be lowercase [a-z0-9-]")
        return v


class Tag(_Model):
    """An RFID tag (virtual twin) worn by a person."""

    id: str
    person: str
    group: Literal["elderly", "child"]


class Household(_Model):
    """A flat."""

    id: str
    building: str
    unit: int
    room: str


class Lease(_Model):
    """A tenant's lease; access ends after ``end`` (inclusive day)."""

    start: dt.date
    end: dt.date


class Person(_Model):
    """A resident, staff member or police officer."""

    id: str
    name: str
    household: str | None = None
    role: Role
    phone: str
    id_number: str
    face_consent: bool = True
    card: str | None = None
    tag: str | None = None
    lease: Lease | None = None
    mac: str | None = None
    mac_randomized: bool = False


class Vehicle(_Model):
    """A resident's vehicle, by normalised plate."""

    plate: str
    owner: str


class WatchlistEntry(_Model):
    """A non-resident the police asked to be alerted about (face only, synthetic)."""

    id: str
    name: str
    id_number: str
    reason: str


class Path_(_Model):
    """A walking path (polyline, metres) along which tags move."""

    id: str
    points: list[Point]


class Window(_Model):
    """A daily time window, local time ``HH:MM``."""

    start: str
    end: str


class Community(_Model):
    """A whole community file."""

    site: str
    name: str
    origin: Origin
    timezone: str = "Asia/Shanghai"
    zones: list[Zone]
    buildings: list[Building]
    devices: list[Device]
    tags: list[Tag] = Field(default_factory=list)
    households: list[Household] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    vehicles: list[Vehicle] = Field(default_factory=list)
    watchlist: list[WatchlistEntry] = Field(default_factory=list)
    paths: list[Path_] = Field(default_factory=list)
    pickup_windows: list[Window] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_refs(self) -> Community:
        ids = [d.id for d in self.devices]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate device ids")
        people = {p.id for p in self.people}
        households = {h.id for h in self.households}
        for p in self.people:
            if p.household is not None and p.household not in households:
                raise ValueError(f"person {p.id} refers to unknown household {p.household}")
        for t in self.tags:
            if t.person not in people:
                raise ValueError(f"tag {t.id} refers to unknown person {t.person}")
        for v in self.vehicles:
            if v.owner not in people:
                raise ValueError(f"vehicle {v.plate} refers to unknown person {v.owner}")
        return self

    def device(self, device_id: str) -> Device:
        """The device with this id (KeyError if absent)."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    def devices_of(self, kind: str) -> list[Device]:
        """All devices of one kind, in file order."""
        return [d for d in self.devices if d.kind == kind]

    def person(self, person_id: str) -> Person:
        """The person with this id (KeyError if absent)."""
        for p in self.people:
            if p.id == person_id:
                return p
        raise KeyError(person_id)

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (KeyError if absent)."""
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)


def community_from_dict(data: dict[str, Any], source: str = "<dict>") -> Community:
    """Validate a parsed community document."""
    try:
        return Community.model_validate(data)
    except ValueError as exc:
        raise CommunityError(source, str(exc)) from exc


def load_community(path: Path | str) -> Community:
    """Read and validate a community YAML file."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CommunityError(str(p), str(exc)) from exc
    if not isinstance(data, dict):
        raise CommunityError(str(p), "top level must be a mapping")
    return community_from_dict(data, str(p))


def bundled_community_path(name: str) -> Path:
    """Path of a community shipped in ``firmware_sim/communities`` (e.g. ``youzheng``)."""
    return Path(__file__).parent / "communities" / f"{name}.yaml"


def resolve_community(ref: str) -> Path:
    """A file path, or the name of a bundled community."""
    p = Path(ref)
    if p.exists():
        return p
    bundled = bundled_community_path(ref)
    if bundled.exists():
        return bundled
    raise CommunityError(ref, "no such file or bundled community")
