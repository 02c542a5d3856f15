"""``schedule`` triggers: a cron expression or a time of day (site local time)."""

from __future__ import annotations

from rules.loader import Rule
from rules.model import ScheduleTrigger
from rules.schedule import next_due
from rules.timers import Timer
from rules.triggers.base import Detach, TriggerHost, chain
from rules.triggers.bus import subscribe
from twins.hooks import PlatformActions


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Arm the next occurrence; when due, re-arm the one after and check the rule."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, ScheduleTrigger)
    key = f"schedule|{rule.id}|{idx}"

    def arm(now: float) -> None:
        if key not in host.timers:
            due = next_due(spec, now, host.site.tz)
            host.timers.put(Timer(key, rule.id, rule.hash, "schedule", due, "site", context={"idx": idx}))

    async def due(timer: Timer, now: float, acts: PlatformActions) -> None:
        timer.due = next_due(spec, now, host.site.tz)
        host.timers.put(timer)
        ctx = host.names(rule, "site", now, trigger={"type": "schedule", "edge": "start"})
        await host.fire_if(rule, ctx, "site", f"schedule timer for {timer.subject}", now, acts)

    return chain([subscribe(host.bus.timers, (rule.id, idx), due), subscribe(host.bus.armers, (rule.id, idx), arm)])
