"""Momentary desired state: a field set with a time-to-live is gone after it, across a platform restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from platform_kit import make_settings, running_platform
from testkit import free_port

DOOR = "door-b3-u1"
DESIRED = f"anfang/youzheng/{DOOR}/twin/desired"


@pytest.mark.timeout(300)
async def test_unlock_with_ttl_is_not_desired_after_a_platform_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded=False, port=free_port())
    async with running_platform(tmp_path, "mosquitto", settings=settings) as stack:
        await stack.add_device(DOOR, "door_lock")
        await stack.platform.set_desired(DOOR, {"lock": "locked", "hold_seconds": 5})
        op = await stack.operator()
        await op.subscribe(f"anfang/youzheng/{DOOR}/twin/update/+", DESIRED)
        op.publish(
            f"anfang/youzheng/{DOOR}/twin/update",
            {"desired": {"lock": "unlocked"}, "ttl": 3, "client_token": "u1"},
            raw_topic=True,
        )
        _, accepted = await op.expect(r"/twin/update/accepted$")
        assert accepted["desired"]["lock"] == "unlocked"
        _, desired = await op.expect(r"/twin/desired$")
        while desired["desired"].get("lock") != "unlocked":  # the retained lasting document came first
            _, desired = await op.expect(r"/twin/desired$")
        expires = desired["expires"]["lock"]
        assert desired["desired"] == {"lock": "unlocked", "hold_seconds": 5}
    # the platform is down when the unlock lapses (the time-to-live itself is what we wait for)
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.5)
    async with running_platform(tmp_path, "mosquitto", settings=settings) as stack:
        op = await stack.operator()
        await op.subscribe(DESIRED)
        _, desired = await op.expect(r"/twin/desired$", timeout=60)
        while "lock" in desired["desired"]:
            _, desired = await op.expect(r"/twin/desired$", timeout=60)
        assert desired["desired"] == {"hold_seconds": 5} and "expires" not in desired
        doc = await stack.platform.twin(DOOR)
        assert doc.desired == {"hold_seconds": 5} and doc.next_expiry is None


@pytest.mark.timeout(120)
async def test_a_momentary_field_lapses_while_the_platform_runs(tmp_path: Path) -> None:
    async with running_platform(tmp_path, "mosquitto") as stack:
        await stack.add_device(DOOR, "door_lock")
        op = await stack.operator()
        await op.subscribe(DESIRED)
        op.publish(f"anfang/youzheng/{DOOR}/twin/update", {"desired": {"lock": "unlocked"}, "ttl": 1}, raw_topic=True)
        _, desired = await op.expect(r"/twin/desired$")
        assert desired["desired"] == {"lock": "unlocked"} and "lock" in desired["expires"]
        _, desired = await op.expect(r"/twin/desired$", timeout=30)
        assert desired["desired"] == {} and "expires" not in desired
