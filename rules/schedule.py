"""Next due time of a schedule trigger (cron or time of day) in site-local time."""

from __future__ import annotations

from datetime import datetime, tzinfo

from croniter import croniter

from rules.model import ScheduleTrigger

_CRON_DAYS = {"sun": "0", "mon": "1", "tue": "2", "wed": "3", "thu": "4", "fri": "5", "sat": "6"}


def to_cron(spec: ScheduleTrigger) -> str:
    """``at: "07:30", days: [mon, fri]`` → ``"30 7 * * 1,5"``."""
    if spec.cron is not None:
        return spec.cron
    hh, _, mm = str(spec.at).partition(":")
    days = ",".join(_CRON_DAYS[d] for d in spec.days) if spec.days else "*"
    return f"{int(mm or 0)} {int(hh)} * * {days}"


def next_due(spec: ScheduleTrigger, now: float, tz: tzinfo) -> float:
    """The first firing strictly after ``now`` (epoch seconds)."""
    start = datetime.fromtimestamp(now, tz)
    return float(croniter(to_cron(spec), start).get_next(float))
