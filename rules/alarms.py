"""Alarm lifecycle: raised (deduplicated per rule + subject) → acknowledged → cleared.

Every transition is stored (an :class:`AlarmStore`; the platform's is
:class:`rules.db_alarms.DatabaseAlarmStore`, in the registry database) and published on
``anfang/{site}/alarms/{id}``: retained while active; on clear the cleared document is published
non-retained and then an empty retained payload removes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

from twins.hooks import PlatformActions
from twins.topics import alarm_topic

ACTIVE_STATES = ("active", "acknowledged")


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm and where it is in its lifecycle."""

    id: str
    site: str
    rule_id: str
    subject: str
    kind: str
    severity: str
    message: str
    state: str  # active | acknowledged | cleared
    raised_at: float
    updated_at: float
    count: int = 1
    acked_by: str | None = None
    acked_at: float | None = None
    cleared_by: str | None = None
    cleared_at: float | None = None
    clear_reason: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Not yet cleared."""
        return self.state in ACTIVE_STATES

    def to_json(self) -> dict[str, Any]:
        """The document published on the alarm topic."""
        return asdict(self)


class AlarmError(Exception):
    """An alarm operation was not possible (unknown id, already cleared)."""

    def __init__(self, alarm_id: str, message: str) -> None:
        super().__init__(f"alarm {alarm_id}: {message}")
        self.alarm_id = alarm_id
        self.message = message


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

    async def put(self, alarm: Alarm) -> None: ...

    async def get(self, alarm_id: str) -> Alarm | None: ...

    async def find_active(self, rule_id: str, subject: str) -> Alarm | None: ...

    async def list(self, *, active_only: bool = False, limit: int = 1000) -> list[Alarm]: ...


class InMemoryAlarmStore:
    """Alarms in a dict."""

    def __init__(self) -> None:
        self._alarms: dict[str, Alarm] = {}

    async def put(self, alarm: Alarm) -> None:
        self._alarms[alarm.id] = alarm

    async def get(self, alarm_id: str) -> Alarm | None:
        return self._alarms.get(alarm_id)

    async def find_active(self, rule_id: str, subject: str) -> Alarm | None:
        for a in self._alarms.values():
            if a.rule_id == rule_id and a.subject == subject and a.active:
                return a
        return None

    async def list(self, *, active_only: bool = False, limit: int = 1000) -> list[Alarm]:
        items = [a for a in self._alarms.values() if a.active or not active_only]
        return sorted(items, key=lambda a: a.raised_at)[-limit:]


class AlarmManager:
    """Applies lifecycle transitions, stores them and publishes them."""

    def __init__(self, site: str, store: AlarmStore, new_id: Callable[[], str] | None = None) -> None:
        self.site = site
        self.store = store
        self._new_id = new_id or (lambda: uuid.uuid4().hex)

    async def raise_alarm(
        self,
        actions: PlatformActions,
        *,
        rule_id: str,
        subject: str,
        kind: str,
        severity: str,
        message: str,
        now: float,
        data: dict[str, Any] | None = None,
    ) -> tuple[Alarm, bool]:
        """Open an alarm; returns ``(alarm, created)``; an active one for rule+subject is reused."""
        existing = await self.store.find_active(rule_id, subject)
        if existing is not None:
            bumped = replace(existing, count=existing.count + 1, updated_at=now)
            await self.store.put(bumped)
            return bumped, False
        alarm = Alarm(
            id=self._new_id(),
            site=self.site,
            rule_id=rule_id,
            subject=subject,
            kind=kind,
            severity=severity,
            message=message,
            state="active",
            raised_at=now,
            updated_at=now,
            data=dict(data or {}),
        )
        await self.store.put(alarm)
        await actions.publish(alarm_topic(self.site, alarm.id), alarm.to_json(), retain=True, qos=1)
        return alarm, True

    async def acknowledge(self, actions: PlatformActions, alarm_id: str, *, by: str, now: float) -> Alarm:
        """An operator acknowledged the alarm."""
        alarm = await self._active(alarm_id)
        acked = replace(alarm, state="acknowledged", acked_by=by, acked_at=now, updated_at=now)
        await self.store.put(acked)
        await actions.publish(alarm_topic(self.site, alarm_id), acked.to_json(), retain=True, qos=1)
        return acked

    async def clear(self, actions: PlatformActions, alarm_id: str, *, by: str, now: float, reason: str = "") -> Alarm:
        """Clear (by a rule or by hand); removes the retained message."""
        alarm = await self._active(alarm_id)
        cleared = replace(alarm, state="cleared", cleared_by=by, cleared_at=now, clear_reason=reason, updated_at=now)
        await self.store.put(cleared)
        topic = alarm_topic(self.site, alarm_id)
        await actions.publish(topic, cleared.to_json(), retain=False, qos=1)
        await actions.publish(topic, "", retain=True, qos=1)
        return cleared

    async def clear_for(
        self, actions: PlatformActions, rule_id: str, subject: str, *, by: str, now: float, reason: str = ""
    ) -> Alarm | None:
        """Clear the active alarm of ``rule_id`` for ``subject``, if there is one."""
        alarm = await self.store.find_active(rule_id, subject)
        if alarm is None:
            return None
        return await self.clear(actions, alarm.id, by=by, now=now, reason=reason)

    async def _active(self, alarm_id: str) -> Alarm:
        alarm = await self.store.get(alarm_id)
        if alarm is None:
            raise AlarmError(alarm_id, "no such alarm")
        if not alarm.active:
            raise AlarmError(alarm_id, "already cleared")
        return alarm
