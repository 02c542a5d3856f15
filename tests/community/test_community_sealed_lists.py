"""Issue 16 item 3: a door's allow-list, as retained on a real broker, gives nothing away.

The platform seals each edge door's list to that door's key; the test reads the retained
``twin/desired`` from Mosquitto as any client of the broker could, brute-forces every 6-digit PIN
(and every 4-digit one) against its credentials, looks for any float vector in it, and compares the
same PIN at two doors. Then the simulated door firmware, given its key, opens for a valid PIN and face.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from community_testkit import KEY, community_data, noisy, template
from platform_kit import Stack, running_platform

from anfang.app import Services
from anfang.config import Settings
from community.crypto import FieldCipher
from community.edge import issue_door_key
from community.handler import AccessConfig, AccessHandler
from community.importer import import_community
from community.records import AccessRecords
from community.store import CommunityStore
from firmware_sim.clock import SimClock
from firmware_sim.device import DeviceClient
from firmware_sim.firmware import DoorLock, Firmware, VehicleGate
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_connection
from registry.store import Registry
from twins.hooks import DeviceEvent

DOORS = ("door-b1-u1", "gate-north")


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, dict):
        for k, v in doc.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)


def _blobs(doc: Any) -> Iterator[bytes]:
    """Every string of the document, and every base64 or hex payload inside one (after any ``x:`` prefix)."""
    for s in _strings(doc):
        yield s.encode()
        body = s.split(":", 1)[-1]
        for decode in (lambda t: base64.b64decode(t, validate=True), bytes.fromhex):
            with contextlib.suppress(binascii.Error, ValueError):
                yield decode(body)


def _template_like_windows(blob: bytes, enrolled: np.ndarray) -> list[tuple[str, int, float]]:
    """Any 128-value float16/float32 window of ``blob`` that is (nearly) a unit vector or resembles an
    enrolled template."""
    found = []
    for dtype, width in (("<f2", 256), ("<f4", 512)):
        for off in range(0, len(blob) - width + 1):
            v = np.frombuffer(blob[off : off + width], dtype=dtype).astype(np.float64)
            if not np.all(np.isfinite(v)):
                continue
            n = float(np.linalg.norm(v))
            best = float(np.max(np.abs(enrolled @ (v / n)))) if n > 0 else 0.0
            if 0.9 < n < 1.1 or best > 0.5:
                found.append((dtype, off, best))
    return found


@contextlib.asynccontextmanager
async def _platform(tmp_path: Path, decided: asyncio.Queue[DeviceEvent]) -> AsyncIterator[tuple[Stack, AccessHandler]]:
    handlers: list[AccessHandler] = []

    async def sink(ev: DeviceEvent) -> None:
        if ev.type == "access_decided":
            decided.put_nowait(ev)

    @contextlib.asynccontextmanager
    async def factory(settings: Settings, registry: Registry) -> AsyncIterator[Services]:
        alarms = AlarmManager(settings.site, DatabaseAlarmStore(open_connection(settings.db_url), settings.site))
        handler = AccessHandler(
            CommunityStore(FieldCipher(KEY), settings.site),
            AccessRecords(settings.site),
            AccessConfig(site=settings.site),
            on_platform_event=sink,
            alarms=alarms,
        )
        handlers.append(handler)
        yield Services(handlers=[handler], features=["twins", "access"])

    async with running_platform(tmp_path, "mosquitto", factory) as stack:
        yield stack, handlers[0]


@contextlib.asynccontextmanager
async def _edge_device(stack: Stack, fw: Firmware, secret: str) -> AsyncIterator[DeviceClient]:
    fw.reported["access_mode"] = "edge"  # configured on the door itself: it asks for its list at once
    dc = DeviceClient(
        fw, site=stack.site, host=stack.host, port=stack.port, password=secret, clock=SimClock(time.time())
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(dc.run())
        await asyncio.wait_for(dc.connected.wait(), 10)
        try:
            yield dc
        finally:
            dc.stop()
            task.cancel()


async def _retained_list(stack: Stack, device: str) -> dict[str, Any]:
    """The desired document of ``device`` as a client of the broker reads it, once it holds a list."""
    reader = await stack.operator()
    await reader.subscribe(f"anfang/{stack.site}/{device}/twin/desired")
    async with asyncio.timeout(15):
        while True:
            _, doc = await reader.expect(r"/twin/desired$")
            if "allow_list" in doc["desired"]:
                allow: dict[str, Any] = doc["desired"]["allow_list"]
                return allow


async def _next_decision(decided: asyncio.Queue[DeviceEvent], device: str, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            data = (await decided.get()).data
            if data["device"] == device and data["credential_kind"] == kind:
                return dict(data)


async def test_retained_allow_list_reveals_nothing_and_the_door_still_opens(tmp_path: Path) -> None:
    decided: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    async with _platform(tmp_path, decided) as (stack, handler):
        report = await import_community(community_data(), handler.store, now=time.time())
        pin = report.pins["p-noface"]
        secrets = {
            d: await stack.add_device(d, kind) for d, kind in zip(DOORS, ("door_lock", "vehicle_gate"), strict=True)
        }
        # Provisioning shows each door its key once; the firmware keeps it.
        keys = {d: base64.b64decode(issue_door_key(handler.store.cipher.edge_root, stack.site, d)) for d in DOORS}
        door = DoorLock(DOORS[0], seq_start=int(time.time() * 1000), boot_ts=time.time(), edge_key=keys[DOORS[0]])
        gate = VehicleGate(DOORS[1], seq_start=int(time.time() * 1000), boot_ts=time.time(), edge_key=keys[DOORS[1]])
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(handler.run())
            async with (
                _edge_device(stack, door, secrets[DOORS[0]]) as door_dc,
                _edge_device(stack, gate, secrets[DOORS[1]]),
            ):
                lists = {d: await _retained_list(stack, d) for d in DOORS}

                # 1. No PIN by brute force: every 6- and 4-digit PIN, hashed the way the old lists did.
                macs = {e["credential"] for al in lists.values() for e in al["entries"] if e["kind"] in ("pin", "card")}
                assert macs and all(m.startswith("hmac:") for m in macs)
                digests = {m.removeprefix("hmac:") for m in macs}
                for width in (6, 4):
                    for n in range(10**width):
                        guess = f"{n:0{width}d}"
                        for form in (f"pin:{guess}", guess):
                            assert hashlib.sha256(form.encode()).hexdigest() not in digests, "PIN recovered"
                raw = json.dumps(lists, ensure_ascii=False)
                assert pin not in raw and "C0001" not in raw and "赣G12345" not in raw

                # 2. No float vector readable as a face template anywhere in the documents.
                enrolled = np.asarray([template(i) for i in range(1, 5)])
                found = [w for blob in _blobs(lists) for w in _template_like_windows(blob, enrolled)]
                assert found == [], f"template-like vectors in the retained list: {found[:3]}"
                assert sum(e["kind"] == "face" for e in lists[DOORS[0]]["entries"]) == 2  # owner, tenant

                # 3. The same PIN at two doors gives two different credentials.
                def pin_of(device: str) -> str:
                    return next(
                        e["credential"]
                        for e in lists[device]["entries"]
                        if e["subject"] == "p-noface" and e["kind"] == "pin"
                    )

                assert pin_of(DOORS[0]) != pin_of(DOORS[1])
                assert lists[DOORS[0]]["key_id"] != lists[DOORS[1]]["key_id"]

                # 4. The simulated door opens for a valid PIN and a live face with its sealed list ...
                door_dc.stimulate("events/pin_entered", {"pin": pin})
                assert (await _next_decision(decided, DOORS[0], "pin"))["allowed"] is True
                face = {"liveness": 0.97, "embedding": noisy(template(1), 5)}
                door_dc.stimulate("events/face_captured", face)
                got = await _next_decision(decided, DOORS[0], "face")
                assert (got["allowed"], got["subject"]) == (True, "p-owner")
                # ... and the gate's list, copied onto the door, opens nothing there.
                door.desired["allow_list"] = lists[DOORS[1]]
                door_dc.stimulate("events/pin_entered", {"pin": pin})
                got = await _next_decision(decided, DOORS[0], "pin")
                assert (got["allowed"], got["reason"]) == (False, "sealed_for_another_door")

                # 5. Five wrong PINs lock PIN entry at the door, which reports it: one alarm, over MQTT.
                door.desired["allow_list"] = lists[DOORS[0]]
                watcher = await stack.operator()
                await watcher.subscribe(f"anfang/{stack.site}/alarms/#")
                for i in range(5):
                    door_dc.stimulate("events/pin_entered", {"pin": f"{(int(pin) + 1 + i) % 10**6:06d}"})
                _, alarm = await watcher.expect(r"/alarms/")
                assert (alarm["kind"], alarm["subject"]) == ("access_lockout", DOORS[0])
                door_dc.stimulate("events/pin_entered", {"pin": pin})
                got = await _next_decision(decided, DOORS[0], "pin")
                while got["reason"] == "unknown_pin":  # the five refusals, in whatever order they were handled
                    got = await _next_decision(decided, DOORS[0], "pin")
                assert (got["allowed"], got["reason"]) == (False, "locked_out")
            runner.cancel()
