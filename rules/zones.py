"""Zone membership of tags from noisy position estimates (pure: estimates and times are passed in).

A tag is inside a zone when its estimate lies in the polygon. It counts as gone only when its estimate
lies more than the zone's ``margin`` outside, and either change takes effect only after the tag has
been seen on the new side for the zone's ``dwell`` seconds (event time), without a sighting on the
old side in between; an estimate from a single reader counts for neither side. Readers on a fence
put estimates on or near the boundary, a lone reading snaps to its reader: without the band and the
dwell, every child playing near the kindergarten's edge would "leave" it several times a day.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.site import Zone

#: Readers an estimate must come from to move a tag across a zone with a margin.
MIN_READERS = 2


@dataclass
class ZoneMembership:
    """Confirmed membership per (tag, zone), and when a tag started to look as if it had crossed."""

    inside: dict[tuple[str, str], bool] = field(default_factory=dict)
    pending: dict[tuple[str, str], float] = field(default_factory=dict)

    def observe(
        self, tag: str, zone: Zone, x: float, y: float, ts: float, readers: int = 2
    ) -> tuple[bool | None, bool]:
        """A new estimate of ``tag`` at event time ``ts`` from ``readers`` readers: returns (membership
        before, membership now).

        The membership before is None for a tag the zone has not seen yet (its first estimate sets the
        membership; no transition). In a zone with a margin, an estimate from one reader alone (it sits
        on that reader) is no evidence either way.
        """
        key = (tag, zone.id)
        prev = self.inside.get(key)
        outside_by = zone.outside_by(x, y)
        if prev is None:
            self.inside[key] = outside_by == 0.0
            return None, self.inside[key]
        if zone.margin > 0 and readers < MIN_READERS:
            seen_inside: bool | None = None
        elif outside_by == 0.0:
            seen_inside = True
        elif outside_by > zone.margin:
            seen_inside = False
        else:
            seen_inside = None  # in the band: no evidence either way
        if seen_inside is None:
            return prev, prev
        if seen_inside == prev:
            self.pending.pop(key, None)
            return prev, prev
        since = self.pending.setdefault(key, ts)
        if ts - since < zone.dwell:
            return prev, prev
        del self.pending[key]
        self.inside[key] = seen_inside
        return prev, seen_inside

    def get(self, tag: str, zone_id: str) -> bool | None:
        """The confirmed membership (None if unknown)."""
        return self.inside.get((tag, zone_id))
