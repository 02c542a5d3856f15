"""Device security, the same cases on both brokers (issue 20, "one security test module").

Every case takes the ``secure`` fixture: the platform in this event loop on the embedded amqtt broker
or on a private Mosquitto running the configuration ``anfang broker mosquitto-config`` writes (whose
files the platform keeps: ``broker.mosquitto_dir``). Devices are real clients (paho-mqtt, and the
``mosquitto_pub``/``mosquitto_sub`` tools). To add a case: a test taking ``secure`` (and, for a case
of one broker only, a ``pytest.mark.skipif`` on ``secure.broker``).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from platform_kit import Stack, running_platform
from testkit import Device

from anfang.lifecycle import DeviceLifecycle, lifecycle_for

NOT_AUTHORISED = (5, 135)  # CONNACK "not authorised" as MQTT 3.1.1 and as paho's MQTT 5 reason code
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"


@pytest.fixture(params=["amqtt", "mosquitto"])
async def secure(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_platform(tmp_path, str(request.param), generated=True) as stack:
        yield stack


def lifecycle(stack: Stack) -> DeviceLifecycle:
    """What ``anfang devices`` and the HTTP API use; on amqtt through the broker adapter, as ``anfang run`` does."""
    return lifecycle_for(stack.settings, stack.platform.registry, lambda: stack.embedded, stack.platform.forget)


async def connected_door(stack: Stack, device_id: str, **kwargs: Any) -> tuple[Device, str]:
    secret = await stack.add_device(device_id, "door_lock")
    door = await stack.device(device_id, secret, **kwargs)
    await door.subscribe(door.topic("twin/desired"))
    return door, secret


async def gets_desired(stack: Stack, door: Device, value: int) -> None:
    await stack.platform.set_desired(door.username, {"hold_seconds": value})
    async with asyncio.timeout(30):
        while True:
            _, doc = await door.expect(r"/twin/desired$", timeout=30)
            if doc["desired"].get("hold_seconds") == value:
                return


async def cut_off(door: Device) -> None:
    """The broker closed the door's connection, and the door's own reconnect is refused."""
    await asyncio.wait_for(door.disconnected.wait(), 10)
    async with asyncio.timeout(30):
        while (code := await door.connacks.get()) == 0:
            pass  # a CONNACK from before the cut
    assert code in NOT_AUTHORISED


async def test_client_id_theft_gives_the_thief_nothing(secure: Stack) -> None:
    victim, _ = await connected_door(secure, "door-v", clean=False)
    thief_secret = await secure.add_device("door-t", "door_lock")
    # the thief's own valid credentials with the victim's (public) client id and a session to resume
    thief = Device(secure.host, secure.port, "door-t", thief_secret, site=secure.site, client_id="door-v", clean=False)
    code = await thief.connect()
    if code == 0:  # Mosquitto: use_username_as_clientid makes it connect as door-t, not as the victim
        await thief.subscribe("anfang/youzheng/door-v/twin/desired")
    else:
        assert code in NOT_AUTHORISED
    try:
        await gets_desired(secure, victim, 7)
        assert victim.client.is_connected() and not victim.disconnected.is_set()
        assert not any("door-v" in topic for topic in thief.seen)
    finally:
        thief.close()


async def test_the_platform_client_id_is_the_platforms(secure: Stack) -> None:
    door, _ = await connected_door(secure, "door-p")
    other = await secure.add_device("door-q", "door_lock")
    impostor = Device(secure.host, secure.port, "door-q", other, client_id="anfang-platform", will=False)
    code = await impostor.connect()
    try:
        # refused on amqtt; on Mosquitto's device listener it connects, but as door-q
        assert code in NOT_AUTHORISED or secure.broker == "mosquitto"
        # the platform keeps its connection and serves: a report is applied
        await door.published(door.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 3}}))
        await secure.platform.wait_until(lambda p: (d := p.cached_twin("door-p")) is not None and d.last_seq == 1, 30)
        assert secure.platform.link.connected and secure.platform.link.resubscribed == 0
        assert not door.disconnected.is_set()
    finally:
        impostor.close()


async def test_a_disabled_device_is_cut_off_at_once_until_enabled(secure: Stack) -> None:
    door, secret = await connected_door(secure, "door-d")
    await lifecycle(secure).disable("door-d")
    await cut_off(door)
    await lifecycle(secure).enable("door-d")
    again = await secure.device("door-d", secret)
    await again.subscribe(again.topic("twin/desired"))
    await gets_desired(secure, again, 9)


async def test_another_process_cuts_off_by_taking_over_the_client_id(secure: Stack) -> None:
    """What ``anfang devices disable`` does from its own process: no broker adapter at hand."""
    door, _ = await connected_door(secure, "door-c")
    await lifecycle_for(secure.settings, secure.platform.registry).disable("door-c")
    await cut_off(door)
    assert secure.platform.link.connected and secure.platform.link.resubscribed == 0


async def test_a_rotated_secret_cuts_the_old_connection(secure: Stack) -> None:
    door, old = await connected_door(secure, "door-r")
    new, problem = await lifecycle(secure).rotate("door-r")
    assert problem is None
    await cut_off(door)
    stale = Device(secure.host, secure.port, "door-r", old, site=secure.site, will=False)
    assert await stale.connect() in NOT_AUTHORISED
    stale.close()
    fresh = await secure.device("door-r", new)
    await fresh.subscribe(fresh.topic("twin/desired"))
    await gets_desired(secure, fresh, 4)


async def test_a_deleted_device_is_cut_off_and_forgotten(secure: Stack) -> None:
    door, _ = await connected_door(secure, "door-x")
    await gets_desired(secure, door, 5)
    await lifecycle(secure).delete("door-x")
    await cut_off(door)
    assert await secure.platform.registry.get_device("door-x") is None
    assert await secure.platform.store.load("door-x") is None
    # nothing retained for it is left on the broker: an operator reading its topics gets nothing
    user, password = secure.operator_credentials
    argv = [MOSQUITTO_SUB, "-h", secure.host, "-p", str(secure.service_port), "-u", user, "-P", password, "-i", "op-x"]
    argv += ["-t", "anfang/youzheng/door-x/twin/desired", "-C", "1", "-W", "2", "--retained-only"]
    read = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=20)
    assert read.stdout == ""


async def test_seq_reset_path(secure: Stack) -> None:
    door, _ = await connected_door(secure, "door-s")
    await door.subscribe(door.topic("errors"))
    await door.published(door.publish("twin/reported", {"seq": 1000, "state": {"hold_seconds": 1}}))
    await door.published(door.publish("twin/reported", {"seq": 3, "state": {"hold_seconds": 2}}))
    _, error = await door.expect(r"/errors$", timeout=30)
    assert error["code"] == 409 and "seq_reset" in error["message"]
    await door.published(door.publish("twin/reported", {"seq": 3, "seq_reset": True, "state": {"hold_seconds": 2}}))
    await secure.platform.wait_until(lambda p: (d := p.cached_twin("door-s")) is not None and d.last_seq == 3, 30)


async def test_a_flooding_device_gets_throttled_error_answers(secure: Stack) -> None:
    flood, _ = await connected_door(secure, "door-f")
    await flood.subscribe(flood.topic("errors"))
    sent = 1000
    infos = [flood.publish("twin/reported", b"{not json") for _ in range(sent)]
    for info in infos:
        await flood.published(info, timeout=120)
    await secure.platform.wait_until(lambda p: sum(p.counters.rejected.values()) >= sent, 120)
    # every bad message is rejected and counted; the device hears of the first ones, then a few a second
    assert secure.platform.counters.errors_throttled > 0
    assert sum(1 for topic in flood.seen if topic.endswith("/errors")) < sent
    other, _ = await connected_door(secure, "door-g")  # and other devices are served as before
    await gets_desired(secure, other, 6)
