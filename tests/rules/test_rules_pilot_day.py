"""The pilot community's normal day through the built-in rules on the simulated clock: zero alarms, while
each incident played into the same day still raises exactly its alarm (issue 17 item 7, Must show).

The devices are the simulator's pure firmware driven by the behaviour model (guardians walk their
children out of the kindergarten in the pick-up window); nothing here waits on a real clock."""

from __future__ import annotations

import datetime as dt

import pytest
from pilot_day import PILOT, DayPlayer, describe

from firmware_sim.behaviour import Action
from firmware_sim.community import load_community
from firmware_sim.scenarios.library import DEFAULT_DAY, build, local_ts

CST = dt.timezone(dt.timedelta(hours=8))
MONDAY = dt.datetime(2026, 11, 2, tzinfo=CST).timestamp()
HOUR = 3600.0


def _zone_moves(player: DayPlayer, zone: str, on: str) -> set[str]:
    return {t.input.split()[0] for t in player.engine.explain() if f" {on} {zone} at " in t.input}


async def test_the_pilots_whole_normal_day_raises_no_alarm() -> None:
    player = await DayPlayer.pilot(MONDAY)
    await player.play(player.model_actions(MONDAY, MONDAY + 24 * HOUR), until=MONDAY + 24 * HOUR)
    alarms = await player.alarms()
    assert alarms == [], describe(alarms)
    assert player.played > 25_000 and not player.engine.faults
    # the day was not empty: every child was picked up (left the kindergarten), with a guardian
    children = {t.id for t in player.community.tags if t.group == "child"}
    assert children <= _zone_moves(player, "kindergarten", "leave")
    judged = [t.outcome for t in player.engine.explain("child-left-kindergarten") if " leave " in t.input]
    assert "fired" not in judged and judged.count("condition_false") >= len(children) // 2


async def test_verdicts_follow_the_events_time_not_the_platform_clock() -> None:
    """Pick-ups played while the platform clock is 5 h ahead (a 60x simulation's drift): with a skew bound
    wider than that the verdicts are the day's own; with the default 300 s each event beyond it is judged at
    the platform's time (counted), and the same pick-ups fall outside the window."""
    start, end = MONDAY + 15.5 * HOUR, MONDAY + 18 * HOUR
    verdicts = []
    for bound in (86_400.0, 300.0):
        player = await DayPlayer.pilot(start, skew=5 * HOUR, max_event_skew=bound)
        await player.play(player.model_actions(start, end), until=end)
        verdicts.append((await player.alarms(), player.engine.clock.rejected))
    (alarms, rejected), (late, late_rejected) = verdicts
    assert alarms == [] and rejected == 0
    assert late and {a.rule_id for a in late} == {"child-left-kindergarten"} and late_rejected > 0


def _incident(name: str) -> list[Action]:
    """A scenario of the library, moved onto the played day at its own time of day."""
    scenario = build(name, load_community(PILOT))
    offset = scenario.start - local_ts(DEFAULT_DAY, 0) + MONDAY
    actions = []
    for step in scenario.steps:
        assert isinstance(step.payload, dict)
        actions.append(Action(offset + step.at, step.device, step.action, step.payload))
    return actions


@pytest.mark.parametrize(
    ("scenario", "rule", "subject"),
    [
        ("child-leaves-kindergarten", "child-left-kindergarten", "p0010"),
        ("elderly-wanders-off", "elderly-left-fence", "p0007"),
        ("forced-door", "door-forced", "door-b9-u1"),
    ],
)
async def test_each_incident_in_the_day_raises_exactly_its_alarm(scenario: str, rule: str, subject: str) -> None:
    incident = _incident(scenario)
    start, end = incident[0].ts - 2 * HOUR, incident[-1].ts + HOUR
    player = await DayPlayer.pilot(start)
    await player.play(sorted([*player.model_actions(start, end), *incident]), until=end)
    alarms = await player.alarms()
    assert [(a.rule_id, a.subject) for a in alarms] == [(rule, subject)], describe(alarms)


async def test_a_device_that_dies_mid_day_is_the_only_one_offline() -> None:
    """Power cut at one door at 19:00: its last will says offline — one alarm; the rest stay quiet."""
    start, cut, end = MONDAY + 17 * HOUR, MONDAY + 19 * HOUR, MONDAY + 21 * HOUR
    player = await DayPlayer.pilot(start)
    await player.play(player.model_actions(start, cut))
    await player.status("door-b1-u1", "offline")
    await player.play([a for a in player.model_actions(cut, end) if a.device_id != "door-b1-u1"], until=end)
    alarms = await player.alarms()
    assert [(a.rule_id, a.subject) for a in alarms] == [("device-offline", "door-b1-u1")], describe(alarms)
