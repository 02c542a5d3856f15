"""``zone`` triggers: a tag (its wearer) enters or leaves a zone of the site plan.

Zone transitions are derived here from ``tag_seen`` events (:func:`observe_tag`): the tag's position
is estimated, its virtual twin updated, and each zone some rule watches is checked for a change of
membership.
"""

from __future__ import annotations

from typing import Any

from rules.geo import Reading
from rules.loader import Rule
from rules.model import ZoneTrigger
from rules.timers import Timer
from rules.triggers.base import Detach, Input, Match, TriggerHost, chain
from rules.triggers.bus import Sub, subscribe
from twins.errors import TwinError
from twins.hooks import DeviceEvent, PlatformActions


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Subscribe to the zone's transitions."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, ZoneTrigger)

    def match(inp: Input, ctx: dict[str, Any]) -> Match | str:
        if inp.zone != spec.zone or inp.zone_on != spec.on:
            return f"{inp.zone_on} {inp.zone}, rule wants {spec.on} {spec.zone}"
        tag = host.site.tags.get(inp.tag or "")
        if spec.tag and inp.tag not in spec.tag:
            return f"tag {inp.tag} not in {spec.tag}"
        if spec.group and (tag is None or tag.group not in spec.group):
            return f"tag group {tag.group if tag else None} not in {spec.group}"
        return Match(inp.subject, inp.subject, {"type": "zone", "zone": spec.zone, "on": spec.on, "tag": inp.tag})

    def holds(timer: Timer) -> bool:
        tag = timer.context.get("tag")
        if not tag:
            return True
        inside = host.state.membership.get((str(tag), spec.zone))
        return inside is None or inside == (spec.on == "enter")

    return chain(
        [
            subscribe(host.bus.zones, spec.zone, Sub(rule, idx, match)),
            subscribe(host.bus.holds, (rule.id, idx), holds),
        ]
    )


async def observe_tag(host: TriggerHost, event: DeviceEvent, at: float, now: float, acts: PlatformActions) -> None:
    """A reader saw a tag (at event time ``at``): update its position and virtual twin, dispatch zone
    transitions (:class:`~rules.zones.ZoneMembership`: a zone's margin and dwell absorb reader noise)."""
    tag, rssi = event.data.get("tag"), event.data.get("rssi")
    pos = host.site.reader_position(event.device_id)
    if not isinstance(tag, str) or not isinstance(rssi, int | float) or pos is None:
        host.trace.add(now, "-", f"tag_seen {event.id}", "ignored", "no tag/rssi or reader not on the plan")
        return
    est = host.tracker.observe(tag, Reading(event.ts, event.device_id, pos[0], pos[1], float(rssi)))
    position = {"x": round(est.x, 2), "y": round(est.y, 2)}
    state = {"last_seen": event.ts, "reader": event.device_id, "rssi": float(rssi), "position": position}
    try:
        if host.owns_entity(tag):  # the owner of the tag's virtual twin (partition 0) derives it
            await acts.report_virtual(tag, state)
    except TwinError as exc:
        # an unregistered tag has no twin to update; its position still counts for the zones
        host.trace.add(now, "-", f"tag_seen {event.id}", "no twin", exc.message)
    person = host.site.person_for_tag(tag)
    subject = person.id if person else tag
    for zone_id, subs in list(host.bus.zones.items()):
        zone = host.site.zones.get(zone_id)
        if zone is None:
            continue
        # the dwell runs on the tag's own readings' time, as the position estimate does
        prev, inside = host.state.zones.observe(tag, zone, est.x, est.y, est.ts, est.readers)
        if prev is None or prev == inside:
            continue
        on = "enter" if inside else "leave"
        label = f"{tag} {on} {zone_id} at ({est.x:.1f},{est.y:.1f})"
        inp = Input("zone", at, event.device_id, "rfid_reader", label, subject, zone=zone_id, zone_on=on, tag=tag)
        await host.dispatch(list(subs), inp, now, acts)
