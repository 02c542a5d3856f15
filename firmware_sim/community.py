"""The community file the simulator plays: the site model plus its roster and walking paths.

The plan (zones, buildings, households, device placements, tags, pick-up windows) is the platform's one
site model, :class:`twins.site.SiteModel` — the simulator reads the same file format and extends the model
with the people, vehicles, watchlist and walking paths it plays (``docs/simulator.md``). The simulator
is stricter than the platform: every device it simulates has a position and the site an origin.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from twins.site import Building, DeviceKind, DevicePlacement, Household, Origin, SiteModel, Tag, Window, Zone

__all__ = [
    "Building",
    "Community",
    "CommunityError",
    "Device",
    "DeviceKind",
    "Household",
    "Lease",
    "Origin",
    "Path_",
    "Person",
    "Tag",
    "Vehicle",
    "WatchlistEntry",
    "Window",
    "Zone",
    "bundled_community_path",
    "community_from_dict",
    "load_community",
    "resolve_community",
]

Role = Literal["owner", "family", "tenant", "elderly_alone", "child", "staff", "police"]
Point = tuple[float, float]


class CommunityError(ValueError):
    """The community file is unreadable or inconsistent."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Device(DevicePlacement):
    """A simulated device: a placement with a position (the simulator computes signal strengths)."""

    position: Point


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


class Community(SiteModel):
    """A whole community file: the site model, its roster and the simulator's paths."""

    origin: Origin
    devices: list[Device]  # type: ignore[assignment]  # the simulator's stricter placement (with a position)
    people: list[Person] = Field(default_factory=list)
    vehicles: list[Vehicle] = Field(default_factory=list)
    watchlist: list[WatchlistEntry] = Field(default_factory=list)
    paths: list[Path_] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_roster(self) -> Community:
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

    def plan(self) -> SiteModel:
        """The site model alone (what the platform keeps), without roster and paths."""
        return SiteModel.model_validate(
            self.model_dump(mode="json", exclude={"people", "vehicles", "watchlist", "paths"})
        )


def community_from_dict(data: dict[str, Any], source: str = "<dict>") -> Community:
    """Validate a parsed community document."""
    try:
        return Community.model_validate(data)
    except ValidationError as exc:
        raise CommunityError(source, str(exc)) from exc


def load_community(path: Path | str) -> Community:
    """Read and validate a community YAML file."""
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
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
