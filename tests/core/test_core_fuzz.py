"""Thousands of malformed, oversized, wrongly-typed payloads and wrong topics: all rejected, service up."""

from __future__ import annotations

import json
import random

from platform_kit import Stack

from anfang.service import Platform


def _bad_messages(rng: random.Random, n: int) -> list[tuple[str, bytes]]:
    """(topic suffix, payload) pairs the platform must reject, each for a reason a sender could fix."""
    makers = [
        lambda: ("twin/reported", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60)))),
        lambda: ("twin/reported", b'{"seq": 1, "state": ' + b"[" * rng.randrange(1, 50)),
        lambda: ("twin/reported", json.dumps({"seq": rng.choice(["1", -1, 1.5, True]), "state": {}}).encode()),
        lambda: (
            "twin/reported",
            json.dumps({"state": {"lock": rng.choice([1, True, "open", None, []])}, "seq": 0}).encode()
            if rng.random() < 0.5
            else json.dumps({"state": {"barrier": "up"}}).encode(),
        ),
        lambda: ("twin/reported", json.dumps({"state": {"hold_seconds": rng.choice(["5", 0, 10_000, 1.5])}}).encode()),
        lambda: ("twin/reported", json.dumps(rng.choice([[], 1, "x", None])).encode()),
        lambda: ("twin/reported", json.dumps({"state": {"lock": "locked"}, "extra": 1}).encode()),
        lambda: ("twin/reported", b'{"state": {"x": "' + b"a" * (300 * 1024) + b'"}}'),
        lambda: (
            f"events/{rng.choice(['plate_captured', 'tag_seen', 'nope', 'door_forced'])}",
            json.dumps({"id": rng.choice([None, 5, "", "x" * 100]), "data": {}}).encode(),
        ),
        lambda: ("events/face_captured", json.dumps({"id": f"f{rng.random()}", "data": {"liveness": "high"}}).encode()),
        lambda: ("events/Bad Type", b'{"id": "a", "data": {}}'),
        lambda: ("events/a/b/c", b'{"id": "a", "data": {}}'),
        lambda: ("telemetry", json.dumps({"metrics": {"battery": "full"}}).encode()),
        lambda: ("status", b"maybe"),
        lambda: ("cmd/open/result", json.dumps({"ok": "yes"}).encode()),
    ]
    return [rng.choice(makers)() for _ in range(n)]


async def test_fuzzed_payloads_are_all_rejected_and_counted(platform_stack: Stack) -> None:
    n = 1500 if platform_stack.broker == "mosquitto" else 800
    secret = await platform_stack.add_device("door-b1-u1", "door_lock")
    dev = await platform_stack.device("door-b1-u1", secret)
    # the first report sets seq 1 so that "seq": 0 reports are stale
    await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"lock": "locked"}}))
    infos = []
    for suffix, payload in _bad_messages(random.Random(7), n):
        qos = 0 if suffix == "telemetry" else 1
        info = dev.publish(suffix, payload, qos=qos)
        if qos:
            infos.append(info)
    for info in infos:
        await dev.published(info, timeout=60)
    await dev.published(dev.publish("twin/reported", {"seq": 2, "state": {"lock": "unlocked"}}))
    counters = platform_stack.platform.counters

    def unlocked(platform: Platform) -> bool:
        doc = platform.cached_twin("door-b1-u1")
        return doc is not None and doc.reported.get("lock") == "unlocked"

    await platform_stack.platform.wait_until(unlocked, timeout=60)
    # QoS 0 telemetry may be dropped by a broker under load; everything that arrived was rejected
    assert sum(counters.rejected.values()) >= len(infos)
    assert counters.accepted == 2
    assert set(counters.rejected) <= {400, 404, 409, 413, 422}
    doc = await platform_stack.platform.twin("door-b1-u1")
    assert doc.reported == {"lock": "unlocked"} and doc.version == 2
