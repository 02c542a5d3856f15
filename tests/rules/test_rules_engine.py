"""RulesEngine behaviour: indexing, faulty rules, persisted timers, reload, alarms, schedules."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from rules.engine import RulesEngine
from rules.loader import Rule, load_rule_docs
from rules.recording import RecordingActions
from rules.site import SitePlan, load_site_plan
from rules.trace import Firing
from rules.yamlmarks import load_marked
from twins.hooks import DeviceEvent, TwinChange

SITE_FILE = Path(__file__).parents[2] / "rules" / "builtin" / "tests" / "site.yaml"
T0 = datetime.fromisoformat("2026-11-02T10:00:00+08:00").timestamp()


@pytest.fixture(scope="module")
def site() -> SitePlan:
    return load_site_plan(SITE_FILE)


def rules_from(text: str, site: SitePlan | None) -> list[Rule]:
    result = load_rule_docs(load_marked(text, "t.yaml"), "t.yaml", site)
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    return result.rules


def event(device: str, kind: str, etype: str, data: dict[str, Any], ts: float, eid: str = "") -> DeviceEvent:
    return DeviceEvent("testsite", device, kind, etype, eid or f"{etype}-{ts}", ts, data)


def twin(device: str, prev: dict[str, Any], patch: dict[str, Any], ts: float) -> TwinChange:
    return TwinChange("testsite", device, "door_lock", 1, ts, {**prev, **patch}, prev, {}, patch)


FORCED = """
rules:
  - id: forced
    when: [{event: {type: door_forced, kind: door_lock}}]
    then: [{raise_alarm: {kind: door_forced, severity: critical, message: "{{ device.name }} forced"}}]
"""

HELD = """
rules:
  - id: held
    when: [{twin: {kind: door_lock, field: door, to: open}}]
    for: 3m
    then: [{raise_alarm: {kind: held, subject: "{{ device.id }}"}}]
"""


async def test_alarm_lifecycle_is_published_deduplicated_acked_and_cleared(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(FORCED, site), site, actions=acts, new_alarm_id=lambda: "a1")
    await engine.on_event(event("door-b1-u1", "door_lock", "door_forced", {}, T0), acts)
    acts.clock += 5
    await engine.on_event(event("door-b1-u1", "door_lock", "door_forced", {}, T0 + 5), acts)
    alarms = await engine.alarms.store.list()
    assert len(alarms) == 1 and alarms[0].count == 2 and alarms[0].message == "1栋1单元门禁 forced"
    assert [(t, r) for t, _, r in acts.published] == [("anfang/testsite/alarms/a1", True)]
    acts.clock += 10
    acked = await engine.acknowledge("a1", "guard-li")
    assert (acked.state, acked.acked_by, acked.acked_at) == ("acknowledged", "guard-li", T0 + 15)
    cleared = await engine.clear_alarm("a1", "guard-li")
    assert cleared.state == "cleared"
    _topic, doc, retain = acts.published[-2]
    assert isinstance(doc, dict) and doc["state"] == "cleared" and retain is False
    assert acts.published[-1] == ("anfang/testsite/alarms/a1", "", True)


async def test_reload_keeps_pending_timers_of_unchanged_rules(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(HELD, site), site, actions=acts)
    await engine.on_twin_change(twin("door-b1-u1", {"door": "closed"}, {"door": "open"}, T0), acts)
    report = engine.reload(rules_from(HELD + FORCED.replace("rules:\n", ""), site), now=T0 + 10)
    assert report.kept == ["held"] and report.added == ["forced"]
    await engine.tick(T0 + 181, acts)
    assert await engine.alarms.store.find_active("held", "door-b1-u1") is not None


async def test_reload_drops_pending_timers_of_changed_rules(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(HELD, site), site, actions=acts)
    await engine.on_twin_change(twin("door-b1-u1", {"door": "closed"}, {"door": "open"}, T0), acts)
    report = engine.reload(rules_from(HELD.replace("kind: held", "kind: held_v2"), site), now=T0 + 10)
    assert report.changed == ["held"]
    await engine.tick(T0 + 400, acts)
    assert await engine.alarms.store.list() == []


async def test_reload_from_path_picks_up_an_edited_file(tmp_path: Path, site: SitePlan) -> None:
    path = tmp_path / "rules"
    path.mkdir()
    (path / "a.yaml").write_text(FORCED)
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(FORCED, site), site, actions=acts, rules_path=path)
    assert engine.reload_from_path(T0) is None  # first look only records file times
    (path / "a.yaml").write_text(FORCED + HELD.replace("rules:\n", ""))
    import os

    os.utime(path / "a.yaml", (T0 + 5, T0 + 5))
    report = engine.reload_from_path(T0 + 5)
    assert report is not None and report.added == ["held"] and report.kept == ["forced"]


async def test_a_faulty_rule_is_counted_and_the_others_keep_working(site: SitePlan) -> None:
    text = (
        FORCED
        + """
  - id: broken-at-runtime
    when: [{event: {type: door_forced}}]
    then: [{audit: {message: "{{ int(event.kind) }}"}}]
"""
    )
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(text, site), site, actions=acts)
    await engine.on_event(event("door-b1-u1", "door_lock", "door_forced", {}, T0), acts)
    assert "broken-at-runtime" in engine.faults
    assert any(t.outcome == "error" and t.rule_id == "broken-at-runtime" for t in engine.trace)
    await engine.on_event(event("door-b1-u2", "door_lock", "door_forced", {}, T0 + 1), acts)
    assert await engine.alarms.store.find_active("forced", "door-b1-u2") is not None


async def test_tag_sightings_update_the_virtual_twin_with_a_position(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine([], site, actions=acts)
    await engine.on_event(event("rfid-center", "rfid_reader", "tag_seen", {"tag": "tag-e001", "rssi": -60}, T0), acts)
    assert acts.virtual == [
        ("tag-e001", {"last_seen": T0, "reader": "rfid-center", "rssi": -60.0, "position": {"x": 130.0, "y": 90.0}})
    ]


async def test_schedule_at_time_of_day_fires_daily_in_site_time(site: SitePlan) -> None:
    text = """
rules:
  - id: morning-report
    when: [{schedule: {at: "08:00"}}]
    if: "time.is_weekday"
    then: [{publish: {topic: "anfang/{{ site.id }}/reports/morning", payload: {day: "{{ time.weekday }}"}}}]
"""
    fired: list[Firing] = []
    acts = RecordingActions(clock=T0)  # Monday 10:00 +08:00
    engine = RulesEngine(rules_from(text, site), site, actions=acts, observer=fired.append)
    engine.start(T0)
    for _ in range(7):
        due = engine.next_due()
        assert due is not None
        acts.clock = due
        await engine.tick(due, acts)
    days = [p[1]["day"] for p in acts.published if isinstance(p[1], dict)]
    assert days == ["tue", "wed", "thu", "fri", "mon"]  # Sat and Sun are filtered by `if`
    assert all(datetime.fromtimestamp(f.ts, site.tz).hour == 8 for f in fired)


async def test_cooldown_suppresses_repeat_firings(site: SitePlan) -> None:
    text = FORCED.replace("    then:", "    cooldown: 2m\n    then:").replace(
        'raise_alarm: {kind: door_forced, severity: critical, message: "{{ device.name }} forced"}',
        "audit: {message: forced}",
    )
    fired: list[Firing] = []
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(text, site), site, actions=acts, observer=fired.append)
    for dt in (0, 30, 60, 130):
        acts.clock = T0 + dt
        await engine.on_event(event("door-b1-u1", "door_lock", "door_forced", {}, T0 + dt), acts)
    assert [f.ts - T0 for f in fired] == [0, 130]
    assert [t.outcome for t in engine.explain("forced")] == ["fired", "cooldown", "cooldown", "fired"]


async def test_index_keeps_candidates_flat_with_many_unrelated_rules(site: SitePlan) -> None:
    many = "rules:\n" + "".join(
        f"  - id: r{i}\n    when: [{{event: {{type: door_opened, device: door-x{i}}}}}]\n"
        f"    then: [{{audit: {{message: m}}}}]\n"
        for i in range(500)
    )
    engine = RulesEngine(rules_from(many, None), site)  # devices not on the plan: skip the device check
    assert engine.candidates("door_opened", "door-b1-u1", "door_lock") == []
    assert engine.candidates("door_opened", "door-x7", "door_lock") == ["r7"]


async def test_run_loop_fires_due_timers_on_the_wall_clock(site: SitePlan) -> None:
    text = HELD.replace("for: 3m", "for: 0.2s")
    done = asyncio.Event()
    acts = RecordingActions(clock=time.time())
    engine = RulesEngine(rules_from(text, site), site, actions=acts, observer=lambda f: done.set())

    class WallClock(RecordingActions):
        def now(self) -> float:
            return time.time()

    wall = WallClock()
    await engine.on_twin_change(twin("door-b1-u1", {"door": "closed"}, {"door": "open"}, time.time()), wall)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(engine.run(wall, interval=0.05))
        await asyncio.wait_for(done.wait(), timeout=5)
        task.cancel()
    assert wall.published and wall.published[0][0].startswith("anfang/testsite/alarms/")


async def test_builtin_rules_run_against_the_pilot_community() -> None:
    from firmware_sim.community import load_community
    from rules.loader import load_rules

    root = Path(__file__).parents[2]
    community = load_community(root / "firmware_sim" / "communities" / "youzheng.yaml")
    plan = SitePlan.from_community(community)
    result = load_rules(root / "rules" / "builtin", plan)
    assert not result.diagnostics and len(result.rules) == 11
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(result.rules, plan, actions=acts)
    engine.start(T0)
    elderly = [p.id for p in plan.people.values() if p.role == "elderly_alone" or (p.tag or "").startswith("tag-e")]
    watched = sum(len(clock) for clock in engine.timers.clocks())
    physical = [d for d in plan.devices.values() if d.kind not in {"platform", "rfid_tag"}]
    assert watched == len(physical) + len(set(elderly))
    door = next(d.id for d in plan.devices.values() if d.kind == "door_lock")
    await engine.on_event(event(door, "door_lock", "door_forced", {}, T0), acts)
    assert await engine.alarms.store.find_active("door-forced", door) is not None


async def test_platform_events_do_not_count_as_a_silent_device(site: SitePlan) -> None:
    rules = rules_from(
        "rules:\n  - id: quiet\n    when: [{silence: {per: device, for: 5m}}]\n    then: [{audit: {message: quiet}}]\n",
        site,
    )
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules, site, actions=acts)
    data = {"device": "gate-north", "subject": "w1", "list_reason": "x", "snapshot_ref": "s", "camera": None}
    await engine.on_event(event("access-control", "platform", "watchlist_match", data, T0), acts)
    subjects = {subject for clock in engine.timers.clocks() for subject in clock}
    assert "access-control" not in subjects and "door-b1-u1" in subjects


async def test_trace_is_a_bounded_ring_buffer(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(rules_from(FORCED, site), site, actions=acts, trace_size=5)
    for i in range(20):
        await engine.on_event(event("door-b1-u1", "door_lock", "door_forced", {}, T0 + i, f"e{i}"), acts)
    assert len(engine.trace) == 5
    assert engine.explain("forced")[-1].input.startswith("event door_forced e19")
