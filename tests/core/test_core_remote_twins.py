"""The leader's desired-state writes to twins another worker owns: the owner's answer, success or refusal,
comes back over MQTT 5 and reaches the leader's rule or service as the same error a local write raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from platform_kit import SITE, running_platform

from anfang.accounts import PLATFORM_USER, read_or_create_secret
from anfang.mqtt_link import MqttLink
from anfang.partitions import reply_topic
from anfang.remote_twins import RemoteTwins
from twins.errors import NotFound, SchemaError, VersionConflict


async def test_the_owner_answers_the_leaders_desired_writes_and_refusals_keep_their_reason(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "mosquitto") as stack:  # the owner of gate-1's partition
        await stack.add_device("gate-1", "vehicle_gate")
        replies = reply_topic(SITE, "leader-under-test")
        link = MqttLink(
            host=stack.host,
            port=stack.port,
            client_id="leader-under-test",
            username=PLATFORM_USER,
            password=read_or_create_secret(stack.settings.secrets_dir, PLATFORM_USER),
            mqtt5=True,
        )
        remote = RemoteTwins(link, replies, timeout=10)

        async def on_message(topic: str, payload: bytes, retained: bool, reply_to: Any) -> None:
            remote.on_reply(payload)

        await link.start([replies], on_message)
        try:
            version = await remote.set_desired(SITE, "gate-1", {"barrier": "up", "open_seconds": 8})
            with pytest.raises(SchemaError, match="open_seconds"):
                await remote.set_desired(SITE, "gate-1", {"open_seconds": 9999})
            with pytest.raises(VersionConflict, match=f"current is {version}"):
                await remote.set_desired(SITE, "gate-1", {"barrier": "down"}, expected_version=version - 1)
            with pytest.raises(NotFound, match="unknown device"):
                await remote.set_desired(SITE, "gate-9", {"barrier": "up"})
            accepted = await remote.set_desired(SITE, "gate-1", {"barrier": "down"}, expected_version=version)
            assert accepted == version + 1
        finally:
            await link.stop()
        stored = await stack.platform.store.load("gate-1")
        assert stored is not None
        # what was refused changed nothing: two accepted writes, in order
        assert stored.version == version + 1 and stored.desired == {"barrier": "down", "open_seconds": 8}
