"""The checker's matching rules: what counts as a raised alarm and as the right command."""

from __future__ import annotations

import json

from firmware_sim.checker import Seen, matches
from firmware_sim.scenarios import Expect


def _seen(topic: str, doc: dict[str, object]) -> Seen:
    return Seen(0.0, topic, json.dumps(doc).encode())


def test_a_cleared_alarm_is_not_a_raised_one() -> None:
    e = Expect("alarm", "x", name="elderly_left_fence", subjects=("p0001",))
    topic = "anfang/youzheng/alarms/a1"
    assert matches(e, "youzheng", _seen(topic, {"kind": "elderly_left_fence", "subject": "p0001", "state": "active"}))
    assert not matches(
        e, "youzheng", _seen(topic, {"kind": "elderly_left_fence", "subject": "p0001", "state": "cleared"})
    )
    assert not matches(e, "youzheng", _seen(topic, {"type": "watchlist_match", "subject": "p0001"}))


def test_a_command_expectation_can_name_the_subject_it_opens_for() -> None:
    e = Expect("command", "x", device="door-b1-u1", name="open", match={"subject": "p0002"})
    topic = "anfang/youzheng/door-b1-u1/cmd/open"
    assert matches(e, "youzheng", _seen(topic, {"id": "c1", "args": {"seconds": 5, "subject": "p0002"}}))
    assert not matches(e, "youzheng", _seen(topic, {"id": "c2", "args": {"seconds": 5, "subject": "p0003"}}))
    assert matches(Expect("command", "x", device="door-b1-u1", name="open"), "youzheng", _seen(topic, {"id": "c3"}))
