"""Issue 5 through the real broker: the simulator's gate and door firmware against the full platform's
access control (plates, faces, liveness, leases, watchlist), checked the way ``--check`` checks.

Each test plays a small ad-hoc scenario (``Scenario`` steps and expectations) with ``run_scenario``, and
reads the platform's access decisions from a tap to assert the refusal reasons.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import pytest_asyncio
from paho.mqtt.enums import CallbackAPIVersion
from sim_e2e_kit import FullPlatform, full_platform

from community.models import PersonRow
from firmware_sim.community import Community, Person
from firmware_sim.identity import face_embedding, make_plate
from firmware_sim.runner import ScenarioReport, run_scenario
from firmware_sim.scenarios import Expect, Scenario, Step

pytestmark = pytest.mark.asyncio(loop_scope="module")
START = 1_795_000_000.0  # simulated device clock; the platform decides on its own (real) clock


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def full(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FullPlatform]:
    async with full_platform(tmp_path_factory.mktemp("e2e-access"), "mosquitto") as fp:
        yield fp


async def _play(full: FullPlatform, steps: list[Step], expects: list[Expect], speed: float = 600.0) -> ScenarioReport:
    scenario = Scenario(
        "adhoc", "", ("access",), START, speed, tuple(sorted({s.device for s in steps})), tuple(steps), tuple(expects)
    )
    report = await run_scenario(
        scenario,
        full.community,
        host=full.stack.host,
        port=full.stack.port,
        secrets=full.secrets,
        operator=full.stack.operator_credentials,
        speed=speed,
    )
    assert report.ok, report.text()
    return report


def _decisions(full: FullPlatform) -> list[dict[str, Any]]:
    """Every access decision made so far and not yet read (the scenario's checks waited for them)."""
    out = []
    while not full.observed.decisions.empty():
        out.append(dict(full.observed.decisions.get_nowait().data))
    return out


def _face(person: str, liveness: float = 0.97, seed: int = 1) -> dict[str, Any]:
    return {"liveness": liveness, "embedding": face_embedding(person, 0.05, random.Random(seed))}


def _door_of(c: Community, p: Person) -> str:
    h = next(h for h in c.households if h.id == p.household)
    return next(d.id for d in c.devices_of("door_lock") if d.building == h.building and d.unit == h.unit)


async def test_a_registered_car_opens_the_gate_and_an_unknown_one_does_not(full: FullPlatform) -> None:
    c = full.community
    car = c.vehicles[0]
    known_tails = {v.plate[1:] for v in c.vehicles}
    stranger = next(p for i in range(100) if (p := make_plate(random.Random(i), green=False))[1:] not in known_tails)
    _decisions(full)
    await _play(
        full,
        [
            Step(
                0.0,
                "gate-north",
                "events/plate_captured",
                {"camera": "cam-north-1", "direction": "in", "plate": car.plate, "confidence": 0.95},
            ),
            Step(
                30.0,
                "gate-north",
                "events/plate_captured",
                {"camera": "cam-north-1", "direction": "in", "plate": stranger, "confidence": 0.95},
            ),
        ],
        [
            Expect(
                "command",
                "the barrier opens for the resident's car only",
                device="gate-north",
                name="open",
                match={"subject": car.owner},
                count=1,
                within=6.0,
            ),
            Expect("command", "and for nothing else", device="gate-north", name="open", count=1, within=6.0),
        ],
    )
    reasons = sorted((d["allowed"], d["reason"]) for d in _decisions(full) if d["device"] == "gate-north")
    assert reasons == [(False, "unknown_vehicle"), (True, "granted")]


async def test_a_face_opens_its_own_building_not_another_and_a_spoof_is_refused(full: FullPlatform) -> None:
    c = full.community
    resident = next(p for p in c.people if p.role == "owner" and p.face_consent)
    own = _door_of(c, resident)
    other = next(d.id for d in c.devices_of("door_lock") if d.building != c.device(own).building)
    _decisions(full)
    await _play(
        full,
        [
            Step(0.0, own, "events/face_captured", _face(resident.id)),
            Step(30.0, other, "events/face_captured", _face(resident.id, seed=2)),
            Step(60.0, own, "events/face_captured", _face(resident.id, liveness=0.3, seed=3)),  # a photo
        ],
        [
            Expect(
                "command",
                f"{own} opens for its resident once (not for the photo)",
                device=own,
                name="open",
                count=1,
                within=6.0,
            ),
            Expect("command", f"{other} (another building) stays shut", device=other, name="open", count=0, within=6.0),
        ],
    )
    reasons = {(d["device"], d["reason"]) for d in _decisions(full)}
    assert {(own, "granted"), (other, "not_entitled_here"), (own, "liveness_below_threshold")} <= reasons


async def test_a_tenant_is_let_in_until_the_lease_ends_and_refused_after(full: FullPlatform) -> None:
    c = full.community
    tenant = next(p for p in c.people if p.role == "tenant" and p.face_consent and p.card)
    door = _door_of(c, tenant)
    # Leases are whole days and the platform's clock is real: the lease is made to end 5 s from now (the
    # devices connect within about a second; the later captures come 6 s after the first, so surely after).
    lease_end = time.time() + 5.0
    await PersonRow.filter(id=tenant.id).update(lease_start=time.time() - 86400, lease_end=lease_end)
    full.observed.store.changed()  # what the store's own writes do: the handler reloads its snapshot
    _decisions(full)
    await _play(
        full,
        [
            Step(0.0, door, "events/card_presented", {"card": tenant.card}),
            Step(6.0, door, "events/card_presented", {"card": tenant.card}),
            Step(7.0, door, "events/face_captured", _face(tenant.id)),
        ],
        [
            Expect(
                "command",
                "the door opens for the tenant before the lease ends, not after",
                device=door,
                name="open",
                match={"subject": tenant.id},
                count=1,
                within=5.0,
            )
        ],
        speed=1.0,
    )
    decided = sorted((d["allowed"], d["reason"], d["credential_kind"]) for d in _decisions(full) if d["device"] == door)
    assert decided == [(False, "lease_ended", "card"), (False, "lease_ended", "face"), (True, "granted", "card")]


async def test_a_watchlisted_face_raises_a_retained_police_alarm(full: FullPlatform) -> None:
    c = full.community
    wanted = c.watchlist[1]
    door = c.devices_of("door_lock")[2].id
    await _play(
        full,
        [Step(0.0, door, "events/face_captured", _face(wanted.id, 0.95))],
        [
            Expect("alarm", "police alarm", name="watchlist_match", subjects=(wanted.id,), within=6.0),
            Expect("command", "the door stays shut", device=door, name="open", count=0, within=4.0),
        ],
    )
    # A police console connecting afterwards still gets the alarm: it is retained on alarms/+.
    got: list[dict[str, Any]] = []
    found = threading.Event()

    def on_message(cl: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        try:
            doc = json.loads(m.payload)
        except ValueError:
            return
        if m.retain and doc.get("kind") == "watchlist_match" and doc.get("subject") == wanted.id:
            got.append(doc)
            found.set()

    user, password = full.stack.operator_credentials
    cl = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="police-console")
    cl.username_pw_set(user, password)
    cl.on_message = on_message
    cl.connect(full.stack.host, full.stack.port)
    cl.subscribe(f"anfang/{c.site}/alarms/+", qos=1)
    cl.loop_start()
    try:
        assert found.wait(5.0), "no retained watchlist alarm"
    finally:
        cl.disconnect()
        cl.loop_stop()
    assert got[0]["audience"] == "police" and got[0]["evidence"]["device"] == door
    assert got[0]["data"]["door_opened"] is False
