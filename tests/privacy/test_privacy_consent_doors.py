"""Issue 15 must-show: withdrawing face consent removes the person's templates from the store and from the
door's allow-list — the retained ``twin/desired`` read from a real Mosquitto, as the door gets it — within
2 seconds, while the person's card still opens the door.

The platform runs access control with an edge door (the simulated firmware, given its door key, decides
from its sealed list); the withdrawal goes through :func:`privacy.erasure.withdraw_face_consent`, what
``DELETE /me/face-consent``, ``DELETE /people/{id}/face-consent`` and ``anfang community people
withdraw-consent`` call. The change feed (``community_changes``) carries it to the handler, which reseals
and republishes the door's list.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from community_testkit import KEY, community_data, noisy, template
from platform_kit import Stack, running_platform

from anfang.app import Services
from anfang.config import Settings
from community.crypto import FieldCipher
from community.edge import issue_door_key
from community.handler import AccessConfig, AccessHandler
from community.importer import import_community
from community.models import CredentialRow
from community.records import AccessRecords
from community.store import CommunityStore
from firmware_sim.clock import SimClock
from firmware_sim.device import DeviceClient
from firmware_sim.firmware import DoorLock
from privacy.erasure import withdraw_face_consent
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_connection
from registry.store import Registry
from twins.hooks import DeviceEvent

DOOR = "door-b1-u1"
WITHIN_S = 2.0


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


async def _next_decision(decided: asyncio.Queue[DeviceEvent], kind: str) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            data = (await decided.get()).data
            if data["device"] == DOOR and data["credential_kind"] == kind:
                return dict(data)


def _faces(allow: dict[str, Any]) -> set[str]:
    return {e["subject"] for e in allow["entries"] if e["kind"] == "face"}


async def test_withdrawn_consent_leaves_store_and_door_list_within_2s_and_the_card_still_opens(tmp_path: Path) -> None:
    decided: asyncio.Queue[DeviceEvent] = asyncio.Queue()
    async with _platform(tmp_path, decided) as (stack, handler):
        await import_community(community_data(), handler.store, now=time.time())
        secret = await stack.add_device(DOOR, "door_lock")
        key = base64.b64decode(issue_door_key(handler.store.cipher.edge_root, stack.site, DOOR))
        door = DoorLock(DOOR, seq_start=int(time.time() * 1000), boot_ts=time.time(), edge_key=key)
        door.reported["access_mode"] = "edge"
        reader = await stack.operator()
        await reader.subscribe(f"anfang/{stack.site}/{DOOR}/twin/desired")
        reports = await stack.operator()
        await reports.subscribe(f"anfang/{stack.site}/{DOOR}/twin/reported")
        dc = DeviceClient(door, site=stack.site, host=stack.host, port=stack.port, password=secret,
                          clock=SimClock(time.time()))  # fmt: skip
        async with asyncio.TaskGroup() as tg:
            runner = tg.create_task(handler.run())
            device = tg.create_task(dc.run())
            await asyncio.wait_for(dc.connected.wait(), 10)

            async def retained_list(want: Any) -> dict[str, Any]:
                while True:
                    _, doc = await reader.expect(r"/twin/desired$")
                    allow = doc["desired"].get("allow_list")
                    if allow is not None and want(allow):
                        return dict(allow)

            async def door_holds(version: int) -> None:
                """Until the door reports that it applied the list ``version``."""
                while True:
                    _, doc = await reports.expect(r"/twin/reported$")
                    if isinstance(doc, dict) and doc.get("state", {}).get("allow_list_version") == version:
                        return

            async with asyncio.timeout(15):
                before = await retained_list(lambda a: "p-owner" in _faces(a))
                await door_holds(before["version"])
            face = {"liveness": 0.97, "embedding": noisy(template(1), 5)}
            dc.stimulate("events/face_captured", face)
            assert (await _next_decision(decided, "face"))["allowed"] is True, "the owner's face opens before"

            t0 = time.monotonic()
            await withdraw_face_consent(handler.store, "p-owner", now=time.time())
            assert not await CredentialRow.filter(person_id="p-owner", kind="face").exists(), "store: gone at once"
            async with asyncio.timeout(WITHIN_S):
                after = await retained_list(lambda a: "p-owner" not in _faces(a))
            took = time.monotonic() - t0
            print(f"consent withdrawn -> door list without the face: {took:.3f} s")
            assert after["version"] > before["version"]
            assert _faces(after) == _faces(before) - {"p-owner"}
            assert any(e["subject"] == "p-owner" and e["kind"] == "card" for e in after["entries"])
            async with asyncio.timeout(10):
                await door_holds(after["version"])

            dc.stimulate("events/card_presented", {"card": "C0001"})
            got = await _next_decision(decided, "card")
            assert (got["allowed"], got["subject"]) == (True, "p-owner"), "the card still opens the door"
            dc.stimulate("events/face_captured", face)
            assert (await _next_decision(decided, "face"))["allowed"] is False, "the face no longer does"
            dc.stop()
            device.cancel()
            runner.cancel()
