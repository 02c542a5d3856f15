"""Choosing between two runtimes that compute the same thing: the one that is faster on this machine.

OpenCV's DNN and onnxruntime give the same outputs for the wheels' models (checked separately), but
which is cheaper depends on the CPU: on an Intel Xeon (AVX-512, AMX) OpenCV ran the PP-OCR text
detector in 0.6x onnxruntime's CPU, on an AMD EPYC (AVX-512) onnxruntime ran it in ~0.5x OpenCV's
(bench/RESULTS.md, "Vision", 2026-12-03). So the choice is timed once, at load.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

__all__ = ["first_is_faster"]

#: Timed calls of each candidate (after one untimed warm-up call each), taking turns.
TIMING_ROUNDS = 3


def first_is_faster(first: Callable[[], object], second: Callable[[], object], rounds: int = TIMING_ROUNDS) -> bool:
    """True when ``first`` takes less wall time than ``second``: the quickest of ``rounds`` calls each.

    The two take turns and the minimum is compared, so another process's burst of load is unlikely
    to decide; a near tie may go either way, which is harmless as both compute the same thing.
    """
    first()
    second()
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, fn in enumerate((first, second)):
            t0 = perf_counter()
            fn()
            best[i] = min(best[i], perf_counter() - t0)
    return best[0] < best[1]
