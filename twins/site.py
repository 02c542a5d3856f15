"""The site model: one validated description of a community's places and devices.

A site file (YAML, the format of ``docs/simulator.md``) describes a site's plan — its origin, zones and
fences, buildings and households, entrances, where each device is placed, the RFID tags people wear and
the kindergarten's pick-up windows — and, for provisioning, its roster (``people``, ``vehicles``,
``watchlist``) and the simulator's walking ``paths``. :class:`SiteModel` is the plan: the platform keeps
it in the registry (``anfang site load FILE``; table ``site_models``) and the registry, the rules
engine, access control, the console and the simulator all read this one model. The roster is personal
data and goes to the access-control registry (encrypted), never into the site model; the simulator's
``Community`` extends this model with the roster and paths it plays.

:class:`DeviceInfo` is the one record of a device the platform passes around at run time: made from a
registry row (:mod:`registry.records`) or from a placement in the site model.

Pure: pydantic validation, no IO (reading a file is :func:`load_site_file`'s only job), no clock.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from twins.kinds import VIRTUAL_KINDS

__all__ = [
    "ENTRANCE_KINDS",
    "PLACED_KINDS",
    "ROSTER_KEYS",
    "Building",
    "DeviceInfo",
    "DeviceKind",
    "DevicePlacement",
    "Household",
    "Maintenance",
    "Origin",
    "SiteError",
    "SiteModel",
    "Tag",
    "Window",
    "Zone",
    "load_site_file",
    "read_site_file",
    "site_from_mapping",
]

DeviceKind = Literal["vehicle_gate", "camera", "ptz_tracker", "door_lock", "mac_sniffer", "rfid_reader"]
#: Kinds of physical devices a site file places (tags are listed under ``tags``).
PLACED_KINDS: tuple[str, ...] = ("vehicle_gate", "camera", "ptz_tracker", "door_lock", "mac_sniffer", "rfid_reader")
#: Devices that let people or vehicles in: the site's entrances.
ENTRANCE_KINDS = frozenset({"vehicle_gate", "door_lock"})
#: Sections of a site file that are not the plan: the roster (personal data) and the simulator's paths.
ROSTER_KEYS = frozenset({"people", "vehicles", "watchlist", "paths"})
Point = tuple[float, float]
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")
#: libyaml's safe loader when PyYAML has it: the pilot's site file parses in 0.2 s instead of 2 s.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SiteError(ValueError):
    """A site file is unreadable or inconsistent; ``path`` names the file, ``reason`` what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device as the platform knows it: kind and placement (building/unit of a door, gate of a capture
    camera, position on the plan) and, for registered devices, its site.

    Field order is positional for access control's call sites (``DeviceInfo(id, kind, building, unit)``);
    everything after ``kind`` has a default.
    """

    id: str
    kind: str
    building: str | None = None
    unit: int | None = None
    gate: str | None = None
    name: str = ""
    site: str = ""
    position: tuple[float, float] | None = None
    disabled: bool = False  # refused by the broker until enabled (``anfang devices disable``)
    last_seen: float | None = None  # when it last sent anything, as last written (anfang.last_seen)

    @property
    def virtual(self) -> bool:
        """A device that never connects (an RFID tag): its twin is derived by the platform."""
        return self.kind in VIRTUAL_KINDS

    @property
    def entrance(self) -> bool:
        """A gate or a door: something that opens for people or vehicles."""
        return self.kind in ENTRANCE_KINDS


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(_Model):
    """Geographic position of the site plan's (0, 0)."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Zone(_Model):
    """A polygon on the site plan (metres): the fence, the kindergarten, another area."""

    id: str
    name: str = ""
    kind: Literal["fence", "kindergarten", "area"]
    polygon: list[Point] = Field(min_length=3)
    #: a tag counts as gone only when its position estimate is this far outside (metres) ...
    margin: float = Field(default=0.0, ge=0)
    #: ... and has stayed on the new side this long (seconds): reader noise does not move it
    dwell: float = Field(default=0.0, ge=0)


class Building(_Model):
    """A residential building."""

    id: str
    name: str = ""
    units: int = Field(default=1, ge=1)
    floors: int = Field(default=1, ge=1)
    rooms_per_floor: int = Field(default=1, ge=1)
    position: Point | None = None


class Household(_Model):
    """A flat: building, unit and room."""

    id: str
    building: str
    unit: int | None = None
    room: str | None = None


class DevicePlacement(_Model):
    """Where a physical device sits: ``cameras`` of a gate, ``gate`` of a capture camera,
    ``building``/``unit`` of a unit door, ``position`` on the plan."""

    id: str
    kind: DeviceKind
    name: str = ""
    position: Point | None = None
    cameras: list[str] = Field(default_factory=list)
    gate: str | None = None
    building: str | None = None
    unit: int | None = None

    @field_validator("id")
    @classmethod
    def _lower_id(cls, v: str) -> str:
        if not v or not set(v) <= _ID_CHARS:
            raise ValueError(f"device id {v!r} must be lowercase [a-z0-9-_]")
        return v

    def info(self, site: str) -> DeviceInfo:
        """This placement as the platform's device record."""
        pos = (float(self.position[0]), float(self.position[1])) if self.position else None
        return DeviceInfo(self.id, self.kind, self.building, self.unit, self.gate, self.name, site, pos)


class Tag(_Model):
    """An RFID tag (a virtual twin) worn by a person of a group (elderly, child, ...)."""

    id: str
    person: str
    group: str


class Window(_Model):
    """A daily time window, local time ``HH:MM``."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, sep, mm = v.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and 0 <= int(hh) * 60 + int(mm) <= 24 * 60):
            raise ValueError(f"time of day must be HH:MM, got {v!r}")
        return v


class Maintenance(_Model):
    """A planned shutdown: ``devices`` (ids or globs) raise no offline alarms from ``start`` to ``end``
    (ISO times; site-local without an offset)."""

    devices: list[str] = Field(min_length=1)
    start: dt.datetime
    end: dt.datetime
    reason: str = ""


class SiteModel(_Model):
    """A site's plan: zones and fences, buildings and households, device placements (entrances among
    them), tags and pick-up windows. References between sections are checked."""

    site: str
    name: str = ""
    origin: Origin | None = None
    timezone: str = "Asia/Shanghai"
    zones: list[Zone] = Field(default_factory=list)
    buildings: list[Building] = Field(default_factory=list)
    households: list[Household] = Field(default_factory=list)
    devices: list[DevicePlacement] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    pickup_windows: list[Window] = Field(default_factory=list)
    maintenance: list[Maintenance] = Field(default_factory=list)

    @field_validator("site")
    @classmethod
    def _site_id(cls, v: str) -> str:
        if not v or not set(v) <= _ID_CHARS:
            raise ValueError(f"site id {v!r} must be lowercase [a-z0-9-_]")
        return v

    @model_validator(mode="after")
    def _check_refs(self) -> SiteModel:
        for what, ids in (
            ("device", [d.id for d in self.devices]),
            ("zone", [z.id for z in self.zones]),
            ("building", [b.id for b in self.buildings]),
            ("tag", [t.id for t in self.tags]),
        ):
            if len(ids) != len(set(ids)):
                raise ValueError(f"duplicate {what} ids")
        buildings = {b.id for b in self.buildings}
        devices = {d.id for d in self.devices}
        for h in self.households:
            if buildings and h.building not in buildings:
                raise ValueError(f"household {h.id} refers to unknown building {h.building}")
        for d in self.devices:
            if d.gate is not None and d.gate not in devices:
                raise ValueError(f"device {d.id} refers to unknown gate {d.gate}")
            if d.building is not None and buildings and d.building not in buildings:
                raise ValueError(f"device {d.id} refers to unknown building {d.building}")
        return self

    def device(self, device_id: str) -> DevicePlacement:
        """The placement of this device (KeyError if absent)."""
        for d in self.devices:
            if d.id == device_id:
                return d
        raise KeyError(device_id)

    def devices_of(self, kind: str) -> Sequence[DevicePlacement]:
        """All placements of one kind, in file order."""
        return [d for d in self.devices if d.kind == kind]

    def entrances(self) -> list[DevicePlacement]:
        """Gates and unit doors."""
        return [d for d in self.devices if d.kind in ENTRANCE_KINDS]

    def zone(self, zone_id: str) -> Zone:
        """The zone with this id (KeyError if absent)."""
        for z in self.zones:
            if z.id == zone_id:
                return z
        raise KeyError(zone_id)

    def fences(self) -> list[Zone]:
        """The zones of kind ``fence``."""
        return [z for z in self.zones if z.kind == "fence"]

    def device_infos(self) -> dict[str, DeviceInfo]:
        """Every placed device and tag as the platform's device record (ids interned)."""
        out = {sys.intern(d.id): d.info(self.site) for d in self.devices}
        for t in self.tags:
            out[sys.intern(t.id)] = DeviceInfo(t.id, "rfid_tag", name=f"{t.group} tag", site=self.site)
        return out

    def plan_document(self) -> dict[str, Any]:
        """The model as plain JSON data (what the registry stores)."""
        return self.model_dump(mode="json")


def site_from_mapping(data: dict[str, Any], source: str = "<site>") -> SiteModel:
    """Validate the plan sections of a parsed site file (the roster sections are skipped)."""
    if not isinstance(data, dict):
        raise SiteError(source, "top level must be a mapping")
    plan = {k: v for k, v in data.items() if k not in ROSTER_KEYS}
    try:
        return SiteModel.model_validate(plan)
    except ValidationError as exc:
        raise SiteError(source, str(exc)) from exc


def read_site_file(path: Path | str) -> dict[str, Any]:
    """A site file parsed, not yet validated (plan and roster)."""
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise SiteError(str(p), str(exc)) from exc
    if not isinstance(data, dict):
        raise SiteError(str(p), "top level must be a mapping")
    return data


def load_site_file(path: Path | str) -> SiteModel:
    """Read and validate a site file's plan."""
    return site_from_mapping(read_site_file(path), str(path))
