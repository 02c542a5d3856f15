"""Generate a community of any size from a few parameters and a seed (deterministic).

The pilot file ``communities/youzheng.yaml`` is ``generate(YOUZHENG)`` written by :func:`dump_yaml`.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass, replace
from typing import Any

import yaml

from firmware_sim.community import Community, community_from_dict
from firmware_sim.identity import make_id_number, make_mac, make_phone, make_plate

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蔡蒋余于杜叶程"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建国志文斌辉鹏宇浩然欣怡子涵梓轩雨桐"
_BUILDING_SPACING = 35.0
_WIDTH = 220.0
_ROAD_X = 110.0
_ZONE_DWELL_S = 30.0


@dataclass(frozen=True, slots=True)
class Params:
    """What a generated community looks like."""

    site: str = "demo"
    name: str = "示例小区"
    buildings: int = 9
    households: int = 206
    residents: int | None = None
    units: int | None = None
    floors: int = 6
    gates: int = 2
    cameras_per_gate: int = 3
    trackers: int = 2
    sniffers: int = 4
    rfid_spacing: float = 40.0
    rfid_outside_m: float = 20.0
    kindergarten: bool = True
    children: int | None = None
    origin: tuple[float, float] = (29.70, 116.00)
    seed: int = 1


YOUZHENG = Params(
    site="youzheng",
    name="浔阳区友正小区 (pilot)",
    buildings=9,
    households=206,
    residents=560,
    units=14,
    floors=6,
    gates=2,
    cameras_per_gate=3,
    trackers=2,
    sniffers=4,
    rfid_spacing=40.0,
    kindergarten=True,
    children=24,
    origin=(29.7063, 115.9872),
    seed=20260901,
)


def _name(rng: random.Random, surname: str | None = None) -> str:
    s = surname or rng.choice(_SURNAMES)
    return s + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2))))


def _birth(rng: random.Random, today: dt.date, age_lo: int, age_hi: int) -> dt.date:
    age_days = rng.randrange(age_lo * 365, age_hi * 365 + 1)
    return today - dt.timedelta(days=age_days)


def _perimeter_points(polygon: list[tuple[float, float]], spacing: float) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for (x0, y0), (x1, y1) in zip(polygon, polygon[1:] + polygon[:1], strict=True):
        length = math.hypot(x1 - x0, y1 - y0)
        n = max(1, int(length // spacing))
        for i in range(n):
            t = i / n
            pts.append((round(x0 + (x1 - x0) * t, 1), round(y0 + (y1 - y0) * t, 1)))
    return pts


def _layout(p: Params) -> dict[str, Any]:
    rows = math.ceil(p.buildings / 2)
    height = 75.0 + rows * _BUILDING_SPACING + 10.0
    fence = [(0.0, 0.0), (_WIDTH, 0.0), (_WIDTH, height), (0.0, height)]
    # readers sit on the fence and the kindergarten's corners, so a position estimate is off by up to
    # 15-30 m near a boundary: a tag counts as gone well outside, after 30 s there (no false leave on a day)
    # (20 m at the kindergarten, whose corners are 15-35 m from the nearest fence readers; 15 m at the
    # fence, as the readers outside the gates stand 20 m out)
    fence_noise = {"margin": 15.0, "dwell": _ZONE_DWELL_S}
    zones: list[dict[str, Any]] = [
        {"id": "community", "name": "小区围墙", "kind": "fence", "polygon": fence, **fence_noise}
    ]
    kg = [(140.0, 8.0), (210.0, 8.0), (210.0, 55.0), (140.0, 55.0)]
    if p.kindergarten:
        kg_noise = {"margin": 20.0, "dwell": _ZONE_DWELL_S}
        zones.append({"id": "kindergarten", "name": "幼儿园", "kind": "kindergarten", "polygon": kg, **kg_noise})
    units_total = p.units or max(p.buildings, math.ceil(p.households / (p.floors * 2)))
    units_total = max(units_total, p.buildings)
    rooms_per_floor = max(1, math.ceil(p.households / (units_total * p.floors)))
    base, extra = divmod(units_total, p.buildings)
    buildings = []
    for i in range(p.buildings):
        x = 50.0 if i % 2 == 0 else 170.0
        y = 75.0 + (i // 2) * _BUILDING_SPACING
        buildings.append(
            {
                "id": f"b{i + 1}",
                "name": f"{i + 1}栋",
                "units": base + (1 if i < extra else 0),
                "floors": p.floors,
                "rooms_per_floor": rooms_per_floor,
                "position": (x, y),
            }
        )
    return {"height": height, "fence": fence, "zones": zones, "kg": kg, "buildings": buildings}


def _devices(p: Params, lay: dict[str, Any]) -> list[dict[str, Any]]:
    height: float = lay["height"]
    devices: list[dict[str, Any]] = []
    gate_spots = [
        ("north", (_ROAD_X, height)),
        ("south", (_ROAD_X, 0.0)),
        ("west", (0.0, height / 2)),
        ("east", (_WIDTH, height / 2)),
    ]
    cn = {"north": "北", "south": "南", "west": "西", "east": "东"}
    for g in range(p.gates):
        label, (gx, gy) = gate_spots[g] if g < len(gate_spots) else (str(g + 1), (_ROAD_X + 10 * g, 0.0))
        cams = [f"cam-{label}-{c + 1}" for c in range(p.cameras_per_gate)]
        devices.append(
            {
                "id": f"gate-{label}",
                "kind": "vehicle_gate",
                "name": f"{cn.get(label, label)}门道闸",
                "position": (gx, gy),
                "cameras": cams,
            }
        )
        for c, cam in enumerate(cams):
            pos = (gx - 4 + 4 * c, gy + (2 if gy > 0 else -2))
            devices.append(
                {
                    "id": cam,
                    "kind": "camera",
                    "name": f"{cn.get(label, label)}门抓拍{c + 1}",
                    "position": pos,
                    "gate": f"gate-{label}",
                }
            )
    for b in lay["buildings"]:
        bx, by = b["position"]
        for u in range(1, b["units"] + 1):
            devices.append(
                {
                    "id": f"door-{b['id']}-u{u}",
                    "kind": "door_lock",
                    "name": f"{b['name']}{u}单元门禁",
                    "position": (bx - 8 + 16 * (u - 1), by - 6),
                    "building": b["id"],
                    "unit": u,
                }
            )
    for t in range(p.trackers):
        devices.append(
            {
                "id": f"tracker-{t + 1}",
                "kind": "ptz_tracker",
                "name": f"主干道灵瞳{t + 1}",
                "position": (_ROAD_X + 3, round(height * (t + 1) / (p.trackers + 1), 1)),
            }
        )
    for s in range(p.sniffers):
        y = round(10 + (height - 20) * s / max(1, p.sniffers - 1), 1)
        devices.append(
            {
                "id": f"sniffer-{s + 1:02d}",
                "kind": "mac_sniffer",
                "name": f"WiFi探针{s + 1:02d}",
                "position": (_ROAD_X - 3, y),
            }
        )
    spots = _perimeter_points(lay["fence"], p.rfid_spacing)
    if p.kindergarten:
        # in the kindergarten's yard, 12 m in from its corners: a child playing anywhere in it is
        # heard mostly by these, so its estimate stays inside (readers on its corners pulled it out)
        (x0, y0), (x1, y1) = lay["kg"][0], lay["kg"][2]
        spots += [(x0 + 12, y0 + 12), (x1 - 12, y0 + 12), (x1 - 12, y1 - 12), (x0 + 12, y1 - 12)]
    if p.rfid_outside_m > 0:
        # Readers only on the fence estimate a tag walking away as still on the fence (the centroid of
        # the readers that hear it): three readers just outside each gate see it leave.
        for _, (gx, gy) in gate_spots[: p.gates]:
            dy = p.rfid_outside_m if gy > 0 else -p.rfid_outside_m
            spots += [(round(gx + dx, 1), round(gy + dy, 1)) for dx in (-20.0, 0.0, 20.0)]
    for r, (x, y) in enumerate(spots):
        devices.append(
            {"id": f"rfid-{r + 1:02d}", "kind": "rfid_reader", "name": f"RFID {r + 1:02d}", "position": (x, y)}
        )
    return devices


def _people(p: Params, lay: dict[str, Any], rng: random.Random) -> dict[str, list[dict[str, Any]]]:
    today = dt.date(2026, 9, 1)
    rooms: list[tuple[str, int, str]] = []
    for b in lay["buildings"]:
        for u in range(1, b["units"] + 1):
            for f in range(1, b["floors"] + 1):
                for r in range(1, b["rooms_per_floor"] + 1):
                    rooms.append((b["id"], u, f"{f}{r:02d}"))
    occupied = sorted(rng.sample(range(len(rooms)), min(p.households, len(rooms))))
    households: list[dict[str, Any]] = [
        {
            "id": f"h-{rooms[i][0]}-u{rooms[i][1]}-{rooms[i][2]}",
            "building": rooms[i][0],
            "unit": rooms[i][1],
            "room": rooms[i][2],
        }
        for i in occupied
    ]
    kinds = [rng.choices(("owner", "tenant", "elderly_alone"), (70, 18, 12))[0] for _ in households]
    sizes = [1 if k == "elderly_alone" else rng.choice((1, 2, 2, 3, 3, 3, 4, 5)) for k in kinds]
    target = (p.residents or round(p.households * 2.72)) - 8
    while sum(sizes) < target:
        i = rng.randrange(len(sizes))
        if kinds[i] != "elderly_alone" and sizes[i] < 6:
            sizes[i] += 1
    while sum(sizes) > target:
        i = rng.randrange(len(sizes))
        if sizes[i] > 1:
            sizes[i] -= 1
    children_left = p.children if p.children is not None else round(target * 0.04)
    people: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    vehicles: list[dict[str, Any]] = []
    plates: set[str] = set()

    def add(role: str, household: str | None, surname: str | None, age: tuple[int, int]) -> dict[str, Any]:
        pid = f"p{len(people) + 1:04d}"
        male = rng.random() < 0.5
        birth = _birth(rng, today, *age)
        adult = role not in ("child",)
        randomized = rng.random() < 0.4
        person: dict[str, Any] = {
            "id": pid,
            "name": _name(rng, surname),
            "household": household,
            "role": role,
            "phone": make_phone(rng),
            "id_number": make_id_number(rng, birth, male),
            "face_consent": rng.random() < 0.92,
            "card": f"C{len(people) + 1:04d}" if adult else None,
            "tag": None,
            "lease": None,
            "mac": make_mac(rng, randomized) if adult else None,
            "mac_randomized": randomized and adult,
        }
        people.append(person)
        return person

    for h, kind, size in zip(households, kinds, sizes, strict=True):
        surname = rng.choice(_SURNAMES)
        if kind == "elderly_alone":
            person = add("elderly_alone", h["id"], surname, (72, 90))
            tag_id = f"tag-e{sum(1 for t in tags if t['group'] == 'elderly') + 1:03d}"
            person["tag"] = tag_id
            tags.append({"id": tag_id, "person": person["id"], "group": "elderly"})
            continue
        head_role = "owner" if kind == "owner" else "tenant"
        members = [add(head_role, h["id"], surname, (28, 70))]
        for _ in range(size - 1):
            if children_left > 0 and rng.random() < 0.35:
                children_left -= 1
                child = add("child", h["id"], surname, (3, 6))
                tag_id = f"tag-c{sum(1 for t in tags if t['group'] == 'child') + 1:03d}"
                child["tag"] = tag_id
                tags.append({"id": tag_id, "person": child["id"], "group": "child"})
                members.append(child)
            else:
                members.append(add("family" if kind == "owner" else "tenant", h["id"], None, (8, 80)))
        if kind == "tenant":
            start = today - dt.timedelta(days=rng.randrange(0, 330))
            end = start.replace(year=start.year + 1) - dt.timedelta(days=1)
            for m in members:
                m["lease"] = {"start": start.isoformat(), "end": end.isoformat()}
        if rng.random() < 0.35:
            plate = make_plate(rng, green=rng.random() < 0.22)
            while plate in plates:
                plate = make_plate(rng, green=rng.random() < 0.22)
            plates.add(plate)
            vehicles.append({"plate": plate, "owner": members[0]["id"]})
    for _ in range(6):
        add("staff", None, None, (25, 60))
    for _ in range(2):
        add("police", None, None, (25, 50))
    watchlist = []
    for w in range(3):
        birth = _birth(rng, today, 20, 50)
        watchlist.append(
            {
                "id": f"w{w + 1:03d}",
                "name": _name(rng),
                "reason": "协查通报 (synthetic)",
                "id_number": make_id_number(rng, birth, rng.random() < 0.8, region="360402"),
            }
        )
    _guardian_tags(people, tags)
    return {"households": households, "people": people, "tags": tags, "vehicles": vehicles, "watchlist": watchlist}


def _guardian_tags(people: list[dict[str, Any]], tags: list[dict[str, Any]]) -> None:
    """The head of each household with a tagged child wears a guardian tag (picks the children up)."""
    heads: dict[str, dict[str, Any]] = {}
    for p in people:
        if p["role"] in ("owner", "tenant"):
            heads.setdefault(p["household"], p)
    for child in [p for p in people if p["role"] == "child" and p["tag"]]:
        head = heads.get(child["household"])
        if head is None or head["tag"]:
            continue
        head["tag"] = f"tag-g{sum(1 for t in tags if t['group'] == 'guardian') + 1:03d}"
        tags.append({"id": head["tag"], "person": head["id"], "group": "guardian"})


def generate(params: Params) -> Community:
    """Build a community from ``params``; the same params (incl. seed) give the same community."""
    rng = random.Random(params.seed)
    lay = _layout(params)
    height: float = lay["height"]
    devices = _devices(params, lay)
    people = _people(params, lay, rng)
    paths = [
        {"id": "walk-main", "points": [(_ROAD_X, 0.0), (_ROAD_X, height)]},
        {
            "id": "walk-loop",
            # the residents' loop keeps 40-45 m from the gates (readers outside them hear a tag there)
            "points": [(20.0, 40.0), (_WIDTH - 20, 40.0), (_WIDTH - 20, height - 45), (20.0, height - 45), (20, 40.0)],
        },
        {"id": "kg-pickup", "points": [(150.0, 30.0), (_ROAD_X, 30.0), (_ROAD_X, 0.0), (_ROAD_X, -40.0)]},
        {
            "id": "wander-out",
            "points": [(50.0, 75.0), (_ROAD_X, 75.0), (_ROAD_X, height), (_ROAD_X + 30, height + 80.0)],
        },
    ]
    doc: dict[str, Any] = {
        "site": params.site,
        "name": params.name,
        "origin": {"lat": params.origin[0], "lon": params.origin[1]},
        "timezone": "Asia/Shanghai",
        "zones": lay["zones"],
        "buildings": lay["buildings"],
        "devices": devices,
        "tags": people["tags"],
        "households": people["households"],
        "people": people["people"],
        "vehicles": people["vehicles"],
        "watchlist": people["watchlist"],
        "paths": paths,
        "pickup_windows": [{"start": "11:30", "end": "12:00"}, {"start": "16:00", "end": "17:30"}]
        if params.kindergarten
        else [],
    }
    return community_from_dict(doc, f"generated:{params.site}")


#: Sections in the order the committed community files list them (the plan first, then the roster).
FILE_ORDER = ("site", "name", "origin", "timezone", "zones", "buildings", "devices", "tags", "households", "people",
              "vehicles", "watchlist", "paths", "pickup_windows")  # fmt: skip


def dump_yaml(community: Community, header: str = "") -> str:
    """YAML text for a community: one flow-style line per list item, so diffs stay readable."""
    dumped = community.model_dump(mode="json")
    data = {k: dumped[k] for k in FILE_ORDER if k in dumped} | {k: v for k, v in dumped.items() if k not in FILE_ORDER}
    out = [f"# {line}" for line in header.splitlines()] if header else []
    for key, value in data.items():
        if isinstance(value, list):
            if not value:
                out.append(f"{key}: []")
                continue
            out.append(f"{key}:")
            for item in value:
                if key == "devices":
                    item = {k: v for k, v in item.items() if v not in (None, [])}
                line = yaml.safe_dump(
                    item, default_flow_style=True, allow_unicode=True, width=100000, sort_keys=False
                ).strip()
                out.append(f"  - {line}")
        else:
            line = yaml.safe_dump(
                {key: value}, default_flow_style=False, allow_unicode=True, width=100000, sort_keys=False
            ).strip()
            out.append(line)
    return "\n".join(out) + "\n"


def youzheng_params() -> Params:
    """Fixed parameters of the committed pilot community."""
    return replace(YOUZHENG)
