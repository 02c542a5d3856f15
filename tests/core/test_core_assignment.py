"""The assignment of a site's partitions to its live workers (anfang.assignment): balanced, sticky,
minimal moves, stable, with more partitions than workers."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from anfang.assignment import moves, plan, target

Situation = tuple[int, dict[int, str], set[str]]
worker_ids = st.sampled_from([f"w{i}" for i in range(8)])


@st.composite
def situations(draw: st.DrawFn, max_partitions: int = 24) -> Situation:
    """Partitions, their current owners (some gone, some partitions without one) and the live workers."""
    partitions = draw(st.integers(1, max_partitions))
    current = draw(st.dictionaries(st.integers(0, partitions - 1), worker_ids))
    live = draw(st.sets(worker_ids, max_size=6))
    return partitions, current, live


def _balanced(assignment: dict[int, str], partitions: int, live: set[str]) -> bool:
    loads = [sum(1 for o in assignment.values() if o == w) for w in live]
    return sorted(assignment) == list(range(partitions)) and max(loads) - min(loads) <= 1


@given(situations())
def test_every_partition_has_exactly_one_live_owner_and_shares_differ_by_at_most_one(s: Situation) -> None:
    partitions, current, live = s
    new = target(partitions, current, live)
    if not live:
        assert new == {}
        return
    assert sorted(new) == list(range(partitions))  # a dict: exactly one owner each
    assert set(new.values()) <= live
    assert _balanced(new, partitions, live)


@given(situations())
def test_a_live_owner_within_its_share_keeps_its_partitions(s: Situation) -> None:
    partitions, current, live = s
    new = target(partitions, current, live)
    for worker in live:
        had = [p for p in current if current[p] == worker and p < partitions]
        kept = [p for p in had if new.get(p) == worker]
        now = sum(1 for o in new.values() if o == worker)
        assert len(kept) == min(len(had), now)  # it lost partitions only if it had more than its share


@given(situations(max_partitions=6).filter(lambda s: 0 < len(s[2]) <= 3))
def test_no_balanced_assignment_moves_fewer_partitions(s: Situation) -> None:
    partitions, current, live = s
    best = min(
        len(moves(current, candidate))
        for owners in itertools.product(sorted(live), repeat=partitions)
        if _balanced(candidate := dict(enumerate(owners)), partitions, live)
    )
    assert len(moves(current, target(partitions, current, live))) == best


@given(situations())
def test_recomputing_moves_nothing(s: Situation) -> None:
    partitions, current, live = s
    new = target(partitions, current, live)
    assert target(partitions, new, live) == new


@given(st.integers(1, 32), st.integers(1, 6))
def test_a_joining_worker_takes_its_share_only_from_the_others(partitions: int, workers: int) -> None:
    live = {f"w{i}" for i in range(workers)}
    before = target(partitions, {}, live)
    after = target(partitions, before, live | {"new"})
    moved = moves(before, after)
    assert all(after[p] == "new" for p in moved)  # nothing moves between the old workers
    assert len(moved) == partitions // (workers + 1)  # the newcomer's share: ⌊P/W⌋ (it holds none yet)


@given(st.integers(1, 32), st.integers(2, 6))
def test_a_dead_workers_partitions_are_the_ones_that_move(partitions: int, workers: int) -> None:
    live = {f"w{i}" for i in range(workers)}
    before = target(partitions, {}, live)
    after = target(partitions, before, live - {"w0"})
    assert moves(before, after) == {p for p, o in before.items() if o == "w0"}


def test_a_plan_takes_what_is_assigned_and_releases_what_is_not() -> None:
    assignment = {0: "a", 1: "b", 2: "a", 3: "b"}
    p = plan("a", assignment, serving={0, 1})
    assert p.take == {2} and p.release == {1}
    assert plan("c", assignment, serving=set()).take == set()
