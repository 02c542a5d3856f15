"""Simulated firmware against a real Mosquitto: connection, twin sync, commands, outages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from community.edge import DoorSealer
from firmware_sim.clock import SimClock
from firmware_sim.device import DeviceClient
from firmware_sim.firmware import DoorLock, Firmware, VehicleGate
from firmware_sim.mosquitto import Mosquitto

Msg = tuple[str, bytes, bool]


class Observer:
    """A plain paho client that records what it sees; waits on a condition, never sleeps."""

    def __init__(self, broker: Mosquitto, pattern: str) -> None:
        self.msgs: list[Msg] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(pattern, qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)

    def _on_message(self, c: Any, u: Any, m: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.msgs.append((m.topic, bytes(m.payload), bool(m.retain)))
            self.cond.notify_all()

    def publish(self, topic: str, doc: dict[str, Any] | str, retain: bool = False) -> None:
        payload = doc if isinstance(doc, str) else json.dumps(doc)
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def _wait(self, pred: Callable[[list[Msg]], bool], timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.msgs), timeout)

    async def wait(self, pred: Callable[[list[Msg]], bool], timeout: float = 5.0) -> list[Msg]:
        assert await asyncio.to_thread(self._wait, pred, timeout), f"not seen; got {[m[0] for m in self.msgs]}"
        return list(self.msgs)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def docs(msgs: list[Msg], topic: str) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _ in msgs if t == topic]


@pytest.fixture
def site() -> str:
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def observer(broker: Mosquitto, site: str) -> Iterator[Observer]:
    o = Observer(broker, f"anfang/{site}/#")
    yield o
    o.close()


@contextlib.asynccontextmanager
async def running(
    fw: Firmware, broker: Mosquitto, site: str, clock: SimClock, **kw: Any
) -> AsyncIterator[DeviceClient]:
    dc = DeviceClient(fw, site=site, host=broker.host, port=broker.port, password=None, clock=clock, **kw)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(dc.run())
        await asyncio.wait_for(dc.connected.wait(), 5)
        try:
            yield dc
        finally:
            dc.stop()


async def test_device_announces_itself_and_answers_commands(broker: Mosquitto, site: str, observer: Observer) -> None:
    clock = SimClock(time.time(), speed=10)
    gate = VehicleGate("gate-1", cameras=["cam-1"], seq_start=int(time.time() * 1000), boot_ts=clock.now())
    base = f"anfang/{site}/gate-1/"
    async with running(gate, broker, site, clock):
        msgs = await observer.wait(lambda m: any(t == base + "twin/reported" for t, _, _ in m))
        assert (base + "status", b"online", False) in msgs
        first = docs(msgs, base + "twin/reported")[0]
        assert first["state"]["barrier"] == "down" and first["state"]["cameras"] == {"cam-1": {"online": True}}
        observer.publish(base + "cmd/open", {"id": "c1", "args": {"seconds": 3, "subject": "p0001"}, "timeout": 5})
        observer.publish(base + "cmd/warp", {"id": "c2", "args": {}})
        msgs = await observer.wait(
            lambda m: (
                sum(t == base + "twin/reported" for t, _, _ in m) >= 5
                and any(t == base + "cmd/warp/result" for t, _, _ in m)
            )
        )
        assert docs(msgs, base + "cmd/open/result")[0]["ok"] is True
        assert docs(msgs, base + "cmd/warp/result")[0] == {
            "id": "c2",
            "ok": False,
            "result": {},
            "error": "unknown command 'warp'",
        }
        states = [d["state"].get("barrier") for d in docs(msgs, base + "twin/reported")]
        assert states[1:5] == ["moving", "up", "moving", "down"]
        seqs = [d["seq"] for d in docs(msgs, base + "twin/reported")]
        assert seqs == sorted(set(seqs))
    msgs = await observer.wait(lambda m: m[-1][:2] == (base + "status", b"offline"))


async def test_edge_door_decides_offline_with_the_simulated_clock(
    broker: Mosquitto, site: str, observer: Observer
) -> None:
    start = 1_800_000_000.0
    skew = [0.0]
    clock = SimClock(start, speed=100, monotonic=lambda: time.monotonic() + skew[0])
    key = bytes(range(32))
    door = DoorLock("door-1", seq_start=int(time.time() * 1000), boot_ts=start, edge_key=key)
    base = f"anfang/{site}/door-1/"
    sealer = DoorSealer(key)
    allow = {
        "version": 2,
        "seal": "anfang-edge-v1",
        "key_id": sealer.key_id,
        "entries": [
            {
                "subject": "p7",
                "kind": "card",
                "credential": sealer.mac("card", "C7"),
                "valid_from": None,
                "valid_until": start + 300,
            }
        ],
    }
    observer.publish(
        base + "twin/desired",
        {"version": 1, "desired": {"access_mode": "edge", "allow_list": allow}, "ts": start},
        retain=True,
    )
    async with running(door, broker, site, clock) as dc:
        await observer.wait(
            lambda m: any(
                t == base + "twin/reported" and b"allow_list_version" in p and b'"edge"' in p for t, p, _ in m
            )
        )
        dc.stimulate("events/card_presented", {"card": "C7"})
        await observer.wait(lambda m: any(t == base + "events/access_decided" for t, _, _ in m))
        dc.cut_network()
        await observer.wait(lambda m: m[-1][:2] == (base + "status", b"offline"))
        skew[0] += 4.0  # 400 simulated seconds pass while the door is offline: the card has expired
        dc.stimulate("events/card_presented", {"card": "C7"})
        assert len(dc.outbox) >= 2
        dc.restore_network()
        msgs = await observer.wait(lambda m: len(docs(m, base + "events/access_decided")) >= 2)
    decided = [d["data"] for d in docs(msgs, base + "events/access_decided")]
    assert decided[0]["allowed"] is True
    assert decided[1] == {"allowed": False, "subject": "p7", "credential_kind": "card", "reason": "expired"}
    statuses = [p for t, p, _ in msgs if t == base + "status"]
    assert statuses[-2:] == [b"offline", b"online"]


async def test_offline_outbox_is_bounded_and_drops_the_oldest(broker: Mosquitto, site: str, observer: Observer) -> None:
    clock = SimClock(time.time(), speed=1)
    door = DoorLock("door-2", seq_start=int(time.time() * 1000), boot_ts=clock.now())
    base = f"anfang/{site}/door-2/"
    async with running(door, broker, site, clock, outbox_limit=3) as dc:
        dc.cut_network()
        await observer.wait(lambda m: (base + "status", b"offline", False) in m)
        for i in range(5):
            dc.stimulate("events/door_held_open", {"seconds": float(i)})
        assert dc.dropped == 2
        dc.restore_network()
        msgs = await observer.wait(lambda m: len(docs(m, base + "events/door_held_open")) >= 3)
    assert [d["data"]["seconds"] for d in docs(msgs, base + "events/door_held_open")] == [2.0, 3.0, 4.0]


async def test_reboot_drops_the_connection_and_comes_back(broker: Mosquitto, site: str, observer: Observer) -> None:
    clock = SimClock(time.time(), speed=20)
    door = DoorLock("door-3", seq_start=int(time.time() * 1000), boot_ts=clock.now())
    base = f"anfang/{site}/door-3/"
    async with running(door, broker, site, clock) as dc:
        observer.publish(base + "cmd/reboot", {"id": "r1", "args": {}})
        msgs = await observer.wait(
            lambda m: (
                [p for t, p, _ in m if t == base + "status"][-2:] == [b"offline", b"online"] and dc.connections == 2
            )
        )
        assert docs(msgs, base + "cmd/reboot/result")[0]["ok"] is True


async def test_seq_keeps_increasing_across_restarts(broker: Mosquitto, site: str, observer: Observer) -> None:
    base = f"anfang/{site}/door-4/"
    for run in range(2):
        clock = SimClock(time.time())
        door = DoorLock("door-4", seq_start=int(time.time() * 1000), boot_ts=clock.now())
        want = run + 1

        def reported(m: list[Msg], want: int = want) -> bool:
            return len(docs(m, base + "twin/reported")) >= want

        async with running(door, broker, site, clock):
            await observer.wait(reported)
    seqs = [d["seq"] for d in docs(observer.msgs, base + "twin/reported")]
    assert len(seqs) == 2 and seqs[1] > seqs[0]
