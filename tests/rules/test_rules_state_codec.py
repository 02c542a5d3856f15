"""Properties of persisted rule state (:mod:`rules.state_store`): every piece of state a trigger keeps —
count windows, distinct counts, sequences, threshold sides, zone membership and its dwell, cooldowns —
comes back equal after its way through the registry (JSON text, as ``rule_timers.body`` holds it), a
changed rule's state is not restored, a mirror writes only what changed, and state no later input can use
is forgotten without changing what any later input sees."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.loader import Rule, load_rules
from rules.patterns import DistinctWindow, SeqState, seq_advance
from rules.site import SitePlan
from rules.state_store import (
    StateMirror,
    decode_count,
    decode_distinct,
    decode_seq,
    encode_count,
    encode_distinct,
    encode_seq,
    expire,
)
from rules.timerqueue import TimerQueue
from rules.timers import InMemoryTimerStore, Timer
from rules.triggers.state import CountWindow, TriggerState

SITE = SitePlan.from_mapping({"site": "s", "devices": [{"id": "door-1", "kind": "door_lock", "position": [0, 0]}]})
RULES = """
rules:
  - id: denials
    when: [{event: {type: access_decided, count: 3, within: 2m}}]
    cooldown: 10m
    then: [{raise_alarm: {kind: denials, severity: low}}]
  - id: phones
    when: [{event: {type: mac_seen, group_by: "event.data.mac", count: 2, distinct: event.device, within: 5m}}]
    then: [{raise_alarm: {kind: phone, severity: low}}]
  - id: denied-then-open
    when:
      sequence:
        steps:
          - {event: {type: access_decided}, times: 2}
          - {twin: {kind: door_lock, field: door, to: open}}
        for_each: device.id
        within: 2m
    then: [{raise_alarm: {kind: tailgate, severity: low}}]
"""

Parts = dict[str, dict[Any, Any]]

times = st.floats(0, 2e9, allow_nan=False)
keys = st.text(min_size=1, max_size=12)  # any, "|" too
zone_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1, max_size=8)  # the site model's ids


def _rules(path: Path) -> dict[str, Rule]:
    path.write_text(RULES, encoding="utf-8")
    loaded = load_rules(path, SITE)
    assert not loaded.diagnostics
    return {r.id: r for r in loaded.rules}


def _through_json(value: object) -> object:
    return json.loads(json.dumps(value))


@given(st.lists(times, max_size=5))
def test_a_count_window_round_trips(ts: list[float]) -> None:
    win = CountWindow(deque(sorted(ts), maxlen=5))
    back = decode_count(_through_json(encode_count(win)), 5)
    assert back == win and back.times.maxlen == 5


@given(st.dictionaries(keys, times, max_size=8))
def test_a_distinct_window_round_trips(last: dict[str, float]) -> None:
    win = DistinctWindow(dict(last))
    assert decode_distinct(_through_json(encode_distinct(win))) == win


@given(st.integers(0, 20), st.integers(0, 50), times)
def test_a_sequence_state_round_trips(step: int, seen: int, started: float) -> None:
    seq = SeqState(step, seen, started)
    assert decode_seq(_through_json(encode_seq(seq))) == seq


def _reload(store: InMemoryTimerStore, rules: dict[str, Rule]) -> tuple[TriggerState, dict[tuple[str, str], float]]:
    """A new engine's view of the store after the registry round trip (JSON text, as in ``rule_timers``)."""
    stored = InMemoryTimerStore()
    for key, timer in store.timers.items():
        stored.timers[key] = Timer.from_json(json.loads(json.dumps(timer.to_json())))
    queue = TimerQueue(stored)
    queue.load({r.id: r.hash for r in rules.values()})
    state, fired = TriggerState(), dict[tuple[str, str], float]()
    StateMirror(queue).restore(state, fired, rules)
    return state, fired


state_parts = st.fixed_dictionaries(
    {
        "counts": st.dictionaries(keys, st.lists(times, min_size=1, max_size=3), max_size=3),
        "distinct": st.dictionaries(keys, st.dictionaries(keys, times, min_size=1, max_size=3), max_size=3),
        "seq": st.dictionaries(keys, st.tuples(st.integers(0, 1), st.integers(0, 1), times), max_size=3),
        "sides": st.dictionaries(keys, st.booleans(), max_size=3),
        "zones": st.dictionaries(st.tuples(keys, zone_ids), st.booleans(), max_size=3),
        "dwell": st.dictionaries(st.tuples(keys, zone_ids), times, max_size=3),
        "cool": st.dictionaries(keys, st.floats(0, 599), max_size=3),
    }
)


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rule]:
    return _rules(tmp_path_factory.mktemp("rules") / "r.yaml")


@settings(max_examples=60, deadline=None)
@given(parts=state_parts)
def test_every_piece_of_rule_state_survives_the_registry(rules: dict[str, Rule], parts: Parts) -> None:
    state, fired = _state(parts)
    StateMirror(TimerQueue(store := InMemoryTimerStore())).save(state, fired, rules, now=1000.0)
    assert all(t.kind == "memo" and t.state == "memo" for t in store.timers.values())
    state2, fired2 = _reload(store, rules)
    assert state2 == state and fired2 == fired
    assert all(w.times.maxlen == 3 for w in state2.counts.values())


def test_the_state_of_a_changed_rule_is_not_restored(rules: dict[str, Rule]) -> None:
    state, fired = _state(_sample())
    StateMirror(TimerQueue(store := InMemoryTimerStore())).save(state, fired, rules, now=1000.0)
    changed = dict(rules)
    for rid in ("phones", "denied-then-open"):
        changed[rid] = dataclasses.replace(rules[rid], hash="edited")
    state2, fired2 = _reload(store, changed)
    assert not state2.distinct and not state2.sequences  # started afresh
    assert state2.counts == state.counts and fired2 == fired  # the unchanged rule keeps its state


class CountingStore(InMemoryTimerStore):
    """Counts the writes a mirror makes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def save(self, timer: Timer) -> None:
        self.writes.append(timer.key)
        super().save(timer)

    def delete(self, key: str) -> None:
        self.writes.append(f"-{key}")
        super().delete(key)


def test_a_mirror_writes_only_what_changed(rules: dict[str, Rule]) -> None:
    state, fired = _state(_sample())
    mirror = StateMirror(TimerQueue(store := CountingStore()))
    mirror.save(state, fired, rules, now=1000.0)
    assert len(store.writes) == len(store.timers) == 7
    store.writes.clear()
    mirror.save(state, fired, rules, now=1000.0)
    assert store.writes == []
    state.distinct[("phones", 0, "aa")].add("sniffer-2", 1001.0, 300.0)  # changed in place
    state.sequences.pop(("denied-then-open", 0, "door-1"))  # completed
    mirror.save(state, fired, rules, now=1000.0)
    assert store.writes == ["memo|distinct|phones|0|aa", "-memo|seq|denied-then-open|0|door-1"]


def test_unreadable_state_is_dropped_not_fatal(rules: dict[str, Rule]) -> None:
    queue = TimerQueue(InMemoryTimerStore())
    bad = Timer("memo|seq|denied-then-open|0|door-1", "denied-then-open", rules["denied-then-open"].hash, "memo", 0.0)
    bad.state, bad.context = "memo", {"value": "not a sequence"}
    queue.put(bad)
    state = TriggerState()
    assert StateMirror(queue).restore(state, {}, rules) == 0
    assert not state.sequences and bad.key not in queue


def _sample() -> Parts:
    return {
        "counts": {"door-1": [10.0, 20.0]},
        "distinct": {"aa": {"sniffer-1": 990.0}},
        "seq": {"door-1": (1, 0, 995.0)},
        "sides": {"door-1": True},
        "zones": {("tag-1", "kg"): True},
        "dwell": {("tag-1", "kg"): 998.0},
        "cool": {"door-1": 30.0},
    }


def _state(parts: Parts) -> tuple[TriggerState, dict[tuple[str, str], float]]:
    state = TriggerState()
    for k, ts in parts["counts"].items():
        state.counts[("denials", 0, k)] = CountWindow(deque(sorted(ts), maxlen=3))
    for k, last in parts["distinct"].items():
        state.distinct[("phones", 0, k)] = DistinctWindow(dict(last))
    for k, (step, seen, started) in parts["seq"].items():
        state.sequences[("denied-then-open", 0, k)] = SeqState(step, seen, started)
    for k, side in parts["sides"].items():
        state.threshold[("denials", 0, k)] = side
    state.membership.update(parts["zones"])
    state.zones.pending.update(parts["dwell"])
    fired = {("denials", k): 1000.0 - ago for k, ago in parts["cool"].items()}
    return state, fired


@settings(max_examples=200, deadline=None)
@given(
    past=st.lists(st.tuples(st.floats(0, 1000), keys), max_size=12),
    future=st.lists(st.tuples(st.floats(0, 1000), keys, st.integers(0, 1)), max_size=12),
    skew=st.floats(0, 300),
)
def test_expiring_state_changes_nothing_any_later_input_sees(
    rules: dict[str, Rule], past: list[tuple[float, str]], future: list[tuple[float, str, int]], skew: float
) -> None:
    """Count and distinct windows and sequences answer every input at or after ``now - skew`` alike,
    expired or not (``denials``: 3 within 2 min, ``phones``: within 5 min, the sequence: within 2 min)."""
    now = 1000.0
    state = TriggerState()
    for ts, value in past:
        win = state.counts.setdefault(("denials", 0, "k"), CountWindow(deque(maxlen=3)))
        win.add(ts, 120.0)
        state.distinct.setdefault(("phones", 0, "k"), DistinctWindow()).add(value, ts, 300.0)
        state.sequences[("denied-then-open", 0, value)] = SeqState(0, 1, ts)
    kept = copy.deepcopy(state)
    expire(state, {}, rules, now, skew)
    for later, value, step in future:
        ts = now - skew + later  # no input comes with an event time before now - skew
        answers = []
        for s in (state, kept):
            win = s.counts.setdefault(("denials", 0, "k"), CountWindow(deque(maxlen=3)))
            dwin = s.distinct.setdefault(("phones", 0, "k"), DistinctWindow())
            seq = s.sequences.get(("denied-then-open", 0, value))
            answers.append((win.add(ts, 120.0), dwin.add(value, ts, 300.0), seq_advance(seq, step, (2, 1), ts, 120.0)))
        assert answers[0] == answers[1]


def test_cooldowns_that_ran_out_are_forgotten(rules: dict[str, Rule]) -> None:
    fired = {("denials", "a"): 500.0, ("denials", "b"): 300.0, ("phones", "c"): 990.0, ("gone", "d"): 999.0}
    assert expire(TriggerState(), fired, rules, now=1000.0, skew=0.0) == 3
    assert fired == {("denials", "a"): 500.0}  # 10 min cooldown, 500 s ago: still running
