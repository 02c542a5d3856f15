"""The names and functions a rule's conditions and templates see (pure: state is passed in)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.geo import Estimate
from rules.site import SitePlan, hhmm_to_minutes

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NIGHT_START = 22 * 60
NIGHT_END = 6 * 60


def time_names(now: float, site: SitePlan) -> dict[str, Any]:
    """``time.*``: site-local clock facts."""
    dt = datetime.fromtimestamp(now, site.tz)
    minute_of_day = dt.hour * 60 + dt.minute
    return {
        "now": now,
        "hour": dt.hour,
        "minute": dt.minute,
        "hhmm": f"{dt.hour:02d}:{dt.minute:02d}",
        "date": dt.date().isoformat(),
        "iso": dt.isoformat(timespec="seconds"),
        "weekday": WEEKDAYS[dt.weekday()],
        "is_weekend": dt.weekday() >= 5,
        "is_weekday": dt.weekday() < 5,
        "night": minute_of_day >= NIGHT_START or minute_of_day < NIGHT_END,
    }


def in_window_at(now: float, site: SitePlan, start: str, end: str) -> bool:
    """Is the site-local time of ``now`` within [start, end)? Windows may wrap midnight."""
    dt = datetime.fromtimestamp(now, site.tz)
    m = dt.hour * 60 + dt.minute
    a, b = hhmm_to_minutes(start), hhmm_to_minutes(end)
    return a <= m < b if a <= b else (m >= a or m < b)


def position_dict(est: Estimate | None) -> dict[str, float] | None:
    """``{"x", "y"}`` of an estimate."""
    return None if est is None else {"x": round(est.x, 2), "y": round(est.y, 2)}


def subject_names(site: SitePlan, subject_id: str, estimates: Mapping[str, Estimate]) -> dict[str, Any]:
    """``subject.*`` for a person id, a tag id, a plate or a device id."""
    person = site.people.get(subject_id)
    tag_id: str | None = None
    if person is None and subject_id in site.tags:
        tag_id = subject_id
        person = site.person_for_tag(subject_id)
    if person is not None:
        tag_id = tag_id or person.tag
        tag = site.tags.get(tag_id) if tag_id else None
        return {
            "id": person.id,
            "kind": "person",
            "name": person.name,
            "role": person.role,
            "household": person.household,
            "tag": tag_id,
            "group": tag.group if tag else person.role,
            "position": position_dict(estimates.get(tag_id)) if tag_id else None,
        }
    if subject_id in site.tags:
        tag = site.tags[subject_id]
        return {
            "id": subject_id,
            "kind": "tag",
            "name": subject_id,
            "role": "",
            "household": None,
            "tag": subject_id,
            "group": tag.group,
            "position": position_dict(estimates.get(subject_id)),
        }
    if subject_id in site.vehicles:
        return {
            "id": subject_id,
            "kind": "vehicle",
            "name": subject_id,
            "role": "",
            "household": None,
            "tag": None,
            "group": "vehicle",
            "owner": site.vehicles[subject_id],
            "position": None,
        }
    dev = site.devices.get(subject_id)
    pos = {"x": dev.position[0], "y": dev.position[1]} if dev and dev.position else None
    return {
        "id": subject_id,
        "kind": "device" if dev else "unknown",
        "name": dev.name if dev else subject_id,
        "role": "",
        "household": None,
        "tag": None,
        "group": dev.kind if dev else "",
        "position": pos,
    }


@dataclass
class FunctionSet:
    """Builds the function table for one evaluation (closures over engine state)."""

    site: SitePlan
    now: float
    estimates: Mapping[str, Estimate]
    twins: Mapping[str, dict[str, Any]]
    subject: dict[str, Any]
    fresh_for: float = 120.0
    device_id: str | None = None

    def _pos(self, who: Any) -> tuple[float, float] | None:
        if isinstance(who, dict) and "x" in who:
            return float(who["x"]), float(who["y"])
        if who is None:
            pos = self.subject.get("position")
            return (float(pos["x"]), float(pos["y"])) if pos else None
        est = self.estimates.get(str(who))
        return (est.x, est.y) if est else None

    def in_zone(self, zone_id: str, who: Any = None) -> bool:
        zone = self.site.zones.get(zone_id)
        p = self._pos(who)
        return bool(zone and p and zone.covers(*p))

    def in_window(self, start: str, end: str) -> bool:
        return in_window_at(self.now, self.site, start, end)

    def in_pickup_window(self) -> bool:
        for a, b in self.site.pickup_windows:
            start, end = f"{a // 60:02d}:{a % 60:02d}", f"{b // 60:02d}:{b % 60:02d}"
            if in_window_at(self.now, self.site, start, end):
                return True
        return False

    def distance(self, a: Any, b: Any = None) -> float:
        pa, pb = self._pos(a), self._pos(b)
        if pa is None or pb is None:
            return math.inf
        return math.hypot(pa[0] - pb[0], pa[1] - pb[1])

    def tags_near(self, radius: float, group: str | None = None) -> list[str]:
        me = self._pos(None)
        if me is None:
            return []
        out = []
        for tag_id, est in self.estimates.items():
            if tag_id == self.subject.get("tag") or self.now - est.ts > self.fresh_for:
                continue
            info = self.site.tags.get(tag_id)
            if group is not None and (info is None or info.group != group):
                continue
            if math.hypot(est.x - me[0], est.y - me[1]) <= radius:
                out.append(tag_id)
        return sorted(out)

    def guardian_nearby(self, radius: float = 20.0) -> bool:
        """A tag of an adult of the subject's household (or a 'guardian' tag) is within ``radius``."""
        household = self.subject.get("household")
        for tag_id in self.tags_near(radius):
            info = self.site.tags.get(tag_id)
            if info is None:
                continue
            if info.group == "guardian":
                return True
            person = self.site.person_for_tag(tag_id)
            if person and household and person.household == household and person.role != "child":
                return True
        return False

    def in_maintenance(self, device_id: str | None = None) -> bool:
        """The device (default: the input's) is in a planned shutdown: a maintenance window of the site
        file covers the event time, or its twin reports ``maintenance: true``."""
        dev = device_id or self.device_id
        if dev is None:
            return False
        return bool(self.twins.get(dev, {}).get("maintenance")) or self.site.in_maintenance(dev, self.now)

    def twin_of(self, device_id: str) -> dict[str, Any]:
        return dict(self.twins.get(device_id, {}))

    def table(self) -> dict[str, Callable[..., Any]]:
        """The function table for simpleeval."""
        return {
            "in_zone": self.in_zone,
            "in_window": self.in_window,
            "in_pickup_window": self.in_pickup_window,
            "guardian_nearby": self.guardian_nearby,
            "tags_near": self.tags_near,
            "distance": self.distance,
            "twin_of": self.twin_of,
            "in_maintenance": self.in_maintenance,
            "len": len,
            "min": min,
            "max": max,
            "abs": abs,
            "round": round,
            "int": int,
            "float": float,
            "str": str,
            "bool": bool,
            "any": any,
            "all": all,
            "lower": lambda s: str(s).lower(),
            "upper": lambda s: str(s).upper(),
        }


def build_names(
    site: SitePlan,
    *,
    rule_id: str,
    rule_description: str,
    subject: str,
    now: float,
    kinds: Mapping[str, str],
    twins: Mapping[str, dict[str, Any]],
    estimates: Mapping[str, Estimate],
    event: dict[str, Any] | None = None,
    device_id: str | None = None,
    base: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The name table for one evaluation; ``base`` restores names saved with a pending timer."""
    names: dict[str, Any] = {"true": True, "false": False, "none": None}
    names.update(base or {})
    if event is not None:
        names["event"] = event
    device_id = device_id or (names.get("device") or {}).get("id")
    if device_id is not None:
        dev = site.devices.get(device_id)
        pos = {"x": dev.position[0], "y": dev.position[1]} if dev and dev.position else None
        names["device"] = {
            "id": device_id,
            "kind": kinds.get(device_id, ""),
            "name": dev.name if dev else device_id,
            "position": pos,
        }
        names["twin"] = twins.get(device_id, {})
    names.setdefault("event", {})
    names.setdefault("device", {})
    names.setdefault("twin", {})
    names["subject"] = subject_names(site, subject, estimates)
    names["site"] = {"id": site.site, "name": site.name}
    names["time"] = time_names(now, site)
    names["rule"] = {"id": rule_id, "description": rule_description}
    if trigger is not None:
        names["trigger"] = trigger
    names.setdefault("trigger", {})
    return names
