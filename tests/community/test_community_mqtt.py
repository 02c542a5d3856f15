"""End to end through a real Mosquitto: devices publish captures, the platform feeds AccessHandler."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from community_testkit import KEY, community_data, noisy, template
from platform_kit import running_platform

from anfang.app import Services
from anfang.config import Settings
from community.crypto import FieldCipher
from community.handler import AccessConfig, AccessHandler
from community.importer import import_community
from community.models import AccessDecisionRow
from community.records import AccessRecords
from community.store import CommunityStore
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_connection
from registry.store import Registry
from twins.hooks import DeviceEvent


def _event(data: dict[str, Any]) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "ts": time.time(), "data": data}


async def test_captures_over_mosquitto_open_gate_and_door_and_raise_alarm(tmp_path: Path) -> None:
    decided: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    handlers: list[AccessHandler] = []

    async def sink(ev: DeviceEvent) -> None:
        if ev.type == "access_decided":
            decided.put_nowait(ev)

    @contextlib.asynccontextmanager
    async def factory(settings: Settings, registry: Registry) -> AsyncIterator[Services]:
        store = CommunityStore(FieldCipher(KEY), settings.site)
        alarms = AlarmManager(settings.site, DatabaseAlarmStore(open_connection(settings.db_url), settings.site))
        handlers.append(
            AccessHandler(
                store,
                AccessRecords(settings.site),
                AccessConfig(site=settings.site),
                on_platform_event=sink,
                alarms=alarms,
            )
        )
        yield Services(handlers=list(handlers), features=["twins", "access"])

    async with running_platform(tmp_path, "mosquitto", factory) as stack:
        handler = handlers[0]
        await import_community(community_data(), handler.store, now=time.time())
        await handler.store.watch.add_watch(
            kind="plate", plate="京A99999", reason="stolen vehicle", added_by="p-police", now=time.time()
        )
        gate = await stack.device("gate-north", await stack.add_device("gate-north", "vehicle_gate"))
        door = await stack.device("door-b2-u1", await stack.add_device("door-b2-u1", "door_lock"))
        police = await stack.operator()
        await police.subscribe(f"anfang/{stack.site}/alarms/#")
        for dev in (gate, door):
            await dev.subscribe(dev.topic("cmd/#"))
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(handler.run())
            await gate.published(
                gate.publish(
                    "events/plate_captured",
                    _event({"camera": "cam-north-1", "direction": "in", "plate": "京A99999", "confidence": 0.9}),
                )
            )
            await gate.published(
                gate.publish(
                    "events/plate_captured",
                    _event({"camera": "cam-north-1", "direction": "in", "plate": "赣G12345", "confidence": 0.95}),
                )
            )
            _, cmd = await gate.expect(r"/cmd/open$")
            assert cmd["args"]["subject"] == "p-owner" and cmd["args"]["seconds"] == 5
            gate.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {}, "error": None})
            topic, alarm = await police.expect(r"/alarms/")
            assert alarm["data"]["list_reason"] == "stolen vehicle" and alarm["evidence"]["device"] == "gate-north"
            # The face of building 2's owner opens building 2's door; a spoof does not.
            await door.published(
                door.publish("events/face_captured", _event({"liveness": 0.3, "embedding": template(2)}))
            )
            await door.published(
                door.publish("events/face_captured", _event({"liveness": 0.97, "embedding": noisy(template(2), 8)}))
            )
            _, cmd = await door.expect(r"/cmd/open$")
            assert cmd["args"]["subject"] == "p-b2"
            door.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {}, "error": None})
            outcomes: list[tuple[str, bool, str]] = []
            async with asyncio.timeout(15):
                while len(outcomes) < 4:
                    ev = await decided.get()
                    outcomes.append((ev.data["device"], ev.data["allowed"], ev.data["reason"]))
            runner.cancel()
        assert sorted(outcomes) == [
            ("door-b2-u1", False, "liveness_below_threshold"),
            ("door-b2-u1", True, "granted"),
            ("gate-north", False, "unknown_vehicle"),
            ("gate-north", True, "granted"),
        ]
        rows = await AccessDecisionRow.filter(allowed=True).order_by("device_id")
        assert [(r.device_id, r.command_ok) for r in rows] == [("door-b2-u1", True), ("gate-north", True)]
        assert topic.startswith(f"anfang/{stack.site}/alarms/")
