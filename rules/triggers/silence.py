"""``silence`` triggers: something has NOT happened for a duration (a device silent, a person unseen).

The trigger's :class:`~rules.silence_clock.SilenceClock` (in the engine's timer queue) holds when each
subject was last heard; activity moves the subject to the end. Subjects are watched from the engine's
start (every registered device or person of the groups, heard or not) and from their first activity.
When one comes due the rule is checked and fired, and the subject gets a stored timer in state
``fired``, so that the next activity fires the ``end`` edge (``recover``), also on the worker that
takes over the site. Nothing else is stored: after a restart or a takeover silence counts from the
engine's start anyway (:meth:`rules.engine.RulesEngine.start`).
"""

from __future__ import annotations

from rules.loader import Rule
from rules.model import SilenceTrigger
from rules.site import SitePlan
from rules.timerqueue import silence_key
from rules.timers import Timer
from rules.triggers.base import Detach, TriggerHost, chain, device_allowed
from rules.triggers.bus import ActivitySub, subscribe
from twins.hooks import PlatformActions

#: Kinds that are not physical devices: never "silent" unless a rule names the kind explicitly.
NOT_PHYSICAL = frozenset({"platform", "rfid_tag"})


def person_in_groups(site: SitePlan, person_id: str, groups: list[str] | None) -> bool:
    """Is this a person of the site in one of ``groups`` (role or tag group; None: any)?"""
    person = site.people.get(person_id)
    if person is None:
        return False
    if groups is None:
        return True
    tag = site.tags.get(person.tag) if person.tag else None
    return person.role in groups or (tag is not None and tag.group in groups)


def subjects(site: SitePlan, spec: SilenceTrigger) -> list[str]:
    """The devices or people the trigger watches."""
    if spec.per == "device":
        return [
            d.id
            for d in site.devices.values()
            if (d.kind in spec.kind if spec.kind else d.kind not in NOT_PHYSICAL) and device_allowed(spec.device, d.id)
        ]
    return [p.id for p in site.people.values() if person_in_groups(site, p.id, spec.group)]


def attach(host: TriggerHost, rule: Rule, idx: int) -> Detach:
    """Watch activity of the trigger's devices or people; wait on them and handle those that fall silent."""
    spec = rule.triggers[idx].spec
    assert isinstance(spec, SilenceTrigger)
    clock = host.timers.clock(rule.id, rule.hash, idx, spec.for_)

    def arm(now: float) -> None:
        for subject in subjects(host.site, spec):
            fired = silence_key(rule.id, idx, subject) in host.timers
            if subject not in clock and not fired and host.owns(rule, idx, subject, subject):
                clock.watch(subject, now)

    async def rearm(subject: str, now: float, acts: PlatformActions) -> None:
        if subject in clock:  # waited on, so not silent: the common case, nothing stored
            clock.heard(subject, now)
            return
        key = silence_key(rule.id, idx, subject)
        old = host.timers.get(key)
        clock.heard(subject, now)
        if old is None:
            return
        host.timers.drop(key)
        if old.state != "fired":
            return
        label = f"activity of {subject} after silence"
        if not spec.recover:
            host.trace.add(now, rule.id, label, "no_match", "recovered (recover: false)")
            return
        vars_ = {"type": "silence", "edge": "end", "for": spec.for_, "last_seen": now, "silent_for": 0.0}
        try:
            ctx = host.names(rule, subject, now, trigger=vars_, device_id=subject)
            await host.fire_if(rule, ctx, subject, label, now, acts)
        except Exception as exc:  # a rule's fault ends this evaluation only
            host.fault(rule, now, label, exc)

    async def touch(device_id: str, etype: str | None, subject: str, now: float, acts: PlatformActions) -> None:
        if spec.events and etype not in spec.events:
            return
        if spec.per == "device":
            if device_allowed(spec.device, device_id) and host.owns(rule, idx, device_id, device_id):
                await rearm(device_id, now, acts)
        elif person_in_groups(host.site, subject, spec.group) and host.owns(rule, idx, device_id, subject):
            await rearm(subject, now, acts)

    async def due(timer: Timer, now: float, acts: PlatformActions) -> None:
        since = float(timer.context.get("since", timer.due - spec.for_))
        timer.state = "fired"
        host.timers.put(timer)
        vars_ = {"type": "silence", "edge": "start", "for": spec.for_, "last_seen": since, "silent_for": now - since}
        ctx = host.names(rule, timer.subject, now, trigger=vars_, device_id=timer.subject)
        await host.fire_if(rule, ctx, timer.subject, f"silence timer for {timer.subject}", now, acts)

    sub = ActivitySub(rule, idx, touch)
    if spec.per == "device":
        ons = [subscribe(host.bus.activity_device, k, sub) for k in spec.kind or ["*"]]
    else:
        ons = [subscribe(host.bus.activity_subject, "*", sub)]
    ons.append(subscribe(host.bus.timers, (rule.id, idx), due))
    ons.append(subscribe(host.bus.armers, (rule.id, idx), arm))
    return chain(ons)


async def touch_activity(
    host: TriggerHost, device_id: str, kind: str, etype: str | None, subject: str, now: float, acts: PlatformActions
) -> None:
    """Activity of a device (and of the subject the input is about) re-arms their silence timers."""
    subs = list(host.bus.activity_device.get(kind, ()))
    if kind not in NOT_PHYSICAL:
        subs += host.bus.activity_device.get("*", [])
    for sub in subs:
        await sub.touch(device_id, etype, subject, now, acts)
    if subject == device_id:
        return
    for sub in list(host.bus.activity_subject.get("*", ())):
        await sub.touch(device_id, etype, subject, now, acts)
