"""Delivering the site's alarms: the outbox to MQTT and webhooks, escalation, and the desk the API uses.

The :class:`AlarmDispatcher` runs in the site's active worker. It takes each stored transition from
the outbox (:mod:`registry.alarm_store`): publishes the alarm on the site's alarm topic if nobody
has yet (a transition made through the API or the CLI), and turns it into one delivery per webhook
that wants it (per-site configuration, ``alarms.webhooks``). Deliveries are retried with exponential
backoff until they succeed or are ``alarms.delivery_max_age_s`` old, so a webhook receiver that is
down receives the alarm when it comes back, and nothing here ever waits inside the twin path or a
rule. It also escalates critical alarms nobody acknowledged to the next contact, republishes the
open alarms when it starts (a broker that lost its retained messages shows them again), and
forgets cleared alarms past their retention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import httpx

from anfang.config import AlarmSettings, WebhookSettings
from registry.alarm_store import DatabaseAlarmStore, Delivery
from registry.alarms import SEVERITIES, Alarm, AlarmManager, AlarmStoreError, OutboxEntry
from twins.hooks import PlatformActions

log = logging.getLogger(__name__)

__all__ = ["AlarmDispatcher", "PlatformAlarmDesk", "webhook_targets"]

MAX_BACKOFF_S = 30.0
_HOUSEKEEPING_S = 3600.0
_PARALLEL_DELIVERIES = 8


def webhook_targets(entry_event: str, alarm: Alarm, settings: AlarmSettings) -> list[str]:
    """The webhooks that want to hear of this transition (pure)."""
    if entry_event == "escalated":
        level = alarm.escalation_level
        contacts = settings.escalation_contacts
        return [contacts[level - 1]] if 0 < level <= len(contacts) else []
    rank = SEVERITIES.index(alarm.severity) if alarm.severity in SEVERITIES else 0
    return [
        w.name
        for w in settings.webhooks
        if entry_event in w.events
        and rank >= SEVERITIES.index(w.min_severity)
        and (not w.kinds or alarm.kind in w.kinds)
    ]


def backoff(attempts: int) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones."""
    return float(min(MAX_BACKOFF_S, 2.0 ** max(attempts - 1, 0)))


class AlarmDispatcher:
    """Drains a site's alarm outbox and webhook deliveries; escalates; until cancelled."""

    def __init__(
        self,
        store: DatabaseAlarmStore,
        manager: AlarmManager,
        settings: AlarmSettings,
        http: httpx.AsyncClient,
        *,
        poll_s: float = 1.0,
    ) -> None:
        self.store, self.manager, self.settings, self._http = store, manager, settings, http
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._webhooks: dict[str, WebhookSettings] = {w.name: w for w in settings.webhooks}
        self._next_housekeeping = 0.0
        self._last_error_log = 0.0
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        """Something was stored in this process: look at the outbox now rather than at the next poll."""
        self._wake.set()

    def watch(self, *managers: AlarmManager) -> None:
        """Be woken by every transition these managers make."""
        for m in managers:
            m.on_change = self.wake

    async def run(self, actions: PlatformActions) -> None:
        """Republish the open alarms, then deliver, escalate and tidy up until cancelled."""
        await self._guarded(self._republish_open(actions))
        while True:
            self._wake.clear()
            await self.step(actions)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def step(self, actions: PlatformActions) -> None:
        """One round at ``actions.now()``: hand over the outbox, make due deliveries, escalate."""
        now = actions.now()
        await self._guarded(self._drain_outbox(actions, now))
        await self._guarded(self._deliver_due(now))
        await self._guarded(self._escalate(actions, now))
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + _HOUSEKEEPING_S
            await self._guarded(self._housekeeping(now))

    async def _guarded(self, step: Awaitable[None]) -> None:
        """A database that is briefly away costs a round, never the dispatcher."""
        try:
            await step
        except* (AlarmStoreError, OSError) as group:
            if time.monotonic() - self._last_error_log > 30:
                self._last_error_log = time.monotonic()
                log.error("alarm delivery paused: %s (retrying)", group.exceptions[0])

    async def _republish_open(self, actions: PlatformActions) -> None:
        for alarm in await self.store.list(active_only=True, limit=10_000):
            await self.manager.publish(actions, alarm)

    async def _drain_outbox(self, actions: PlatformActions, now: float) -> None:
        # a page of entries with their alarms in one query and handed over in one transaction (was two
        # round trips and a commit per entry, competing with the ingest's commits in an alarm storm)
        while page := await self.store.outbox():
            handed: list[tuple[OutboxEntry, list[str]]] = []
            for entry, alarm in page:
                targets: list[str] = []
                if alarm is not None:
                    if entry.publish:
                        await self.manager.publish(actions, alarm)  # its current state, whatever came since
                    targets = webhook_targets(entry.event, alarm, self.settings)
                handed.append((entry, targets))
                if targets:
                    log.info("alarm %s %s: to %s", entry.alarm_id, entry.event, ", ".join(targets))
            await self.store.expand(handed, now)
            if len(page) < 200:
                return

    async def _deliver_due(self, now: float) -> None:
        due = await self.store.due(now)
        if not due:
            return
        gate = asyncio.Semaphore(_PARALLEL_DELIVERIES)

        async def one(d: Delivery) -> None:
            async with gate:
                await self._deliver(d, now)

        async with asyncio.TaskGroup() as tg:
            for d in due:
                tg.create_task(one(d), name=f"alarm-delivery-{d.id}")

    async def _deliver(self, d: Delivery, now: float) -> None:
        hook = self._webhooks.get(d.target)
        alarm = await self.store.get(d.alarm_id)
        if hook is None or alarm is None:
            await self.store.failed(d.id, now, "webhook no longer configured" if hook is None else "alarm gone")
            return
        body = {"event": d.event, "site": alarm.site, "contact": d.target, "alarm": alarm.to_json()}
        try:
            resp = await self._http.post(hook.url, json=body, headers=hook.headers, timeout=hook.timeout_s)
            error = None if resp.is_success else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        if error is None:
            await self.store.delivered(d.id, now)
            self.delivered += 1
            log.info("alarm %s %s delivered to %s", d.alarm_id, d.event, d.target)
        elif now - d.created_at >= self.settings.delivery_max_age_s:
            await self.store.failed(d.id, now, error)
            self.failed += 1
            log.error("alarm %s %s could not be delivered to %s: %s; given up", d.alarm_id, d.event, d.target, error)
        else:
            wait = backoff(d.attempts + 1)
            await self.store.retry_at(d.id, now + wait, error)
            log.warning(
                "alarm %s %s not delivered to %s (%s); retrying in %.0f s", d.alarm_id, d.event, d.target, error, wait
            )

    async def _escalate(self, actions: PlatformActions, now: float) -> None:
        if not self.settings.escalation_contacts:
            return
        after, top = self.settings.escalate_after_s, len(self.settings.escalation_contacts)
        for alarm in await self.store.unacknowledged("critical"):
            if alarm.escalation_level < top and now >= alarm.raised_at + (alarm.escalation_level + 1) * after:
                escalated = await self.manager.escalate(actions, alarm, now=now)
                log.warning(
                    "alarm %s (%s) not acknowledged within %.0f s: escalated to %s",
                    alarm.id,
                    alarm.kind,
                    (alarm.escalation_level + 1) * after,
                    self.settings.escalation_contacts[escalated.escalation_level - 1],
                )

    async def _housekeeping(self, now: float) -> None:
        await self.store.forget_deliveries(now - self.settings.delivery_max_age_s * 2)
        removed = await self.store.purge_cleared(now - self.settings.retention_days * 86400.0)
        if removed:
            log.info("alarms: %d cleared alarms past their retention removed", removed)


class PlatformAlarmDesk:
    """The alarm operations the HTTP API and the CLI offer, on the site's alarm system.

    A transition is published at once by the platform worker running in this process (``actions_of``);
    without one (a standby, the CLI) the site's active worker publishes it from the outbox.
    """

    def __init__(self, manager: AlarmManager, actions_of: Callable[[], PlatformActions | None]) -> None:
        self.manager, self._actions_of = manager, actions_of

    async def list(
        self,
        *,
        states: Sequence[str],
        kind: str | None,
        since: float | None,
        until: float | None,
        audiences: Sequence[str],
        limit: int,
    ) -> list[Alarm]:
        return await self.manager.store.list(
            states=states, kind=kind, since=since, until=until, audiences=audiences, limit=limit
        )

    async def get(self, alarm_id: str) -> Alarm | None:
        return await self.manager.store.get(alarm_id)

    async def acknowledge(self, alarm_id: str, *, by: str, note: str, now: float) -> Alarm:
        return await self.manager.acknowledge(self._actions_of(), alarm_id, by=by, now=now, note=note)

    async def clear(self, alarm_id: str, *, by: str, note: str, now: float) -> Alarm:
        return await self.manager.clear(self._actions_of(), alarm_id, by=by, now=now, reason=note)
