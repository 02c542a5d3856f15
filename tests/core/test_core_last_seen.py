"""Per-device last-seen times (issue 20 item 1): any message a device sends, noted in memory, written in batches."""

from __future__ import annotations

import time
from collections.abc import Mapping

import pytest
from platform_kit import Stack

from anfang.ingest import Inbound
from anfang.last_seen import LastSeen, heard_from
from twins.topics import parse


def _inbound(topic: str, payload: bytes = b"{}") -> Inbound:
    return Inbound(topic, parse(topic), payload)


def test_heard_from_counts_what_devices_send_only() -> None:
    batch = [
        _inbound("anfang/youzheng/door-1/twin/reported"),
        _inbound("anfang/youzheng/door-2/status", b"online"),
        _inbound("anfang/youzheng/door-3/status", b"offline"),  # the broker publishing a will
        _inbound("anfang/youzheng/door-4/twin/update"),  # an operator naming a device
        _inbound("anfang/youzheng/door-5/telemetry"),
        _inbound("not/a/device/topic"),
    ]
    assert list(heard_from(batch)) == ["door-1", "door-2", "door-5"]


async def test_a_failed_write_keeps_the_times_for_the_next() -> None:
    written: list[dict[str, float]] = []
    fail = [True]

    async def write(times: Mapping[str, float]) -> None:
        if fail[0]:
            raise OSError("database gone")
        written.append(dict(times))

    seen = LastSeen(write)
    seen.saw("door-1", 1.0)
    with pytest.raises(OSError):
        await seen.flush()
    seen.saw("door-2", 2.0)
    fail[0] = False
    await seen.flush()
    await seen.flush()  # nothing new: nothing written
    assert written == [{"door-1": 1.0, "door-2": 2.0}]


async def test_any_traffic_updates_last_seen(platform_stack: Stack) -> None:
    stack = platform_stack
    secret = await stack.add_device("door-ls", "door_lock")
    quiet = await stack.add_device("door-quiet", "door_lock")
    assert quiet and (await stack.platform.registry.get_device("door-ls")).last_seen is None  # type: ignore[union-attr]
    before = time.time()
    door = await stack.device("door-ls", secret)
    await door.published(door.publish("telemetry", {"ts": before, "metrics": {"battery": 80}}))
    await door.published(door.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 2}}))
    await stack.platform.wait_until(lambda p: (d := p.cached_twin("door-ls")) is not None and d.last_seq == 1, 30)
    operator = await stack.operator()
    await operator.subscribe("anfang/youzheng/door-quiet/#")
    operator.publish("anfang/youzheng/door-quiet/twin/get", {"client_token": "x"}, raw_topic=True)
    await operator.expect(r"door-quiet/twin/(document|update/rejected)$", timeout=30)  # the request was handled
    assert stack.platform.last_seen is not None
    await stack.platform.last_seen.flush()
    info = await stack.platform.registry.get_device("door-ls")
    assert info is not None and info.last_seen is not None and info.last_seen >= before - 1
    quiet_info = await stack.platform.registry.get_device("door-quiet")
    assert quiet_info is not None and quiet_info.last_seen is None
