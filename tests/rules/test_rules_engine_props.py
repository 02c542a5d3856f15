"""Engine-level properties: alarm dedupe and hysteresis hold for any telemetry sequence."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.engine import RulesEngine
from rules.loader import load_rules
from rules.recording import RecordingActions
from rules.site import load_site_plan

ROOT = Path(__file__).parents[2]
SITE = load_site_plan(ROOT / "rules" / "builtin" / "tests" / "site.yaml")
RULES = load_rules(ROOT / "rules" / "builtin" / "low_battery.yaml", SITE).rules


async def _replay(values: list[float]) -> tuple[int, bool, int]:
    acts = RecordingActions(clock=1_800_000_000.0)
    engine = RulesEngine(RULES, SITE, actions=acts)
    max_active = 0
    for v in values:
        acts.clock += 60
        await engine.on_telemetry("door-b1-u1", "door_lock", {"battery": v}, acts)
        max_active = max(max_active, len(await engine.alarms.store.list(active_only=True)))
    active = await engine.alarms.store.find_active("low-battery", "door-b1-u1") is not None
    return max_active, active, len(engine.faults)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=40))
def test_low_battery_alarm_follows_the_hysteresis_band(values: list[float]) -> None:
    max_active, active, faults = asyncio.run(_replay(values))
    assert max_active <= 1 and faults == 0
    low = False  # the reference state machine: below 20 raises, 25 or more clears
    for v in values:
        low = v < 20 if not low else v < 25
    assert active == low
