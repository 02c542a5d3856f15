"""Pure parts of event time and persisted rule state: the skew bound, zone membership with a band and a
dwell, ``for`` timers re-derived from stored twins, and rule state mirrored into the timer store."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from rules.derive import derive_for_timers
from rules.event_time import EventClock, elapsed_event_time
from rules.loader import Rule, load_rules
from rules.site import SitePlan
from rules.state_store import StateMirror
from rules.timerqueue import TimerQueue
from rules.timers import InMemoryTimerStore
from rules.triggers.state import CountWindow, TriggerState
from rules.zones import ZoneMembership

SITE = SitePlan.from_mapping(
    {
        "site": "s",
        "zones": [{"id": "kg", "kind": "kindergarten", "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]],
                   "margin": 5, "dwell": 30}],
        "devices": [{"id": "door-1", "kind": "door_lock", "position": [0, 0]}],
    }
)  # fmt: skip


def test_event_time_within_the_bound_else_the_platforms_counted() -> None:
    clock = EventClock(300.0)
    assert clock.time_of(1000.0, 1200.0) == 1000.0 and clock.rejected == 0
    assert clock.time_of(1000.0, 5000.0) == 5000.0 and clock.rejected == 1
    assert clock.time_of(None, 7.0) == 7.0
    assert elapsed_event_time(100.0, 5000.0, 5010.0) == 110.0


def test_zone_membership_needs_the_margin_the_dwell_and_two_readers() -> None:
    kg, zones = SITE.zones["kg"], ZoneMembership()
    assert zones.observe("t", kg, 5, 5, 0.0) == (None, True)
    assert zones.observe("t", kg, 13, 5, 10.0) == (True, True)  # 3 m out: in the band
    assert zones.observe("t", kg, 30, 5, 20.0, readers=1) == (True, True)  # a lone reading
    assert zones.observe("t", kg, 30, 5, 30.0) == (True, True)  # far out, the dwell starts
    assert zones.observe("t", kg, 5, 5, 40.0) == (True, True)  # back inside: the dwell ends
    assert zones.observe("t", kg, 30, 5, 50.0) == (True, True)
    assert zones.observe("t", kg, 31, 5, 80.0) == (True, False)  # 30 s out: gone


RULES = """
rules:
  - id: held
    when: [{twin: {kind: door_lock, field: door, to: open}}]
    for: 60s
    then: [{raise_alarm: {kind: held, severity: low}}]
  - id: denials
    when: [{event: {type: access_decided, count: 3, within: 2m}}]
    cooldown: 10m
    then: [{raise_alarm: {kind: denials, severity: low}}]
"""


def _rules(tmp_path: Path) -> list[Rule]:
    path = tmp_path / "r.yaml"
    path.write_text(RULES, encoding="utf-8")
    loaded = load_rules(path, SITE)
    assert not loaded.diagnostics
    return loaded.rules


def test_a_for_timer_is_derived_from_a_stored_twin_once(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    timers = TimerQueue(InMemoryTimerStore())
    twins, stamps = {"door-1": {"door": "open"}}, {"door-1": {"door": 1000.0}}
    assert derive_for_timers(rules, twins, stamps, timers, 1000.3, {"door-1": "door_lock"}) == ["for|held|door-1"]
    assert timers.next_due() == 1060.0
    assert derive_for_timers(rules, twins, stamps, timers, 1000.3) == []  # pending (or done): not again
    assert derive_for_timers(rules, {"door-1": {"door": "closed"}}, stamps, TimerQueue(InMemoryTimerStore()), 0) == []


def test_rule_state_mirrors_into_the_timer_store_and_back(tmp_path: Path) -> None:
    rules = {r.id: r for r in _rules(tmp_path)}
    store = InMemoryTimerStore()
    state, fired = TriggerState(), {("denials", "door-1"): 500.0}
    state.counts[("denials", 0, "door-1")] = CountWindow(deque([400.0, 450.0], maxlen=3))
    state.membership[("tag-1", "kg")] = False
    state.threshold[("denials", 0, "door-1")] = True
    StateMirror(TimerQueue(store)).save(state, fired, rules, now=520.0)
    assert all(t.state == "memo" for t in store.timers.values()) and len(store.timers) == 4

    after = TimerQueue(store)
    after.load({r.id: r.hash for r in rules.values()})
    state2, fired2 = TriggerState(), dict[tuple[str, str], float]()
    assert StateMirror(after).restore(state2, fired2, rules) == 4
    assert list(state2.counts[("denials", 0, "door-1")].times) == [400.0, 450.0]
    assert state2.counts[("denials", 0, "door-1")].times.maxlen == 3
    assert state2.membership == {("tag-1", "kg"): False} and fired2 == fired
    assert state2.threshold == {("denials", 0, "door-1"): True}
    assert after.next_due() is None  # memos are never due
