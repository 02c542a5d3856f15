"""Properties of the pure state machines behind sequences, distinct counts and window edges."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.patterns import DistinctWindow, SeqState, edge_minutes, next_edge, seq_advance

CHINA = timezone(timedelta(hours=8))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.floats(0, 50)), max_size=30),
    st.lists(st.integers(1, 3), min_size=2, max_size=3),
    st.floats(10, 200),
)
def test_a_sequence_completes_only_on_its_last_step_after_all_steps_in_order_within_the_window(
    inputs: list[tuple[int, float]], times: list[int], within: float
) -> None:
    state: SeqState | None = None
    ts = 0.0
    history: list[tuple[int, float]] = []
    for step, gap in inputs:
        step = min(step, len(times) - 1)
        ts += gap
        history.append((step, ts))
        state, done = seq_advance(state, step, tuple(times), ts, within)
        if done:
            assert step == len(times) - 1 and state is None
            # the inputs since the window began hold every step, in order, as often as asked
            recent = [s for s, t in history if t >= ts - within]
            need = [i for i, n in enumerate(times) for _ in range(n)]
            it = iter(recent)
            assert all(any(s == want for s in it) for want in need)
            history.clear()
        if state is not None:
            assert 0 <= state.step < len(times) and state.seen < times[state.step]
            assert ts - state.started <= within


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.floats(0, 100)), max_size=40), st.floats(1, 300))
def test_distinct_count_is_the_number_of_values_seen_within_the_window(
    sightings: list[tuple[str, float]], within: float
) -> None:
    win = DistinctWindow()
    ts = 0.0
    seen: list[tuple[str, float]] = []
    for value, gap in sightings:
        ts += gap
        seen.append((value, ts))
        n = win.add(value, ts, within)
        assert n == len({v for v, t in seen if t > ts - within})


@settings(max_examples=300, deadline=None)
@given(
    st.floats(1_700_000_000, 1_900_000_000),
    st.lists(st.sampled_from(["night", "07:30", "12:00", "00:00"]), min_size=1, max_size=3),
)
def test_the_next_window_edge_is_the_first_edge_minute_after_now(now: float, edges: list[str]) -> None:
    minutes = edge_minutes(edges)
    due = next_edge(now, minutes, CHINA)
    assert now < due <= now + 86_400
    local = datetime.fromtimestamp(due, CHINA)
    assert local.hour * 60 + local.minute in minutes and local.second == 0
    t = now + 60 - (now % 60)  # no edge minute strictly between now and due
    while t < due:
        lt = datetime.fromtimestamp(t, CHINA)
        assert lt.hour * 60 + lt.minute not in minutes or t <= now
        t += 60
