"""The state of the richer triggers survives a SIGKILL of ``anfang run`` (a real process: embedded
broker, SQLite) — issue 17 items 3 and 5:

- a ``sequence`` whose first step came before the kill completes with its second step after it, once;
- a ``distinct`` count keeps the sniffer that saw the phone before the kill: a second one after it fires;
- an ``expect`` armed before the kill fires its else-actions at its deadline after the restart, once,
  and an expected input after the restart cancels it: nothing fires.

Each kill comes as soon as the input before it is acknowledged (stored): the state it changed reaches
the registry only at the next tick, and the catch-up at start feeds the stored events after the
engine's input mark again (rules/catch_up.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from restart_kit import Site, alarm, event, notified

pytestmark = pytest.mark.slow

EXPECT_S = 10.0
MAC, MARKER_MAC = "3c:22:fb:01:02:03", "00:00:00:00:00:00"
RULES = f"""
rules:
  - id: forced-then-held
    description: a door forced, then held open
    when:
      sequence:
        steps: [{{event: {{type: door_forced}}}}, {{event: {{type: door_held_open}}}}]
        for_each: device.id
        within: 10m
    then: [{{raise_alarm: {{kind: forced_held, severity: high, subject: "{{{{ trigger.key }}}}", message: fh}}}}]
  - id: phone-moving
    description: one phone seen by two different sniffers within ten minutes
    when:
      - event: {{type: mac_seen, group_by: "lower(event.data.mac)", count: 2, distinct: event.device, within: 10m}}
    then: [{{raise_alarm: {{kind: phone_moving, severity: low, subject: "{{{{ trigger.key }}}}", message: moving}}}}]
  - id: plate-not-out
    description: a vehicle came in and did not go out
    when:
      expect:
        after: {{event: {{type: plate_captured, where: "event.data.direction == 'in'"}}}}
        event: {{event: {{type: plate_captured, where: "event.data.direction == 'out'"}}}}
        for_each: event.data.plate
        within: {EXPECT_S:g}s
    then: [{{raise_alarm: {{kind: overstay, severity: low, subject: "{{{{ trigger.key }}}}", message: overstay}}}}]
  - id: marker
    description: a marker input of a device, to know the device's inputs before it were evaluated
    when:
      - event: {{type: [motion, door_opened]}}
      - event: {{type: mac_seen, where: "event.data.mac == '{MARKER_MAC}'"}}
    then: [{{publish: {{topic: "anfang/youzheng/notify/guards", payload: {{text: "{{{{ device.id }}}}"}}}}}}]
"""
DEVICES = {"door-1": "door_lock", "sniffer-1": "mac_sniffer", "sniffer-2": "mac_sniffer", "cam-1": "camera"}


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    s = Site(tmp_path, RULES, DEVICES)
    try:
        yield s
    finally:
        s.close()


def alarms(site: Site, rule_id: str) -> int:
    return int(site.rows(f"SELECT COUNT(*) FROM alarms WHERE rule_id = '{rule_id}'")[0][0])


async def test_a_sequence_begun_before_a_sigkill_completes_after_it_once(site: Site) -> None:
    op, door, *_ = await site.start()
    await door.published(door.publish("events/door_forced", event({})))
    site.kill()
    op, door, *_ = await site.start()
    await door.published(door.publish("events/door_held_open", event({"seconds": 5.0})))
    found = await alarm(op, "forced-then-held", 15)
    assert found["subject"] == "door-1"
    # the completed sequence is gone: the second step alone does not fire it again, after another restart too
    await site.until("SELECT key FROM rule_timers WHERE key LIKE 'memo|seq|%'", lambda r: not r)
    site.kill()
    op, door, *_ = await site.start()
    await door.published(door.publish("events/door_held_open", event({"seconds": 9.0})))
    await door.published(door.publish("events/door_opened", event({"by": "remote"})))
    await notified(op, "door-1")  # one device's events are evaluated in order
    assert alarms(site, "forced-then-held") == 1


async def test_a_distinct_count_keeps_the_sniffer_seen_before_a_sigkill(site: Site) -> None:
    op, _door, sniffer1, sniffer2, _cam = await site.start()
    await sniffer1.published(sniffer1.publish("events/mac_seen", event({"mac": MAC, "rssi": -60.0})))
    site.kill()
    op, _door, sniffer1, sniffer2, _cam = await site.start()
    await sniffer2.published(sniffer2.publish("events/mac_seen", event({"mac": MAC, "rssi": -70.0})))
    found = await alarm(op, "phone-moving", 15)
    assert found["subject"] == MAC
    # the window was emptied when it fired: a sniffer again is one sniffer, not a second alarm
    await sniffer2.published(sniffer2.publish("events/mac_seen", event({"mac": MAC, "rssi": -60.0})))
    await sniffer2.published(sniffer2.publish("events/mac_seen", event({"mac": MARKER_MAC, "rssi": -60.0})))
    await notified(op, "sniffer-2")
    assert alarms(site, "phone-moving") == 1


async def test_an_expectation_armed_before_a_sigkill_fires_at_its_deadline_after_it_once(site: Site) -> None:
    op, *_, cam = await site.start()
    await cam.published(cam.publish("events/plate_captured", event({"plate": "沪A12345", "direction": "in"})))
    site.kill()
    op, *_, cam = await site.start()
    # read from the registry, not the alarm topic: a start slower than EXPECT_S (a busy machine) fires the
    # overdue expectation at once, before this test's operator has subscribed
    raised = "SELECT subject FROM alarms WHERE rule_id = 'plate-not-out'"
    await site.until(raised, lambda r: len(r) > 0, timeout=EXPECT_S + 30)
    assert site.rows(raised) == [("沪A12345",)]
    await site.until("SELECT key FROM rule_timers WHERE key LIKE 'expect|%'", lambda r: not r)
    site.kill()
    op, *_, cam = await site.start()
    await cam.published(cam.publish("events/motion", event({})))
    await notified(op, "cam-1")
    assert alarms(site, "plate-not-out") == 1


async def test_an_expectation_armed_before_a_sigkill_is_cancelled_by_the_event_after_it(site: Site) -> None:
    op, *_, cam = await site.start()
    armed = time.time()
    await cam.published(cam.publish("events/plate_captured", event({"plate": "沪B54321", "direction": "in"})))
    site.kill()
    op, *_, cam = await site.start()
    await cam.published(cam.publish("events/plate_captured", event({"plate": "沪B54321", "direction": "out"})))
    await site.until("SELECT key FROM rule_timers WHERE key LIKE 'expect|%'", lambda r: not r)
    # past the deadline (and a tick), no alarm came: the cancelled expectation is gone for good
    await site.until("SELECT 1", lambda _r: time.time() > armed + EXPECT_S + 2, timeout=EXPECT_S + 15)
    await cam.published(cam.publish("events/motion", event({})))
    await notified(op, "cam-1")
    assert alarms(site, "plate-not-out") == 0
