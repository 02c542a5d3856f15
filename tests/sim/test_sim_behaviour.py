"""The behaviour model: deterministic, with the daily rhythm and radio physics a user would expect."""

from __future__ import annotations

import collections
import datetime as dt
import random

from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.behaviour import BehaviourModel
from firmware_sim.community import Community
from firmware_sim.radio import heard_rssi, mean_rssi

CST = dt.timezone(dt.timedelta(hours=8))
DAY0 = dt.datetime(2026, 11, 25, tzinfo=CST).timestamp()


def _hour(ts: float) -> int:
    return dt.datetime.fromtimestamp(ts, CST).hour


def test_same_seed_gives_the_same_event_sequence(youzheng: Community) -> None:
    a = list(BehaviourModel(youzheng, seed=42).actions(DAY0 + 6 * 3600, DAY0 + 10 * 3600))
    b = list(BehaviourModel(youzheng, seed=42).actions(DAY0 + 6 * 3600, DAY0 + 10 * 3600))
    c = list(BehaviourModel(youzheng, seed=43).actions(DAY0 + 6 * 3600, DAY0 + 10 * 3600))
    assert a and [(x.ts, x.device_id, x.suffix, x.payload) for x in a] == [
        (x.ts, x.device_id, x.suffix, x.payload) for x in b
    ]
    assert [x.ts for x in a] != [x.ts for x in c]
    assert [x.ts for x in a] == sorted(x.ts for x in a)


def test_a_window_does_not_depend_on_where_the_run_started(youzheng: Community) -> None:
    m = BehaviourModel(youzheng, seed=3)
    whole = [x for x in m.actions(DAY0, DAY0 + 86400) if DAY0 + 7 * 3600 <= x.ts < DAY0 + 8 * 3600]
    part = list(m.actions(DAY0 + 7 * 3600, DAY0 + 8 * 3600))
    assert whole == part


def test_daily_rhythm_rush_hours_and_quiet_nights(youzheng: Community) -> None:
    acts = [a for a in BehaviourModel(youzheng, seed=1).actions(DAY0, DAY0 + 86400) if a.suffix != "telemetry"]
    gates = collections.Counter(
        (_hour(a.ts), a.payload["direction"]) for a in acts if a.suffix == "events/plate_captured"
    )
    out_morning = sum(n for (h, d), n in gates.items() if 7 <= h < 9 and d == "out")
    in_evening = sum(n for (h, d), n in gates.items() if 17 <= h < 20 and d == "in")
    assert out_morning > 0.6 * len(youzheng.vehicles) * 0.8 * 0.8
    assert in_evening > 0.6 * len(youzheng.vehicles) * 0.8 * 0.8
    night = [a for a in acts if _hour(a.ts) < 6 or _hour(a.ts) >= 22]
    assert len(night) < 0.01 * len(acts)
    kinds = {a.suffix for a in acts}
    assert {
        "events/face_captured",
        "events/door_opened",
        "events/tag_seen",
        "events/mac_seen",
        "events/target_tracked",
        "events/plate_captured",
    } <= kinds
    faces = [a for a in acts if a.suffix == "events/face_captured"]
    assert all(len(a.payload["embedding"]) == 128 and 0 <= a.payload["liveness"] <= 1 for a in faces)


def test_randomising_phones_show_changing_macs(youzheng: Community) -> None:
    acts = BehaviourModel(youzheng, seed=1).actions(DAY0, DAY0 + 86400)
    macs = collections.defaultdict(set)
    for a in acts:
        if a.suffix == "events/mac_seen":
            macs[a.payload["randomized"]].add(a.payload["mac"])
    assert macs[True] and macs[False]
    assert all(int(m[:2], 16) & 0x02 for m in macs[True])


@given(st.floats(1, 500), st.floats(1, 500))
def test_rssi_falls_with_distance(d1: float, d2: float) -> None:
    if d1 < d2:
        assert mean_rssi(d1) >= mean_rssi(d2)


def test_far_tags_are_not_heard() -> None:
    rng = random.Random(0)
    assert all(heard_rssi(2000.0, rng) is None for _ in range(200))
    assert sum(heard_rssi(5.0, rng) is not None for _ in range(200)) == 200
