"""The behaviour model: a deterministic stream of timestamped device actions for a community.

Pure: ``BehaviourModel(community, seed).actions(start, end)`` yields :class:`Action` objects in
time order from a simulated clock; the same community, seed and window always give the same
sequence.  Each local day draws from its own ``random.Random(f"{seed}:{day}")``, so a window can
start mid-week without replaying the days before it.

Routines: morning rush out (7–9), evening return (17–20), night quiet; vehicles through the gates
(plate captures, PTZ tracking on the main road); residents through their unit doors (exit button
out, face or card in); elderly walking the loop and children in the kindergarten wearing tags that
perimeter readers hear with log-distance RSSI; phones heard by WiFi sniffers (some randomise their
MAC); periodic telemetry from every device.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.community import Community, Device, Person
from firmware_sim.identity import face_embedding, make_mac
from firmware_sim.radio import heard_rssi, max_range_m, point_along

DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True, slots=True, order=True)
class Action:
    """At simulated time ``ts``, ``device_id`` experiences ``suffix`` with ``payload``.

    ``suffix`` is a topic suffix (``events/face_captured``, ``telemetry``, ``twin/reported``);
    the firmware turns it into the message it publishes.
    """

    ts: float
    device_id: str
    suffix: str
    payload: dict[str, Any] = field(compare=False)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Tunables of the behaviour model."""

    utc_offset_h: float = 8.0
    telemetry_every_s: float = 300.0
    tag_sample_s: float = 30.0
    commute_share: float = 0.7
    car_commute_share: float = 0.8
    readers_per_sample: int = 3


class BehaviourModel:
    """Deterministic daily routines for one community."""

    def __init__(self, community: Community, seed: int, config: ModelConfig | None = None) -> None:
        self.c = community
        self.seed = seed
        self.cfg = config or ModelConfig()
        self._doors = {(d.building, d.unit): d for d in community.devices_of("door_lock")}
        self._households = {h.id: h for h in community.households}
        self._gates = community.devices_of("vehicle_gate")
        self._readers = community.devices_of("rfid_reader")
        self._sniffers = community.devices_of("mac_sniffer")
        self._trackers = community.devices_of("ptz_tracker")
        self._paths = {p.id: p.points for p in community.paths}
        self._range = max_range_m()
        guardians = {self.c.person(t.person).household: t.id for t in community.tags if t.group == "guardian"}
        #: child tag -> the tag of the guardian who picks the child up (same household)
        self._guardian = {
            t.id: guardians[h]
            for t in community.tags
            if t.group == "child" and (h := self.c.person(t.person).household) in guardians
        }

    def _local_day(self, ts: float) -> int:
        return math.floor((ts + self.cfg.utc_offset_h * HOUR) / DAY)

    def _day_start(self, day: int) -> float:
        return day * DAY - self.cfg.utc_offset_h * HOUR

    def actions(self, start: float, end: float) -> Iterator[Action]:
        """All actions with ``start <= ts < end``, in time order."""
        for day in range(self._local_day(start), self._local_day(end) + 1):
            for a in self.day_actions(day):
                if start <= a.ts < end:
                    yield a

    def day_actions(self, day: int) -> list[Action]:
        """One local day's actions, sorted."""
        rng = random.Random(f"{self.seed}:{day}")
        t0 = self._day_start(day)
        out: list[Action] = []
        for v in self.c.vehicles:
            self._vehicle_day(rng, t0, v.plate, out)
        for p in self.c.people:
            self._person_day(rng, t0, p, out)
        for t in self.c.tags:
            person = self.c.person(t.person)
            self._tag_day(rng, t0, t.id, t.group, person, out)
        self._telemetry_day(rng, t0, out)
        out.sort()
        return out

    # --- vehicles ---------------------------------------------------------------------------
    def _vehicle_day(self, rng: random.Random, t0: float, plate: str, out: list[Action]) -> None:
        if not self._gates or rng.random() > self.cfg.car_commute_share:
            return
        leave = t0 + _clip(rng.gauss(8.0, 0.5), 7.0, 9.0) * HOUR
        back = t0 + rng.uniform(17.0, 20.0) * HOUR
        self._pass_gate(rng, leave, plate, "out", out)
        self._pass_gate(rng, back, plate, "in", out)
        if rng.random() < 0.25:
            errand = t0 + rng.uniform(10.0, 15.0) * HOUR
            self._pass_gate(rng, errand, plate, "out", out)
            self._pass_gate(rng, errand + rng.uniform(0.5, 2.0) * HOUR, plate, "in", out)

    def _pass_gate(self, rng: random.Random, ts: float, plate: str, direction: str, out: list[Action]) -> None:
        gate = rng.choice(self._gates)
        cams = gate.cameras or [gate.id]
        cam = cams[0] if direction == "in" else cams[min(1, len(cams) - 1)]
        readable = rng.random() > 0.03
        payload: dict[str, Any] = {
            "camera": cam,
            "direction": direction,
            "confidence": round(rng.uniform(0.86, 0.995) if readable else 0.3, 3),
        }
        if readable:
            payload["plate"] = plate
        out.append(Action(round(ts, 3), gate.id, "events/plate_captured", payload))
        if self._trackers:
            tracker = min(self._trackers, key=lambda d: abs(d.position[1] - gate.position[1]))
            x, y = tracker.position[0] - 3.0, tracker.position[1] + rng.uniform(-15.0, 15.0)
            out.append(
                Action(
                    round(ts + rng.uniform(5.0, 20.0), 3),
                    tracker.id,
                    "events/target_tracked",
                    {
                        "target_id": f"v{abs(hash_str(plate)) % 100000:05d}",
                        "target_kind": "vehicle",
                        "x": round(x, 2),
                        "y": round(y, 2),
                        "confidence": round(rng.uniform(0.7, 0.98), 3),
                    },
                )
            )

    # --- people -----------------------------------------------------------------------------
    def _door_of(self, p: Person) -> Device | None:
        if p.household is None:
            return None
        h = self._households[p.household]
        return self._doors.get((h.building, h.unit))

    def _person_day(self, rng: random.Random, t0: float, p: Person, out: list[Action]) -> None:
        door = self._door_of(p)
        if door is None or p.role == "child":
            return
        if p.role == "elderly_alone":
            leave, back = rng.uniform(8.5, 10.0), rng.uniform(10.5, 11.5)
        elif rng.random() < self.cfg.commute_share:
            leave, back = _clip(rng.gauss(7.8, 0.5), 7.0, 9.0), rng.uniform(17.0, 20.0)
        elif rng.random() < 0.5:
            leave = rng.uniform(9.0, 16.0)
            back = leave + rng.uniform(0.5, 3.0)
        else:
            return
        t_out, t_in = t0 + leave * HOUR, t0 + back * HOUR
        out.append(Action(round(t_out, 3), door.id, "events/door_opened", {"by": "exit_button"}))
        self._phone_heard(rng, t_out + 60.0, p, out)
        if p.face_consent:
            payload: dict[str, Any] = {
                "liveness": round(rng.uniform(0.9, 0.999), 3),
                "embedding": face_embedding(p.id, 0.05, rng),
                "_credential": p.id,
            }
            out.append(Action(round(t_in, 3), door.id, "events/face_captured", payload))
        elif p.card:
            out.append(Action(round(t_in, 3), door.id, "events/card_presented", {"card": p.card}))
        self._phone_heard(rng, t_in - 60.0, p, out)

    def _phone_heard(self, rng: random.Random, ts: float, p: Person, out: list[Action]) -> None:
        if p.mac is None or not self._sniffers:
            return
        where = point_along(self._paths.get("walk-main", [(0.0, 0.0)]), rng.random())
        mac = make_mac(rng, randomized=True) if p.mac_randomized else p.mac
        for s in self._sniffers:
            rssi = heard_rssi(math.dist(where, s.position), rng)
            if rssi is not None:
                out.append(
                    Action(
                        round(ts + rng.uniform(0, 5), 3),
                        s.id,
                        "events/mac_seen",
                        {"mac": mac, "rssi": rssi, "randomized": p.mac_randomized},
                    )
                )

    # --- tags -------------------------------------------------------------------------------
    def _tag_day(self, rng: random.Random, t0: float, tag: str, group: str, p: Person, out: list[Action]) -> None:
        if group == "guardian":
            return  # heard when picking a child up (below)
        if group == "elderly":
            walk = self._paths.get("walk-loop")
            if walk is None or rng.random() < 0.3:
                return
            start = t0 + rng.uniform(9.0, 10.5) * HOUR
            duration = rng.uniform(20.0, 50.0) * 60.0
            self._walk(rng, tag, walk, start, duration, out)
        else:
            kg = next((z for z in self.c.zones if z.kind == "kindergarten"), None)
            if kg is None:
                return
            xs, ys = [pt[0] for pt in kg.polygon], [pt[1] for pt in kg.polygon]
            t = t0 + 8.5 * HOUR
            while t < t0 + 16.0 * HOUR:
                pos = (rng.uniform(min(xs), max(xs)), rng.uniform(min(ys), max(ys)))
                self._sample(rng, tag, pos, t, out)
                t += self.cfg.tag_sample_s * 8
            pickup = self._paths.get("kg-pickup")
            if pickup and self.c.pickup_windows:
                w = self.c.pickup_windows[-1]
                lo, hi = _hhmm(w.start), _hhmm(w.end)
                # out of the gate well before the window closes (the walk takes 5 minutes)
                at = t0 + rng.uniform(lo, hi - 0.25) * HOUR
                self._walk(rng, tag, pickup, at, 300.0, out)
                if (guardian := self._guardian.get(tag)) is not None:
                    self._walk(rng, guardian, pickup, at, 300.0, out)  # hand in hand

    def _walk(
        self,
        rng: random.Random,
        tag: str,
        path: list[tuple[float, float]],
        start: float,
        duration: float,
        out: list[Action],
    ) -> None:
        t = start
        while t <= start + duration:
            self._sample(rng, tag, point_along(path, (t - start) / duration), t, out)
            t += self.cfg.tag_sample_s

    def _sample(self, rng: random.Random, tag: str, pos: tuple[float, float], ts: float, out: list[Action]) -> None:
        near = sorted(self._readers, key=lambda r: math.dist(pos, r.position))[: self.cfg.readers_per_sample]
        for r in near:
            d = math.dist(pos, r.position)
            if d > self._range:
                continue
            rssi = heard_rssi(d, rng)
            if rssi is not None:
                out.append(
                    Action(round(ts + rng.uniform(0, 1), 3), r.id, "events/tag_seen", {"tag": tag, "rssi": rssi})
                )

    # --- telemetry --------------------------------------------------------------------------
    def _telemetry_day(self, rng: random.Random, t0: float, out: list[Action]) -> None:
        every = self.cfg.telemetry_every_s
        for d in self.c.devices:
            phase = rng.uniform(0, every)
            base_rssi = rng.uniform(-75.0, -45.0)
            for k in range(int(DAY // every)):
                out.append(
                    Action(
                        round(t0 + phase + k * every, 3),
                        d.id,
                        "telemetry",
                        {"rssi": round(base_rssi + rng.gauss(0, 2), 1)},
                    )
                )


def hash_str(s: str) -> int:
    """A stable (not per-process salted) string hash."""
    h = 2166136261
    for ch in s.encode("utf-8"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def _clip(v: float, lo: float, hi: float) -> float:
    return min(max(v, lo), hi)


def _hhmm(s: str) -> float:
    h, m = s.split(":")
    return int(h) + int(m) / 60.0
