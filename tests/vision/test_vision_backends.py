"""Choosing the faster of two runtimes, on a fake clock (no real timing: the machine is shared)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from vision import backends


def test_faster_by_the_quickest_call_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr("vision.backends.perf_counter", lambda: now[0])
    calls: dict[str, int] = {}

    def costing(name: str, *seconds: float) -> Callable[[], None]:
        calls[name] = 0

        def run() -> None:
            now[0] += seconds[min(calls[name], len(seconds) - 1)]
            calls[name] += 1

        return run

    # warm-up call first (1.0), then 3 timed calls: ``stalled`` is quicker at its best despite a 9 s stall
    steady = costing("steady", 1.0, 0.5, 0.6, 0.7)
    stalled = costing("stalled", 1.0, 9.0, 0.3, 0.4)
    assert backends.first_is_faster(stalled, steady, rounds=3)
    assert calls == {"steady": 4, "stalled": 4}
    assert not backends.first_is_faster(costing("a", 1.0, 0.8), costing("b", 1.0, 0.2), rounds=3)
