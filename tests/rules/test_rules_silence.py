"""Silence without a timer per watched device: the pure clock (properties) and the engine around it.

A silence trigger keeps when each subject was last heard in a :class:`~rules.silence_clock.SilenceClock`;
only subjects that fell silent get a stored (``fired``) timer. A registered device that never reports is
still reported silent, and what has fired survives a takeover (the timer store of another engine).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.engine import RulesEngine
from rules.loader import Rule, load_rule_docs
from rules.recording import RecordingActions
from rules.silence_clock import SilenceClock
from rules.site import DeviceInfo, SitePlan, load_site_plan
from rules.timers import InMemoryTimerStore, Timer
from rules.yamlmarks import load_marked
from twins.hooks import TwinChange

SITE_FILE = Path(__file__).parents[2] / "rules" / "builtin" / "tests" / "site.yaml"
T0 = datetime.fromisoformat("2026-11-02T10:00:00+08:00").timestamp()

QUIET = """
rules:
  - id: quiet
    when: [{silence: {per: device, kind: camera, for: 5m, recover: true}}]
    then:
      - raise_alarm: {if: "trigger.edge == 'start'", kind: quiet, subject: "{{ device.id }}", message: quiet}
      - clear_alarm: {if: "trigger.edge == 'end'", subject: "{{ device.id }}", reason: back}
"""

# --- the clock, pure ------------------------------------------------------------------------------

steps = st.lists(
    st.tuples(st.sampled_from(["heard", "watch", "forget"]), st.sampled_from("abcdef"), st.floats(0, 1000)),
    max_size=60,
)


def drain(clock: SilenceClock, now: float) -> list[tuple[str, float]]:
    out = []
    while (popped := clock.pop_due(now)) is not None:
        out.append(popped)
    return out


@given(steps, st.floats(0, 3000))
def test_the_clock_gives_exactly_the_subjects_silent_for_the_duration_oldest_first(
    ops: list[tuple[str, str, float]], now: float
) -> None:
    clock = SilenceClock("r", "h", 0, 100.0)
    model: dict[str, float] = {}
    newest = float("-inf")
    for op, subject, at in ops:
        if op == "forget":
            clock.forget(subject)
            model.pop(subject, None)
            continue
        if op == "heard" or subject not in model:
            newest = max(newest, at)
            model[subject] = newest  # times never go back: an older one counts as the newest
        getattr(clock, op)(subject, at)
    due = drain(clock, now)
    expected = sorted(((s, t) for s, t in model.items() if t + 100.0 <= now), key=lambda st_: st_[1])
    assert [t for _, t in due] == [t for _, t in expected]
    assert {s for s, _ in due} == {s for s, _ in expected}
    assert set(clock) == set(model) - {s for s, _ in due}
    nxt = clock.next_due()
    assert nxt is None or nxt > now


@given(st.lists(st.floats(0, 1000), min_size=1, max_size=30))
def test_hearing_a_subject_again_postpones_its_silence(times: list[float]) -> None:
    clock = SilenceClock("r", "h", 0, 10.0)
    for at in times:
        clock.heard("a", at)
    assert len(clock) == 1
    assert clock.next_due() == max(times) + 10.0
    assert clock.pop_due(max(times) + 9.99) is None


# --- the engine -----------------------------------------------------------------------------------


@pytest.fixture
def site() -> SitePlan:
    return load_site_plan(SITE_FILE)


def quiet_rules(site: SitePlan) -> list[Rule]:
    result = load_rule_docs(load_marked(QUIET, "t.yaml"), "t.yaml", site)
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    return result.rules


def cameras(site: SitePlan) -> set[str]:
    return {d.id for d in site.devices.values() if d.kind == "camera"}


def report(device: str, ts: float) -> TwinChange:
    return TwinChange("testsite", device, "camera", 2, ts, {"fps": 25}, {}, {}, {"fps": 25})


async def run_until(engine: RulesEngine, acts: RecordingActions, to: float) -> None:
    while (due := engine.next_due()) is not None and due <= to:
        acts.clock = due
        await engine.tick(due, acts)
    acts.clock = to
    await engine.tick(to, acts)


async def open_subjects(engine: RulesEngine) -> set[str]:
    return {a.subject for a in await engine.alarms.store.list(active_only=True) if a.rule_id == "quiet"}


async def test_watched_devices_store_no_timer_and_one_that_never_reports_is_silent(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    store = InMemoryTimerStore()
    engine = RulesEngine(quiet_rules(site), site, actions=acts, timer_store=store)
    engine.register_devices([DeviceInfo("cam-early", "camera", name="early")])  # registered before the start
    engine.start(T0)
    engine.register_devices([DeviceInfo("cam-late", "camera", name="late")], T0 + 100)  # silent from then on
    chatty = "cam-north-1"
    acts.clock = T0 + 1
    await engine.on_twin_change(report(chatty, T0 + 1), acts)
    await engine.tick(T0 + 1, acts)
    assert not [t for t in store.timers.values() if t.kind == "silence"]  # nothing stored while waiting
    await run_until(engine, acts, T0 + 240)
    await engine.on_twin_change(report(chatty, T0 + 240), acts)

    await run_until(engine, acts, T0 + 301)
    assert await open_subjects(engine) == {"cam-early"}
    await run_until(engine, acts, T0 + 401)
    assert await open_subjects(engine) == {"cam-early", "cam-late"}
    fired = {t.subject for t in store.timers.values() if t.kind == "silence" and t.state == "fired"}
    assert fired == {"cam-early", "cam-late"}
    await run_until(engine, acts, T0 + 541)
    assert await open_subjects(engine) == {"cam-early", "cam-late", chatty}


async def test_what_fired_survives_a_takeover_and_recovers_there(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    store = InMemoryTimerStore()  # shared, as rule_timers is between a site's workers
    first = RulesEngine(quiet_rules(site), site, actions=acts, timer_store=store)
    first.start(T0)
    await run_until(first, acts, T0 + 301)
    silent = sorted(cameras(site))[0]
    assert silent in await open_subjects(first)

    acts2 = RecordingActions(clock=T0 + 400)
    second = RulesEngine(quiet_rules(site), site, actions=acts2, timer_store=store, alarm_store=first.alarms.store)
    second.start(T0 + 400)
    await run_until(second, acts2, T0 + 800)  # not raised again: it is known to have fired
    assert silent in await open_subjects(second)
    await second.on_twin_change(report(silent, T0 + 801), acts2)  # heard again: the end edge clears it
    assert silent not in await open_subjects(second)
    assert f"silence|quiet|0|{silent}" not in store.timers


async def test_timers_stored_per_subject_by_an_older_version_count_from_the_start(site: SitePlan) -> None:
    store = InMemoryTimerStore()
    rule = quiet_rules(site)[0]
    cam = sorted(cameras(site))[0]
    store.save(Timer(f"silence|quiet|0|{cam}", "quiet", rule.hash, "silence", T0 + 10, cam, context={"idx": 0}))
    store.save(Timer("silence|quiet|0|cam-gone", "quiet", rule.hash, "silence", T0 + 10, "cam-gone"))
    acts = RecordingActions(clock=T0)
    engine = RulesEngine([rule], site, actions=acts, timer_store=store)
    engine.start(T0)
    assert not [t for t in store.timers.values() if t.kind == "silence"]  # taken into the clock
    (clock,) = engine.timers.clocks()
    assert "cam-gone" in clock and clock.next_due() == T0 + 300
    await run_until(engine, acts, T0 + 299)
    assert await open_subjects(engine) == set()
    await run_until(engine, acts, T0 + 300)
    assert await open_subjects(engine) == cameras(site) | {"cam-gone"}


async def test_a_reload_keeps_the_clock_of_an_unchanged_rule(site: SitePlan) -> None:
    acts = RecordingActions(clock=T0)
    engine = RulesEngine(quiet_rules(site), site, actions=acts)
    engine.start(T0)
    cam = sorted(cameras(site))[0]
    acts.clock = T0 + 200
    await engine.on_twin_change(report(cam, T0 + 200), acts)
    engine.reload(quiet_rules(site), T0 + 250)
    await run_until(engine, acts, T0 + 301)
    assert cam not in await open_subjects(engine)
    assert await open_subjects(engine) == cameras(site) - {cam}
