"""Which live worker should serve which partition of a site. Pure: no clock, no database.

The workers of a site agree on an assignment kept in the database (:mod:`anfang.membership`); each
time the set of live workers changes, one of them recomputes it with :func:`target` under a lock.
The target is *balanced* (every live worker serves ⌊P/W⌋ or ⌈P/W⌉ of the P partitions, so there may
be more partitions than workers) and *sticky* (a partition keeps its owner whenever that owner is
alive and not above its share), so a joining worker takes only what it needs and a dead worker's
partitions are the only ones that move when it goes. Recomputing an assignment changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

__all__ = ["Plan", "moves", "plan", "shares", "target"]


def shares(partitions: int, current: Mapping[int, str], workers: Collection[str]) -> dict[str, int]:
    """How many partitions each worker should serve: ⌊P/W⌋, and one more for the ``P mod W`` workers that
    already serve the most (so the fewest partitions move); ties go to the smaller worker id."""
    live = sorted(set(workers))
    if not live:
        return {}
    base, extra = divmod(partitions, len(live))
    held = {w: 0 for w in live}
    for owner in current.values():
        if owner in held:
            held[owner] += 1
    ranked = sorted(live, key=lambda w: (-held[w], w))
    return {w: base + (1 if i < extra else 0) for i, w in enumerate(ranked)}


def target(partitions: int, current: Mapping[int, str], workers: Collection[str]) -> dict[int, str]:
    """Every partition ``0 .. partitions-1`` with its owner among ``workers`` (empty when none is alive).

    ``current``: the owner each partition has now (partitions without one may be left out). A partition
    stays with its owner while that owner is alive and within its share (its lowest-numbered partitions
    first); the others go, in partition order, to the workers below their share, smallest id first."""
    share = shares(partitions, current, workers)
    if not share:
        return {}
    out: dict[int, str] = {}
    kept = dict.fromkeys(share, 0)
    for part in range(partitions):
        owner = current.get(part)
        if owner in share and kept[owner] < share[owner]:
            out[part] = owner
            kept[owner] += 1
    free = iter(w for w in sorted(share) for _ in range(share[w] - kept[w]))
    for part in range(partitions):
        if part not in out:
            out[part] = next(free)
    return out


def moves(current: Mapping[int, str], new: Mapping[int, str]) -> set[int]:
    """The partitions whose owner changes (including those that had none)."""
    return {part for part, owner in new.items() if current.get(part) != owner}


@dataclass(frozen=True)
class Plan:
    """What one worker does about an assignment: partitions to take and partitions to hand off."""

    take: frozenset[int]
    release: frozenset[int]


def plan(worker: str, assignment: Mapping[int, str], serving: Collection[int]) -> Plan:
    """Take what is assigned to ``worker`` and not served yet; release what it serves and is assigned elsewhere."""
    mine = {part for part, owner in assignment.items() if owner == worker}
    return Plan(take=frozenset(mine - set(serving)), release=frozenset(set(serving) - mine))
