"""The ingest benchmark adds up what several worker partitions accepted, each on its own clock."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bench.ingest_bench import _Accepted


def test_two_partitions_reporting_at_different_moments_add_up() -> None:
    series = _Accepted()
    for t in range(11):  # partition 0 reports on whole seconds, 1,000/s
        series.add("health", float(t), 1000 * t)
    for t in range(10):  # partition 1 on half seconds, 500/s
        series.add("health/p1", t + 0.5, int(500 * (t + 0.5)))
    assert series.rate(2.0, 8.0) == 1500.0
    assert series.at(9.5) == 9500 + 4750
    # the growth starts where no partition had yet accepted more than in its first report
    late = _Accepted()
    for t, accepted in [(0.0, 0), (1.0, 0), (2.0, 10), (3.0, 20)]:
        late.add("health", t, accepted)
    assert late.growth_start() == 1.0


@given(
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 10**6)), min_size=1, max_size=30),
    st.floats(-10, 110),
    st.floats(-10, 110),
)
def test_accepted_never_falls_and_stays_within_what_was_reported(
    points: list[tuple[float, int]], a: float, b: float
) -> None:
    series = _Accepted()
    running = 0
    for ts, extra in sorted(points):
        running += extra
        series.add("health", ts, running)  # the platform's counter only grows
    lo, hi = min(a, b), max(a, b)
    assert series.at(lo) <= series.at(hi) + 1e-6
    reported = [accepted for _, accepted in series.series["health"]]
    assert min(reported) - 1e-6 <= series.at(a) <= max(reported) + 1e-6
