"""Identity binding on the embedded broker: a device connects only under its own id, the platform's client
ids are the platform's, and a refused CONNECT touches no one else's session or connection."""

from __future__ import annotations

from pathlib import Path

from platform_kit import Stack, running_platform
from testkit import Device

from broker.acl import Identity, Role, client_id_refusal

NOT_AUTHORISED = 135  # paho reports CONNACK 5 "not authorised" as reason code 135


def test_client_id_rules() -> None:
    door = Identity("door-1", Role.DEVICE, "youzheng")
    assert client_id_refusal(door, "door-1") is None
    assert client_id_refusal(door, "door-2") is not None
    assert client_id_refusal(door, "anfang-platform") is not None
    operator = Identity("anfang-operator", Role.OPERATOR)
    assert client_id_refusal(operator, "op-1") is None
    assert client_id_refusal(operator, "anfang-platform-p1") is not None
    assert client_id_refusal(Identity("anfang-platform", Role.PLATFORM), "anfang-platform-p1") is None


async def _victim_gets_desired(stack: Stack, victim: Device) -> None:
    await stack.platform.set_desired(victim.username, {"hold_seconds": 7})
    _, desired = await victim.expect(r"/twin/desired$", timeout=30)
    assert desired["desired"]["hold_seconds"] == 7


async def test_session_theft_and_kicking_are_refused(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "amqtt") as stack:
        victim_secret = await stack.add_device("door-v", "door_lock")
        thief_secret = await stack.add_device("door-t", "door_lock")
        victim = await stack.device("door-v", victim_secret, clean=False)
        await victim.subscribe(victim.topic("twin/desired"))
        # own valid credentials, the victim's (public) client id, a persistent session to resume
        thief = Device(stack.host, stack.port, "door-t", thief_secret, site=stack.site, client_id="door-v", clean=False)
        assert await thief.connect() == NOT_AUTHORISED
        thief.close()
        # no credentials at all, the victim's client id and a clean session (amqtt deleted the victim's session)
        stranger = Device(stack.host, stack.port, "door-v", "wrong", client_id="door-v", will=False)
        assert await stranger.connect() == NOT_AUTHORISED
        stranger.close()
        assert victim.client.is_connected()
        await _victim_gets_desired(stack, victim)
        assert thief.messages.empty()


async def test_platform_client_id_is_the_platform_accounts(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "amqtt") as stack:
        user, password = stack.operator_credentials
        impostor = Device(stack.host, stack.port, user, password, client_id="anfang-platform", will=False)
        assert await impostor.connect() == NOT_AUTHORISED
        impostor.close()
        secret = await stack.add_device("door-p", "door_lock")
        door = Device(stack.host, stack.port, "door-p", secret, client_id="anfang-platform", will=False)
        assert await door.connect() == NOT_AUTHORISED
        door.close()
        assert stack.platform.link.connected and stack.platform.link.resubscribed == 0
        # the platform still serves: a device's report is applied
        dev = await stack.device("door-p", secret)
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 3}}))
        await stack.platform.wait_until(
            lambda p: (doc := p.cached_twin("door-p")) is not None and doc.last_seq == 1, 30
        )
