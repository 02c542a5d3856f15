"""Radio propagation for tags and phones: log-distance path loss with log-normal shadowing."""

from __future__ import annotations

import itertools
import math
import random

RSSI_AT_1M = -45.0  # active 2.4 GHz tag / phone probe at 1 m
PATH_LOSS_EXPONENT = 2.7  # outdoor with buildings and trees
SHADOWING_SIGMA_DB = 4.0
SENSITIVITY_DBM = -92.0


def mean_rssi(distance_m: float, rssi_at_1m: float = RSSI_AT_1M, exponent: float = PATH_LOSS_EXPONENT) -> float:
    """Expected RSSI (dBm) at ``distance_m``: ``P(1m) - 10 n log10(d)`` (distances under 1 m count as 1 m)."""
    return rssi_at_1m - 10.0 * exponent * math.log10(max(distance_m, 1.0))


def heard_rssi(
    distance_m: float,
    rng: random.Random,
    sigma_db: float = SHADOWING_SIGMA_DB,
    sensitivity_dbm: float = SENSITIVITY_DBM,
) -> float | None:
    """A noisy RSSI sample, or None when the signal is below the receiver's sensitivity."""
    rssi = mean_rssi(distance_m) + rng.gauss(0.0, sigma_db)
    return round(rssi, 1) if rssi >= sensitivity_dbm else None


def max_range_m(sensitivity_dbm: float = SENSITIVITY_DBM, margin_db: float = 3 * SHADOWING_SIGMA_DB) -> float:
    """Distance beyond which a reading is practically impossible (mean + 3 sigma below sensitivity)."""
    return float(10 ** ((RSSI_AT_1M - sensitivity_dbm + margin_db) / (10.0 * PATH_LOSS_EXPONENT)))


def point_along(points: list[tuple[float, float]], fraction: float) -> tuple[float, float]:
    """The point a ``fraction`` (0..1) of the way along a polyline."""
    if len(points) == 1:
        return points[0]
    seg = [math.dist(a, b) for a, b in itertools.pairwise(points)]
    total = sum(seg) or 1.0
    target = min(max(fraction, 0.0), 1.0) * total
    for (a, b), length in zip(itertools.pairwise(points), seg, strict=True):
        if target <= length and length > 0:
            t = target / length
            return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        target -= length
    return points[-1]
