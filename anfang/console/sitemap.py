"""The community map as SVG, pure: zones (fence, kindergarten), buildings, devices coloured by state.

Coordinates are the site model's metres (x east, y north); SVG's y grows downwards, so y is flipped.
Every device links to its device page. No IO: the caller passes the plan and each device's state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["DeviceMark", "Plan", "TagMark", "device_state", "render_svg"]

_MARGIN = 12.0
_BUILDING = (26.0, 12.0)  # a building's drawn footprint, metres
_ENTRANCE_KINDS = ("vehicle_gate",)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the map draws of the site model."""

    zones: Sequence[tuple[str, str, str, Sequence[tuple[float, float]]]]  # id, name, kind, polygon
    buildings: Sequence[tuple[str, str, tuple[float, float]]]  # id, name, position


@dataclass(frozen=True, slots=True)
class DeviceMark:
    """A device on the map: where, what, and its state (``online``, ``offline`` or ``alarm``)."""

    id: str
    kind: str
    name: str
    position: tuple[float, float]
    state: str


@dataclass(frozen=True, slots=True)
class TagMark:
    """A worn RFID tag's last known position (an elderly resident's or a child's): drawn only for
    roles that may see locations, labelled with the tag id and how old the fix is, never a name."""

    id: str
    position: tuple[float, float]
    age_s: float


def device_state(status: str | None, alarmed: bool) -> str:
    """``alarm`` over ``offline`` over ``online``: what the guard must see first."""
    if alarmed:
        return "alarm"
    return "online" if status == "online" else "offline"


def _bounds(plan: Plan, devices: Sequence[DeviceMark]) -> tuple[float, float, float, float]:
    # tags do not widen the plan: one walking off the map would shrink everything else
    points = [p for z in plan.zones for p in z[3]] + [b[2] for b in plan.buildings] + [d.position for d in devices]
    if not points:
        return 0.0, 0.0, 100.0, 100.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs) - _MARGIN, min(ys) - _MARGIN, max(xs) + _MARGIN, max(ys) + _MARGIN


def render_svg(
    plan: Plan,
    devices: Sequence[DeviceMark],
    *,
    device_href: str,
    counts: Mapping[str, int],
    tags: Sequence[TagMark] = (),
    track: Sequence[tuple[float, float]] = (),
) -> str:
    """The map; ``device_href`` is the device page's path prefix (the device id is appended)."""
    x0, y0, x1, y1 = _bounds(plan, devices)

    def pt(p: tuple[float, float]) -> tuple[float, float]:
        return round(p[0] - x0, 2), round(y1 - p[1], 2)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {x1 - x0:.1f} {y1 - y0:.1f}" role="img" '
        f'aria-label="community map: {counts.get("online", 0)} online, {counts.get("offline", 0)} offline, '
        f'{counts.get("alarm", 0)} in alarm" id="site-map">'
    ]
    for zid, name, kind, polygon in plan.zones:
        points = " ".join(f"{x},{y}" for x, y in (pt(p) for p in polygon))
        out.append(
            f'<polygon class="zone zone-{escape(kind)}" id="zone-{escape(zid)}" points="{points}">'
            f"<title>{escape(name)}</title></polygon>"
        )
    w, h = _BUILDING
    for bid, name, pos in plan.buildings:
        x, y = pt(pos)
        out.append(
            f'<g class="building" id="building-{escape(bid)}"><rect x="{x - w / 2}" y="{y - h / 2}" width="{w}" '
            f'height="{h}"/><text x="{x}" y="{y + 1.5}">{escape(name)}</text></g>'
        )
    for d in devices:
        x, y = pt(d.position)
        radius = 3.2 if d.kind in _ENTRANCE_KINDS else 1.8
        out.append(
            f'<a href="{escape(device_href + d.id)}"><circle class="device {d.state} kind-{escape(d.kind)}" '
            f'id="dev-{escape(d.id)}" data-state="{d.state}" cx="{x}" cy="{y}" r="{radius}">'
            f"<title>{escape(d.name)} ({escape(d.kind)}): {d.state}</title></circle></a>"
        )
    if track:
        points = " ".join(f"{x},{y}" for x, y in (pt(p) for p in track))
        out.append(f'<polyline class="track" id="track" points="{points}"/>')
        x, y = pt(track[-1])
        out.append(f'<circle class="track-end" id="track-end" cx="{x}" cy="{y}" r="2.2"/>')
    for t in tags:
        x, y = pt(t.position)
        x, y = min(max(x, 0.0), x1 - x0), min(max(y, 0.0), y1 - y0)  # beyond the plan: on its edge
        out.append(
            f'<rect class="tag" id="tag-{escape(t.id)}" x="{x - 1.2}" y="{y - 1.2}" width="2.4" height="2.4" '
            f'transform="rotate(45 {x} {y})"><title>tag {escape(t.id)}, {int(t.age_s)} s ago</title></rect>'
        )
    out.append("</svg>")
    return "".join(out)
