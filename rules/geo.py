"""Tag position from the readers that heard it: RSSI-weighted centroid over a window, then smoothed.

Pure logic: the caller passes reader positions and timestamps in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """One ``tag_seen`` from one reader."""

    ts: float
    reader: str
    x: float
    y: float
    rssi: float


@dataclass(frozen=True, slots=True)
class Estimate:
    """A smoothed position estimate of a tag."""

    x: float
    y: float
    ts: float
    reader: str
    rssi: float
    readers: int


def rssi_weight(rssi: float) -> float:
    """Linear amplitude: a reader 20 dB stronger counts ten times as much."""
    return float(10.0 ** (max(-120.0, min(0.0, rssi)) / 20.0))


def weighted_centroid(readings: list[Reading]) -> tuple[float, float]:
    """RSSI-weighted centroid, one vote per reader (its mean RSSI in the window)."""
    per_reader: dict[str, list[Reading]] = {}
    for r in readings:
        per_reader.setdefault(r.reader, []).append(r)
    wsum = xs = ys = 0.0
    for rs in per_reader.values():
        w = rssi_weight(sum(r.rssi for r in rs) / len(rs))
        wsum += w
        xs += w * rs[0].x
        ys += w * rs[0].y
    return xs / wsum, ys / wsum


@dataclass
class _TagState:
    readings: deque[Reading]
    estimate: Estimate | None = None


@dataclass
class TagTracker:
    """Keeps a short window of readings per tag and an exponentially smoothed estimate.

    ``window`` seconds of readings feed the centroid; ``alpha`` weighs the new centroid against
    the previous estimate, so one noisy reading moves the estimate only part of the way; after
    ``stale`` seconds without readings the estimate restarts from scratch.
    """

    window: float = 10.0
    alpha: float = 0.4
    stale: float = 120.0
    max_readings: int = 64
    _tags: dict[str, _TagState] = field(default_factory=dict)

    def observe(self, tag: str, reading: Reading) -> Estimate:
        """Add a reading; return the new estimate."""
        st = self._tags.get(tag)
        if st is None:
            st = self._tags[tag] = _TagState(deque(maxlen=self.max_readings))
        st.readings.append(reading)
        while st.readings and st.readings[0].ts < reading.ts - self.window:
            st.readings.popleft()
        cx, cy = weighted_centroid(list(st.readings))
        prev = st.estimate
        if prev is None or reading.ts - prev.ts > self.stale:
            x, y = cx, cy
        else:
            x = self.alpha * cx + (1 - self.alpha) * prev.x
            y = self.alpha * cy + (1 - self.alpha) * prev.y
        readers = len({r.reader for r in st.readings})
        st.estimate = Estimate(x, y, reading.ts, reading.reader, reading.rssi, readers)
        return st.estimate

    def estimate(self, tag: str) -> Estimate | None:
        """The last estimate of a tag, if any."""
        st = self._tags.get(tag)
        return st.estimate if st else None

    def estimates(self) -> dict[str, Estimate]:
        """All current estimates."""
        return {t: s.estimate for t, s in self._tags.items() if s.estimate is not None}
