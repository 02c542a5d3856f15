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

Deciding whether a rule's alarm is raised, bumped or cleared needs to know the open alarm of its
dedupe key. :class:`OpenAlarms` answers that from memory (a device coming online must not cost a
query to learn that it has no open alarm to clear), and every write is conditional on the decision
still holding in the database (:meth:`AlarmStore.write`), so several processes of one site stay
correct; see :class:`OpenAlarms` for how.
"""

from __future__ import annotations

import asyncio
import json
import time
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
    "OpenAlarms",
    "OutboxEntry",
    "StoredAlarm",
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


#: How often (seconds) a process re-reads which alarm keys are open (:class:`OpenAlarms`).
OPEN_KEYS_REFRESH_S = 2.0
#: How many times a transition is decided again after another process changed the alarm meanwhile.
_ATTEMPTS = 5

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
class StoredAlarm:
    """An alarm as the store holds it; ``doc`` (the stored document) is the version a conditional
    write checks (:meth:`AlarmStore.write`)."""

    alarm: Alarm
    doc: str


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

    async def write(
        self, alarm: Alarm, event: str, *, publish: bool, previous: StoredAlarm | None, durable: bool = True
    ) -> StoredAlarm | None:
        """Store the alarm and an outbox entry for ``event`` if the decision still holds: with
        ``previous`` None, if no alarm of its dedupe key is open; else if the stored alarm is still
        ``previous``. Returns what was stored, ``None`` if another process changed it first.
        ``durable=False``: the commit need not wait for the disk (a worker's own transition, which a
        later commit makes durable)."""
        ...

    async def get(self, alarm_id: str) -> Alarm | None: ...

    async def get_stored(self, alarm_id: str) -> StoredAlarm | None: ...

    async def find_open(self, dedupe_key: str) -> Alarm | None: ...

    async def find_open_stored(self, dedupe_key: str) -> StoredAlarm | None: ...

    async def open_keys(self) -> set[str]:
        """The dedupe keys of the site's open alarms."""
        ...

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

    async def write(
        self, alarm: Alarm, event: str, *, publish: bool, previous: StoredAlarm | None, durable: bool = True
    ) -> StoredAlarm | None:
        if previous is None:
            if await self.find_open(alarm.dedupe_key) is not None:
                return None
        elif self._alarms.get(alarm.id) != previous.alarm:
            return None
        await self.put(alarm, event, publish=publish)
        return _stored(alarm)

    async def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    async def get_stored(self, alarm_id: str) -> StoredAlarm | None:
        alarm = self._alarms.get(alarm_id)
        return None if alarm is None else _stored(alarm)

    async def find_open(self, dedupe_key: str) -> Alarm | None:
        return next((a for a in self._alarms.values() if a.dedupe_key == dedupe_key and a.active), None)

    async def find_open_stored(self, dedupe_key: str) -> StoredAlarm | None:
        alarm = await self.find_open(dedupe_key)
        return None if alarm is None else _stored(alarm)

    async def open_keys(self) -> set[str]:
        return {a.dedupe_key for a in self._alarms.values() if a.active}

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


def _stored(alarm: Alarm) -> StoredAlarm:
    return StoredAlarm(alarm, json.dumps(alarm.to_json(), ensure_ascii=False, default=str))


class OpenAlarms:
    """What this process knows of its site's open alarms, by dedupe key, so that deciding to raise,
    bump or clear an alarm costs no query on the hot path (a device coming online clears its
    ``device-offline`` alarm, if it has one).

    Several processes serve one site (every partition owner raises alarms for its own devices, the
    HTTP API of any process acknowledges and clears), so the index is a guess, and each kind of guess
    is checked where it could do harm:

    * **which keys are open** is read from the database in one index-only query
      (:meth:`AlarmStore.open_keys`), again whenever it is older than ``refresh_s``; this process's own
      writes update it at once. A key not in it is taken to have no open alarm: a raise on it is a
      write conditional on no alarm of the key being open, so an alarm another process raised
      meanwhile is found by that write and bumped, never doubled; a ``clear_for`` of it does nothing.
      That one can be wrong for at most ``refresh_s``, and only for an alarm another process raised
      for a subject this process clears: with partition owners, a device that moved between workers
      twice within ``refresh_s``.
    * **an open alarm's document** (held once read or written here) is the version every transition
      is conditional on (:meth:`AlarmStore.write`: the stored document must still be that one). An
      acknowledgement, clear or bump made by another process makes the write fail; the key is read
      again and the transition decided on what is stored. So a clear made elsewhere is seen by the
      next decision that would act on the alarm, and a replay check (:meth:`AlarmManager.raised_by`)
      that would skip actions confirms an open alarm's causes from the store.
    """

    def __init__(
        self, store: AlarmStore, refresh_s: float = OPEN_KEYS_REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store, self.refresh_s, self._clock = store, refresh_s, clock
        self._open: dict[str, StoredAlarm | None] = {}  # open keys; None: open, its document not read here
        self._read_at: float | None = None
        self.reads = 0  # queries made (key lists and documents), for tests and health

    async def find(self, key: str) -> StoredAlarm | None:
        """The open alarm of ``key`` as far as this process knows (``None``: none open)."""
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self.refresh_s:
            self.reads += 1
            keys = await self.store.open_keys()
            self._open = {k: self._open.get(k) for k in keys}
            self._read_at = now
        if key not in self._open:
            return None
        found = self._open[key]
        return found if found is not None else await self.reload(key)

    async def reload(self, key: str) -> StoredAlarm | None:
        """The open alarm of ``key`` as the store has it now."""
        self.reads += 1
        found = await self.store.find_open_stored(key)
        self.note(key, found)
        return found

    def note(self, key: str, stored: StoredAlarm | None) -> None:
        """``stored`` is what the store holds now for ``key`` (``None``: nothing open)."""
        if stored is not None and stored.alarm.active:
            self._open[key] = stored
        else:
            self._open.pop(key, None)

    def forget(self, key: str) -> None:
        """The alarm of ``key`` changed without a conditional write: read it again when next needed."""
        if key in self._open:
            self._open[key] = None


class AlarmManager:
    """Applies lifecycle transitions, stores them (with their outbox entry) and publishes them.

    Every method takes the platform's actions to publish at once; ``None`` (the HTTP API or the CLI,
    possibly in another process) leaves publishing to the dispatcher of the site's active worker.
    Transitions of one manager are made one at a time, each decided on :class:`OpenAlarms` and
    written only if the decision still holds in the store (decided again if not).
    """

    def __init__(self, site: str, store: AlarmStore, new_id: Callable[[], str] | None = None) -> None:
        self.site = site
        self.store = store
        self.open = OpenAlarms(store)
        self._new_id = new_id or (lambda: uuid.uuid4().hex)
        self._lock = asyncio.Lock()  # one decision and its write at a time: the index stays what was stored
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
        async with self._lock:
            existing = await self.open.find(key)
            if existing is not None and cause and cause in existing.alarm.causes:
                existing = await self.open.reload(key)  # a replay is decided on the store's copy
            for _ in range(_ATTEMPTS):
                if existing is not None and cause and cause in existing.alarm.causes:
                    return existing.alarm, False
                if existing is not None:
                    old = existing.alarm
                    causes = (old.causes + ([cause] if cause else []))[-KEEP_CAUSES:]
                    bumped = replace(old, count=old.count + 1, updated_at=now, causes=causes)
                    # only the count changed: not published at once
                    if await self._write(actions, bumped, "repeated", existing, publish_now=False):
                        return bumped, False
                else:
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
                        causes=[cause] if cause else [],
                    )
                    if await self._write(actions, alarm, "raised", None):
                        return alarm, True
                existing = await self.open.reload(key)  # another process changed it: decide on what is stored
        raise AlarmStoreError(f"alarms of site {self.site}", f"alarm {key} kept changing under this process")

    async def raised_by(self, dedupe_key: str, cause: str) -> Alarm | None:
        """The open alarm of ``dedupe_key`` if ``cause`` raised or bumped it (a replayed input)."""
        async with self._lock:
            if await self.open.find(dedupe_key) is None:
                return None
            # skipping a rule's actions is decided on the store's copy, not a possibly older one
            existing = await self.open.reload(dedupe_key)
        return existing.alarm if existing is not None and cause in existing.alarm.causes else None

    async def acknowledge(
        self, actions: PlatformActions | None, alarm_id: str, *, by: str, now: float, note: str = ""
    ) -> Alarm:
        """Someone on duty acknowledged the alarm (the first acknowledgement stands)."""
        async with self._lock:
            for _ in range(_ATTEMPTS):
                stored = await self._open_alarm(alarm_id)
                alarm = stored.alarm
                if alarm.state == "acknowledged":
                    return alarm
                acked = replace(
                    alarm, state="acknowledged", acked_by=by, acked_at=now, ack_note=note or None, updated_at=now
                )
                if await self._write(actions, acked, "acknowledged", stored):
                    return acked
        raise AlarmStoreError(f"alarms of site {self.site}", f"alarm {alarm_id} kept changing under this process")

    async def clear(
        self, actions: PlatformActions | None, alarm_id: str, *, by: str, now: float, reason: str = ""
    ) -> Alarm:
        """Clear (by a rule or by hand); removes the retained message."""
        async with self._lock:
            for _ in range(_ATTEMPTS):
                stored = await self._open_alarm(alarm_id)
                cleared = _cleared(stored.alarm, by, now, reason)
                if await self._write(actions, cleared, "cleared", stored):
                    return cleared
        raise AlarmStoreError(f"alarms of site {self.site}", f"alarm {alarm_id} kept changing under this process")

    async def clear_for(
        self, actions: PlatformActions | None, rule_id: str, subject: str, *, by: str, now: float, reason: str = ""
    ) -> Alarm | None:
        """Clear the open alarm of ``rule_id`` for ``subject``, if there is one."""
        key = default_dedupe_key(rule_id, subject)
        async with self._lock:
            found = await self.open.find(key)
            for _ in range(_ATTEMPTS):
                if found is None:
                    return None
                cleared = _cleared(found.alarm, by, now, reason)
                if await self._write(actions, cleared, "cleared", found):
                    return cleared
                found = await self.open.reload(key)  # acknowledged, bumped or cleared elsewhere meanwhile
        raise AlarmStoreError(f"alarms of site {self.site}", f"alarm {key} kept changing under this process")

    async def escalate(self, actions: PlatformActions | None, alarm: Alarm, *, now: float) -> Alarm:
        """Nobody acknowledged in time: the alarm goes to the next contact."""
        escalated = replace(alarm, escalation_level=alarm.escalation_level + 1, escalated_at=now, updated_at=now)
        async with self._lock:
            await self.store.put(escalated, "escalated", publish=actions is None)
            self.open.forget(escalated.dedupe_key)
            if actions is not None:
                await self.publish(actions, escalated)
            self.on_change()
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

    async def _write(
        self,
        actions: PlatformActions | None,
        alarm: Alarm,
        event: str,
        previous: StoredAlarm | None,
        *,
        publish_now: bool = True,
    ) -> bool:
        """Store a transition decided on ``previous`` if it still holds; publish it; ``False`` if not."""
        # a worker's transition (actions given) need not wait for the disk: see DatabaseAlarmStore.write
        stored = await self.store.write(
            alarm, event, publish=actions is None and publish_now, previous=previous, durable=actions is None
        )
        if stored is None:
            return False
        self.open.note(alarm.dedupe_key, stored)
        if actions is not None and publish_now:
            await self.publish(actions, alarm)
        self.on_change()
        return True

    async def _open_alarm(self, alarm_id: str) -> StoredAlarm:
        stored = await self.store.get_stored(alarm_id)
        if stored is None:
            raise AlarmError(alarm_id, "no such alarm", "alarm_not_found")
        if not stored.alarm.active:
            self.open.forget(stored.alarm.dedupe_key)  # cleared elsewhere: what is open is read again
            raise AlarmError(alarm_id, "already cleared")
        return stored


def _cleared(alarm: Alarm, by: str, now: float, reason: str) -> Alarm:
    return replace(alarm, state="cleared", cleared_by=by, cleared_at=now, clear_reason=reason or None, updated_at=now)
