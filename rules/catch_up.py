"""The engine's input position, kept with its state, and the catch-up at start (issue 17 item 3).

A device event is acknowledged to the device once it is stored in ``device_events``; the rule state it
changes reaches the registry at the engine's next tick. So that a crash between the two loses nothing,
the tick writes, in the same transaction as the state (a ``memo|input|events`` entry of
``rule_timers``), the engine's :class:`InputMark`: the ``received_at`` of the last stored event it
has fully processed and the events of that instant it has processed (one ingest batch shares its
``received_at``, and batches are stored and dispatched in order). At start, before live inputs, the
engine is fed again the stored events after the mark (:func:`rules.db_events.events_after`), in order,
each judged at the time it was received (:class:`AtTime`), so the state is what it would have been.

A replayed event that had fired a rule before the crash fires it again only if the state that held it
back (a cooldown, an emptied window) was lost too; its alarm then sees the same cause
(:attr:`registry.alarms.Alarm.causes`) and is neither bumped nor announced again, and the rule's
actions after the ``raise_alarm`` are not run again (:mod:`rules.actions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twins.hooks import CommandResult, DeviceEvent, PlatformActions

#: The memo key of the mark in ``rule_timers``.
MARK_KEY = "memo|input|events"


def event_cause(device_id: str, event_id: str) -> str:
    """How an alarm names the stored event that fired it."""
    return f"event:{device_id}/{event_id}"


@dataclass
class InputMark:
    """How far the engine has processed the stored events: ``at`` and the ids processed at ``at``."""

    at: float | None = None
    ids: set[tuple[str, str]] = field(default_factory=set)

    def advance(self, event: DeviceEvent) -> None:
        """``event`` (a stored one) is fully processed."""
        if event.received_at is None:
            return
        at = float(event.received_at)
        if self.at is None or at > self.at:
            self.at, self.ids = at, {(event.device_id, event.id)}
        elif at == self.at:
            self.ids.add((event.device_id, event.id))
        # an older time (the wall clock stepped back): the mark stays; such an event is behind it anyway

    def begin(self, at: float) -> None:
        """Without a mark yet (a site's first start with it), the events stored before ``at`` count as done."""
        if self.at is None:
            self.at = at

    def covers(self, received_at: float, device_id: str, event_id: str) -> bool:
        """Was the stored event received at ``received_at`` processed already, as far as the mark tells?"""
        if self.at is None:
            return False
        return received_at < self.at or (received_at == self.at and (device_id, event_id) in self.ids)

    def encode(self) -> dict[str, Any]:
        return {"at": self.at, "ids": sorted([d, e] for d, e in self.ids)}

    @classmethod
    def decode(cls, value: Any) -> InputMark:
        doc = dict(value)
        at = doc.get("at")
        return cls(None if at is None else float(at), {(str(d), str(e)) for d, e in doc.get("ids", [])})


class AtTime:
    """The platform's actions with the clock set to when a replayed input was received."""

    def __init__(self, actions: PlatformActions, at: float) -> None:
        self.actions, self.at = actions, at

    def now(self) -> float:
        return self.at

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        return await self.actions.set_desired(device_id, patch)

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        return await self.actions.send_command(device_id, name, args, timeout)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        await self.actions.publish(topic, payload, retain=retain, qos=qos)

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None:
        await self.actions.report_virtual(device_id, state)
