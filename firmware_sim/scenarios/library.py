"""The scenario library: each function builds one :class:`Scenario` from a community.

Alarm kinds used here (the rules engine and access control raise them): ``elderly_left_fence``,
``child_left_kindergarten``, ``watchlist_match``, ``door_forced``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import Callable

from firmware_sim.behaviour import BehaviourModel
from firmware_sim.community import Community, Device, Person
from firmware_sim.identity import face_embedding
from firmware_sim.radio import heard_rssi, max_range_m, point_along
from firmware_sim.scenarios import Expect, Scenario, ScenarioParams, Step

CST = dt.timezone(dt.timedelta(hours=8))
DEFAULT_DAY = dt.date(2026, 11, 25)


class ScenarioError(LookupError):
    """Unknown scenario, or the community lacks what the scenario needs."""

    def __init__(self, scenario: str, reason: str) -> None:
        super().__init__(f"scenario {scenario}: {reason}")
        self.scenario = scenario
        self.reason = reason


def local_ts(day: dt.date, hour: int, minute: int = 0) -> float:
    """Epoch seconds of a local (UTC+8) wall-clock time."""
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=CST).timestamp()


def _door_for(c: Community, p: Person) -> Device:
    h = next(h for h in c.households if h.id == p.household)
    return next(d for d in c.devices_of("door_lock") if d.building == h.building and d.unit == h.unit)


def _face(p_id: str, rng: random.Random, liveness: float = 0.97) -> dict[str, object]:
    return {"liveness": liveness, "embedding": face_embedding(p_id, 0.05, rng), "_credential": p_id}


def _tag_walk(
    c: Community, tag: str, path: list[tuple[float, float]], seconds: float, rng: random.Random, every: float = 10.0
) -> list[Step]:
    readers = c.devices_of("rfid_reader")
    steps: list[Step] = []
    reach = max_range_m()
    t = 0.0
    while t <= seconds:
        pos = point_along(path, t / seconds)
        for r in sorted(readers, key=lambda d: math.dist(pos, d.position))[:3]:
            d = math.dist(pos, r.position)
            rssi = heard_rssi(d, rng) if d <= reach else None
            if rssi is not None:
                steps.append(Step(round(t, 2), r.id, "events/tag_seen", {"tag": tag, "rssi": rssi}))
        t += every
    return steps


def _devices(steps: list[Step], *extra: str) -> tuple[str, ...]:
    return tuple(sorted({s.device for s in steps} | set(extra)))


def morning_rush(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """07:30–07:40 of the behaviour model at the gates and unit doors: residents are let out and in."""
    start = local_ts(DEFAULT_DAY, 7, 30)
    acts = [
        a
        for a in BehaviourModel(c, seed=7).actions(start, start + 600)
        if a.suffix in ("events/plate_captured", "events/face_captured", "events/door_opened")
    ]
    steps = [Step(round(a.ts - start, 3), a.device_id, a.suffix, a.payload) for a in acts]
    plate = next(
        (
            s
            for s in steps
            if s.action == "events/plate_captured" and isinstance(s.payload, dict) and "plate" in s.payload
        ),
        None,
    )
    face = next((s for s in steps if s.action == "events/face_captured"), None)
    expects = [
        Expect(
            "event",
            "devices emit their morning captures",
            level="device",
            device=steps[0].device if steps else None,
            name=steps[0].action[7:] if steps else None,
        )
    ]
    if plate is not None:
        expects.append(
            Expect("command", f"barrier {plate.device} opened for a resident vehicle", device=plate.device, name="open")
        )
    if face is not None:
        expects.append(
            Expect("command", f"door {face.device} opened for a resident face", device=face.device, name="open")
        )
    return Scenario(
        "morning-rush",
        morning_rush.__doc__ or "",
        ("access",),
        start,
        60.0,
        _devices(steps),
        tuple(steps),
        tuple(expects),
    )


def elderly_wanders_off(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """An elderly resident living alone walks out through the north gate into the street."""
    tag = next((t for t in c.tags if t.group == "elderly"), None)
    path = next((p.points for p in c.paths if p.id == "wander-out"), None)
    if tag is None or path is None:
        raise ScenarioError("elderly-wanders-off", "community has no elderly tag or wander-out path")
    steps = _tag_walk(c, tag.id, path, 600.0, random.Random("elderly-wanders-off"))
    expects = (
        Expect(
            "event",
            "perimeter readers hear the tag",
            level="device",
            device=steps[0].device,
            name="tag_seen",
            match={"tag": tag.id},
        ),
        # within: the built-in rule's `for: 60s` plus 5 s
        Expect(
            "alarm",
            "alarm: elderly resident left the community",
            name="elderly_left_fence",
            subjects=(tag.person, tag.id),
            within=65.0,
        ),
    )
    return Scenario(
        "elderly-wanders-off",
        elderly_wanders_off.__doc__ or "",
        ("rules",),
        local_ts(DEFAULT_DAY, 14, 0),
        60.0,
        _devices(steps),
        tuple(steps),
        expects,
    )


def child_leaves_kindergarten(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """A kindergarten child's tag leaves the kindergarten outside the pick-up windows."""
    tag = next((t for t in c.tags if t.group == "child"), None)
    path = next((p.points for p in c.paths if p.id == "kg-pickup"), None)
    if tag is None or path is None:
        raise ScenarioError("child-leaves-kindergarten", "community has no child tag or kg-pickup path")
    steps = _tag_walk(c, tag.id, path, 300.0, random.Random("child-leaves-kindergarten"))
    expects = (
        Expect(
            "event",
            "kindergarten readers hear the tag",
            level="device",
            device=steps[0].device,
            name="tag_seen",
            match={"tag": tag.id},
        ),
        Expect(
            "alarm",
            "alarm: child left the kindergarten outside pick-up time",
            name="child_left_kindergarten",
            subjects=(tag.person, tag.id),
            within=15.0,
        ),
    )
    return Scenario(
        "child-leaves-kindergarten",
        child_leaves_kindergarten.__doc__ or "",
        ("rules",),
        local_ts(DEFAULT_DAY, 14, 10),
        60.0,
        _devices(steps),
        tuple(steps),
        expects,
    )


def tenant_lease_expires(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """The day after a tenant's lease ends the unit door refuses them; an owner is still let in."""
    # The platform judges leases by its own clock: the tenant whose lease ended first is the one whose lease
    # has surely ended when the scenario is played against a live platform.
    tenants = [p for p in c.people if p.role == "tenant" and p.lease and p.face_consent and p.card]
    tenant = min(tenants, key=lambda p: (p.lease.end if p.lease else DEFAULT_DAY, p.id), default=None)
    if tenant is None or tenant.lease is None:
        raise ScenarioError("tenant-lease-expires", "community has no tenant with a lease")
    door = _door_for(c, tenant)
    owner = next(
        (
            p
            for p in c.people
            if p.role in ("owner", "family")
            and p.face_consent
            and p.household is not None
            and _door_for(c, p).id == door.id
        ),
        None,
    )
    rng = random.Random("tenant-lease-expires")
    steps = [
        Step(0.0, door.id, "events/face_captured", _face(tenant.id, rng)),
        Step(30.0, door.id, "events/card_presented", {"card": tenant.card}),
    ]
    expects = [
        Expect("event", "door captures the tenant's face", level="device", device=door.id, name="face_captured"),
        Expect(
            "command",
            f"door {door.id} stays shut for the ex-tenant {tenant.id} (face and card)",
            device=door.id,
            name="open",
            match={"subject": tenant.id},
            count=0,
            within=5.0,
        ),
    ]
    if owner is not None:
        steps.append(Step(120.0, door.id, "events/face_captured", _face(owner.id, rng)))
        expects.append(
            Expect(
                "command",
                f"door {door.id} still opens for resident {owner.id}",
                device=door.id,
                name="open",
                match={"subject": owner.id},
                count=1,
                within=5.0,
            )
        )
    start = local_ts(tenant.lease.end + dt.timedelta(days=1), 9, 0)
    return Scenario(
        "tenant-lease-expires",
        tenant_lease_expires.__doc__ or "",
        ("access",),
        start,
        60.0,
        (door.id,),
        tuple(steps),
        tuple(expects),
    )


def forge(payload: str) -> str:
    """A visitor code with one character of its signed part changed (what a forger would try)."""
    i = len(payload) // 2
    return payload[:i] + ("A" if payload[i] != "A" else "B") + payload[i + 1 :]


def visitor_pass_request(c: Community) -> tuple[str, str]:
    """``(host person, door)`` the ``visitor-qr`` scenario's pass must be issued for."""
    host = next(p for p in c.people if p.role == "owner")
    return host.id, _door_for(c, host).id


def visitor_qr(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """A resident's visitor code opens the door once, is refused when shown again, and an altered copy is
    refused too.  Needs a real signed pass for the host's door (``--visitor-pass``; issue one with
    ``anfang community pass issue --issuer HOST --door DOOR --uses 1``); without one it plays an unsigned
    code, which the door must refuse."""
    host = next(p for p in c.people if p.role == "owner")
    door = _door_for(c, host)
    start = local_ts(DEFAULT_DAY, 15, 0)
    code = params.visitor_pass if params is not None else None
    read = Expect("event", "door reads the QR code", level="device", device=door.id, name="qr_scanned")
    if code is None:
        unsigned = "VISIT-" + host.id + "-20261125"
        steps: tuple[Step, ...] = (Step(0.0, door.id, "events/qr_scanned", {"payload": unsigned}),)
        expects: tuple[Expect, ...] = (
            read,
            Expect(
                "command", "door stays shut for a code nobody signed", device=door.id, name="open", count=0, within=5.0
            ),
        )
    else:
        steps = (
            Step(0.0, door.id, "events/qr_scanned", {"payload": code}),
            Step(60.0, door.id, "events/qr_scanned", {"payload": code}),
            Step(120.0, door.id, "events/qr_scanned", {"payload": forge(code)}),
        )
        expects = (
            read,
            Expect(
                "command",
                "door opens exactly once for the single-use code (shown twice, then an altered copy)",
                device=door.id,
                name="open",
                count=1,
                within=5.0,
            ),
        )
    return Scenario(
        "visitor-qr",
        "A resident's visitor code opens the door once, is refused when shown again, "
        "and an altered copy is refused too.",
        ("access",),
        start,
        60.0,
        (door.id,),
        steps,
        expects,
    )


def watchlist_at_night(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """At 23:40 a person on the police watchlist shows their face at a unit door."""
    if not c.watchlist:
        raise ScenarioError("watchlist-at-night", "community has no watchlist")
    w = c.watchlist[0]
    door = c.devices_of("door_lock")[0]
    steps = (Step(0.0, door.id, "events/face_captured", _face(w.id, random.Random("watchlist"), 0.96)),)
    expects = (
        Expect("event", "door captures the face", level="device", device=door.id, name="face_captured"),
        Expect("alarm", "alarm: watchlist face at night", name="watchlist_match", subjects=(w.id,)),
        Expect("command", "the door does not open for a stranger", device=door.id, name="open", count=0, within=5.0),
    )
    return Scenario(
        "watchlist-at-night",
        watchlist_at_night.__doc__ or "",
        ("rules", "access"),
        local_ts(DEFAULT_DAY, 23, 40),
        60.0,
        (door.id,),
        steps,
        expects,
    )


def forced_door(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """At 02:10 a unit door is forced open while locked."""
    door = c.devices_of("door_lock")[-1]
    steps = (Step(0.0, door.id, "events/door_forced", {}),)
    expects = (
        Expect("event", "door reports being forced", level="device", device=door.id, name="door_forced"),
        Expect("alarm", "alarm: door forced", name="door_forced", subjects=(door.id,)),
    )
    return Scenario(
        "forced-door",
        forced_door.__doc__ or "",
        ("rules",),
        local_ts(DEFAULT_DAY, 2, 10),
        60.0,
        (door.id,),
        steps,
        expects,
    )


def power_cut(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """Building power fails: its doors and a gate drop offline, an exit happens, power returns."""
    doors = [d.id for d in c.devices_of("door_lock")][:3]
    gate = c.devices_of("vehicle_gate")[0].id
    group = [*doors, gate]
    steps = [Step(0.0, d, "net/down") for d in group]
    steps.append(Step(60.0, doors[0], "events/door_opened", {"by": "exit_button"}))
    steps += [Step(180.0, d, "net/up") for d in group]
    steps.append(Step(240.0, doors[0], "telemetry", {"rssi": -60.0}))
    expects = [
        Expect("status", f"{d} goes offline (last will)", level="device", device=d, value="offline") for d in group
    ]
    expects += [
        Expect("status", f"{d} comes back online", level="device", device=d, value="online", after=i)
        for i, d in enumerate(group)
    ]
    expects.append(
        Expect(
            "event",
            "the exit made during the outage arrives after reconnecting",
            level="device",
            device=doors[0],
            name="door_opened",
            match={"by": "exit_button"},
            after=0,
        )
    )
    return Scenario(
        "power-cut",
        power_cut.__doc__ or "",
        (),
        local_ts(DEFAULT_DAY, 19, 0),
        60.0,
        tuple(group),
        tuple(steps),
        tuple(expects),
    )


def bad_firmware(c: Community, params: ScenarioParams | None = None) -> Scenario:
    """A device with broken firmware: malformed JSON, unknown fields, stale seq, oversized and foreign topics."""
    dev = c.devices_of("camera")[0]
    other = c.devices_of("door_lock")[0]
    base = f"anfang/{c.site}/{dev.id}/"
    steps = (
        Step(0.0, dev.id, "raw", b"{not json", topic=base + "twin/reported"),
        Step(
            5.0, dev.id, "raw", json.dumps({"seq": 2**50, "state": {"warp_drive": True}}), topic=base + "twin/reported"
        ),
        Step(10.0, dev.id, "raw", json.dumps({"seq": 1, "state": {"fps": 10}}), topic=base + "twin/reported"),
        Step(
            15.0,
            dev.id,
            "raw",
            # over the platform's 256 KiB payload limit (413), under the brokers' packet limit (payload
            # + 64 KiB), which closes the connection before the platform sees anything
            b'{"id":"big","ts":0,"data":{"x":"' + b"A" * (300 * 1024) + b'"}}',
            topic=base + "events/motion",
        ),
        Step(
            20.0,
            dev.id,
            "raw",
            json.dumps({"seq": 2**50, "state": {"lock": "unlocked", "marker": "bad-fw"}}),
            topic=f"anfang/{c.site}/{other.id}/twin/reported",
        ),
    )
    expects = (
        Expect("error", "malformed JSON is answered with 400", device=dev.id, code=400),
        Expect("error", "an unknown reported field is answered with 422", device=dev.id, code=422),
        Expect("error", "a stale seq is answered with 409", device=dev.id, code=409),
        Expect("error", "an oversized event is answered with 413", device=dev.id, code=413),
        Expect(
            "absent",
            "a report on another device's topic is refused by the broker",
            device=other.id,
            topic="twin/reported",
            value="bad-fw",
            within=3.0,
        ),
    )
    return Scenario(
        "bad-firmware",
        bad_firmware.__doc__ or "",
        ("twins",),
        local_ts(DEFAULT_DAY, 10, 0),
        60.0,
        (dev.id,),
        steps,
        expects,
    )


SCENARIOS: dict[str, Callable[[Community, ScenarioParams], Scenario]] = {
    "morning-rush": morning_rush,
    "elderly-wanders-off": elderly_wanders_off,
    "child-leaves-kindergarten": child_leaves_kindergarten,
    "tenant-lease-expires": tenant_lease_expires,
    "visitor-qr": visitor_qr,
    "watchlist-at-night": watchlist_at_night,
    "forced-door": forced_door,
    "power-cut": power_cut,
    "bad-firmware": bad_firmware,
}


def build(name: str, community: Community, params: ScenarioParams | None = None) -> Scenario:
    """Build the named scenario for ``community`` (``params``: what some scenarios take from outside)."""
    try:
        factory = SCENARIOS[name]
    except KeyError:
        raise ScenarioError(name, f"unknown; known: {', '.join(SCENARIOS)}") from None
    return factory(community, params or ScenarioParams())
