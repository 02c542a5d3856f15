"""Alarms: one model and one lifecycle for every alarm of a site.

Rules raise alarms (a forced door, an elderly resident outside the fence), access control raises them
(a watchlist hit, a PIN lockout), the platform raises them about itself (a broken rule, a stopped
telemetry writer). Each is an :class:`Alarm`: raised → acknowledged → cleared, with who and when.
An open alarm with the same *dedupe key* is bumped (``count`` + 1) instead of raised again.

Every transition is stored together with an *outbox* entry (same transaction, see
:class:`AlarmStore`): the platform's alarm dispatcher (``anfang/alarm_dispatch.py``) delivers it
to the site's webhooks with retries, escalates unacknowledged critical alarms, and publishes on the
site's alarm topic ``anfang/{site}/alarms/{id}`` what was not published at once (a transition made
by the HTTP API or the CLI, outside a platform worker). The published document is retained while the
alarm is open; on clear it is published once more, not retained, and the retained copy is removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

from twins.hooks import PlatformActions
from twins.topics import alarm_topic

__all__ = [
    "AUDIENCES",
    "OPEN_STATES",
    "SEVERITIES",
    "STATES",
    "Alarm",
    "AlarmError",
    "AlarmManager",
    "AlarmStore",
    "AlarmStoreError",
    "InMemoryAlarmStore",
    "OutboxEntry",
    "default_dedupe_key",
]

STATES = ("raised", "acknowledged", "cleared")
OPEN_STATES = ("raised", "acknowledged")
#: Severities in increasing order.
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: Who sees an alarm: everyone on duty (staff and police), or community police only (watchlist hits).
AUDIENCES = ("all", "police")
#: Transitions written to the outbox.
EVENTS = ("raised", "repeated", "acknowledged", "cleared", "escalated")
_LEGACY_STATES = {"active": "raised"}  # documents stored before alarms were unified


#: How many of an alarm's newest causes it keeps (a catch-up replays about a second of inputs).
KEEP_CAUSES = 8


def default_dedupe_key(rule_id: str, subject: str) -> str:
    """One open alarm per source (a rule, ``access``, ``platform``) and subject."""
    return f"{rule_id}|{subject}"


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm and where it is in its lifecycle.

    ``rule_id`` names the source: a rule's id, ``access`` (access control) or ``platform``.
    ``evidence`` holds references, never the evidence itself (device, capture and snapshot ids, the
    watchlist entry); ``data`` what the source adds for people reading the alarm.
    """

    id: str
    site: str
    rule_id: str
    subject: str
    kind: str
    severity: str
    message: str
    state: str  # raised | acknowledged | cleared
    raised_at: float
    updated_at: float
    count: int = 1
    dedupe_key: str = ""
    audience: str = "all"
    acked_by: str | None = None
    acked_at: float | None = None
    ack_note: str | None = None
    cleared_by: str | None = None
    cleared_at: float | None = None
    clear_reason: str | None = None
    escalation_level: int = 0
    escalated_at: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    #: The inputs that raised or bumped it, newest last (at most :data:`KEEP_CAUSES`; a rule's stored
    #: event as ``event:<device>/<id>``): the same input again is a replay, not a repeat.
    causes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.dedupe_key:
            object.__setattr__(self, "dedupe_key", default_dedupe_key(self.rule_id, self.subject))

    @property
    def active(self) -> bool:
        """Not yet cleared."""
        return self.state in OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        """The document stored and published on the alarm topic."""
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Alarm:
        """From a stored document (also one written before alarms were unified)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        values["state"] = _LEGACY_STATES.get(str(values.get("state")), values.get("state"))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A transition waiting for the dispatcher: deliver it to the site's webhooks and, unless it was
    published at once, publish the alarm on MQTT."""

    id: str
    site: str
    alarm_id: str
    event: str
    publish: bool
    created_at: float


class AlarmError(Exception):
    """An alarm operation was not possible (unknown id, already cleared)."""

    def __init__(self, alarm_id: str, message: str, code: str = "alarm_not_open") -> None:
        super().__init__(f"alarm {alarm_id}: {message}")
        self.alarm_id = alarm_id
        self.message = message
        self.code = code


class AlarmStoreError(OSError):
    """The alarm store could not be read or written; ``where`` names it.

    An ``OSError`` (an I/O failure, like a failed publish): a rule whose alarm could not be stored has
    the failure recorded on its firing and stays enabled, as with any platform-side failure.
    """

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


class AlarmStore(Protocol):
    """Persistence of alarms; a store that fails raises :class:`AlarmStoreError`."""

    async def put(self, alarm: Alarm, event: str, *, publish: bool) -> None:
        """Store the alarm and an outbox entry for ``event``, in one transaction."""
        ...

    async def get(self, alarm_id: str) -> Alarm | None: ...

    async def find_open(self, dedupe_key: str) -> Alarm | None: ...

    async def list(
        self,
        *,
        active_only: bool = False,
        limit: int = 1000,
        states: Sequence[str] = (),
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        audiences: Sequence[str] = (),
    ) -> list[Alarm]: ...


def _matches(
    a: Alarm,
    states: Sequence[str],
    kind: str | None,
    since: float | None,
    until: float | None,
    audiences: Sequence[str],
) -> bool:
    return (
        (not states or a.state in states)
        and (kind is None or a.kind == kind)
        and (since is None or a.raised_at >= since)
        and (until is None or a.raised_at <= until)
        and (not audiences or a.audience in audiences)
    )


class InMemoryAlarmStore:
    """Alarms in a dict (rule fixtures and replays, which deliver nothing)."""

    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}
        self.outbox: list[tuple[str, str]] = []

    async def put(self, alarm: Alarm, event: str = "raised", *, publish: bool = False) -> None:
        self._alarms[alarm.id] = alarm
        self.outbox.append((alarm.id, event))

    async def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    async def find_open(self, dedupe_key: str) -> Alarm | None:
        return next((a for a in self._alarms.values() if a.dedupe_key == dedupe_key and a.active), None)

    async def find_active(self, rule_id: str, subject: str) -> Alarm | None:
        """The open alarm of a rule for a subject."""
        return await self.find_open(default_dedupe_key(rule_id, subject))

    async def list(
        self,
        *,
        active_only: bool = False,
        limit: int = 1000,
        states: Sequence[str] = (),
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        audiences: Sequence[str] = (),
    ) -> list[Alarm]:
        items = [
            a
            for a in self._alarms.values()
            if (a.active or not active_only) and _matches(a, states, kind, since, until, audiences)
        ]
        return sorted(items, key=lambda a: a.raised_at)[-limit:]


class AlarmManager:
    """Applies lifecycle transitions, stores them (with their outbox entry) and publishes them.

    Every method takes the platform's actions to publish at once; ``None`` (the HTTP API or the CLI,
    possibly in another process) leaves publishing to the dispatcher of the site's active worker.
    """

    def __init__(self, site: str, store: AlarmStore, new_id: Callable[[], str] | None = None) -> None:
        self.site = site
        self.store = store
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self.on_change: Callable[[], None] = lambda: None  # the dispatcher's wake-up

    async def raise_alarm(
        self,
        actions: PlatformActions | None,
        *,
        rule_id: str,
        subject: str,
        kind: str,
        severity: str,
        message: str,
        now: float,
        data: dict[str, Any] | None = None,
        evidence: dict[str, Any] | None = None,
        audience: str = "all",
        dedupe_key: str | None = None,
        cause: str | None = None,
    ) -> tuple[Alarm, bool]:
        """Open an alarm; returns ``(alarm, created)``; an open one with the same dedupe key is bumped.

        ``cause`` names the input that raised it (:func:`rules.catch_up.event_cause`): an open alarm
        raised or bumped by that same input is returned as it is — the input was replayed after a
        restart (:mod:`rules.catch_up`), it does not happen twice."""
        if severity not in SEVERITIES:
            raise ValueError(f"alarm severity {severity!r} is not one of {', '.join(SEVERITIES)}")
        if audience not in AUDIENCES:
            raise ValueError(f"alarm audience {audience!r} is not one of {', '.join(AUDIENCES)}")
        key = dedupe_key or default_dedupe_key(rule_id, subject)
        existing = await self.store.find_open(key)
        causes = [cause] if cause else []
        if existing is not None:
            if cause and cause in existing.causes:
                return existing, False
            causes = (existing.causes + causes)[-KEEP_CAUSES:]
            bumped = replace(existing, count=existing.count + 1, updated_at=now, causes=causes)
            await self._store(actions, bumped, "repeated", publish_now=False)  # only the count changed
            return bumped, False
        alarm = Alarm(
            id=self._new_id(),
            site=self.site,
            rule_id=rule_id,
            subject=subject,
            kind=kind,
            severity=severity,
            message=message,
            state="raised",
            raised_at=now,
            updated_at=now,
            dedupe_key=key,
            audience=audience,
            evidence=dict(evidence or {}),
            data=dict(data or {}),
            causes=causes,
        )
        await self._store(actions, alarm, "raised")
        return alarm, True

    async def raised_by(self, dedupe_key: str, cause: str) -> Alarm | None:
        """The open alarm of ``dedupe_key`` if ``cause`` raised or bumped it (a replayed input)."""
        existing = await self.store.find_open(dedupe_key)
        return existing if existing is not None and cause in existing.causes else None

    async def acknowledge(
        self, actions: PlatformActions | None, alarm_id: str, *, by: str, now: float, note: str = ""
    ) -> Alarm:
        """Someone on duty acknowledged the alarm (the first acknowledgement stands)."""
        alarm = await self._open(alarm_id)
        if alarm.state == "acknowledged":
            return alarm
        acked = replace(alarm, state="acknowledged", acked_by=by, acked_at=now, ack_note=note or None, updated_at=now)
        await self._store(actions, acked, "acknowledged")
        return acked

    async def clear(
        self, actions: PlatformActions | None, alarm_id: str, *, by: str, now: float, reason: str = ""
    ) -> Alarm:
        """Clear (by a rule or by hand); removes the retained message."""
        alarm = await self._open(alarm_id)
        cleared = replace(
            alarm, state="cleared", cleared_by=by, cleared_at=now, clear_reason=reason or None, updated_at=now
        )
        await self._store(actions, cleared, "cleared")
        return cleared

    async def clear_for(
        self, actions: PlatformActions | None, rule_id: str, subject: str, *, by: str, now: float, reason: str = ""
    ) -> Alarm | None:
        """Clear the open alarm of ``rule_id`` for ``subject``, if there is one."""
        alarm = await self.store.find_open(default_dedupe_key(rule_id, subject))
        if alarm is None:
            return None
        return await self.clear(actions, alarm.id, by=by, now=now, reason=reason)

    async def escalate(self, actions: PlatformActions | None, alarm: Alarm, *, now: float) -> Alarm:
        """Nobody acknowledged in time: the alarm goes to the next contact."""
        escalated = replace(alarm, escalation_level=alarm.escalation_level + 1, escalated_at=now, updated_at=now)
        await self._store(actions, escalated, "escalated")
        return escalated

    async def publish(self, actions: PlatformActions, alarm: Alarm) -> None:
        """Publish ``alarm`` on the site's alarm topic: retained while open; a cleared one once, and the
        retained copy removed."""
        topic = alarm_topic(alarm.site, alarm.id)
        if alarm.active:
            await actions.publish(topic, alarm.to_json(), retain=True, qos=1)
        else:
            await actions.publish(topic, alarm.to_json(), retain=False, qos=1)
            await actions.publish(topic, "", retain=True, qos=1)

    async def _store(
        self, actions: PlatformActions | None, alarm: Alarm, event: str, *, publish_now: bool = True
    ) -> None:
        await self.store.put(alarm, event, publish=actions is None and publish_now)
        if actions is not None and publish_now:
            await self.publish(actions, alarm)
        self.on_change()

    async def _open(self, alarm_id: str) -> Alarm:
        alarm = await self.store.get(alarm_id)
        if alarm is None:
            raise AlarmError(alarm_id, "no such alarm", "alarm_not_found")
        if not alarm.active:
            raise AlarmError(alarm_id, "already cleared")
        return alarm
