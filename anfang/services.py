"""The services the platform feeds — rules engine, access control, vision, telemetry — built from settings.

Each service implements :class:`twins.hooks.PlatformHandler`. Small adapters here translate the
platform's synthetic events (``status``, ``telemetry``) into each service's own entry points, so the
services stay independent of one another and of the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import Metric
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.alarm_dispatch import AlarmDispatcher
from anfang.app import Services, community_services
from anfang.config import ConfigError, Settings
from anfang.readiness import Readiness
from anfang.site_setup import current_site, rules_plan
from community.api import CommunityServices
from community.handler import AccessConfig, AccessHandler, PlateImageReading
from community.records import Retention
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_connection
from registry.migrate import is_postgres
from registry.sql import DB_ERRORS
from registry.store import Registry, TwinStore
from rules.db_events import events_after
from rules.db_timers import DatabaseTimerStore
from rules.db_traces import DatabaseTraceStore
from rules.derive import StoredTwin
from rules.engine import RulesEngine
from rules.loader import load_rules
from rules.sinks import HttpxWebhookSender, JsonlAuditLog
from telemetry.config import settings_from_platform
from telemetry.factory import build_handler
from telemetry.handler import TelemetryHandler
from telemetry.metrics import PlatformMetrics, counter, gauge
from telemetry.sinks import SinkMisconfigured
from telemetry.vocabulary import ALARM_CLEARED, ALARM_RAISED
from twins.hooks import DeviceEvent, PlatformActions, PlatformHandler, TwinChange
from viewlib.uploader import open_uploader
from vision.service import VisionService

log = logging.getLogger(__name__)

DB_PROBE_INTERVAL_S = 5.0
TELEMETRY_WATCH_S = 10.0
REGISTERED_DEVICES_EVERY_S = 60.0


class TelemetryWatch:
    """Raises an alarm while the telemetry writer is stopped, dropping points or refused by the server's
    settings, and clears it once the writer is well again (one open alarm, bumped while it lasts)."""

    SUBJECT = "telemetry-writer"

    def __init__(self, telemetry: TelemetryHandler, alarms: AlarmManager) -> None:
        self.telemetry, self.alarms = telemetry, alarms
        self.raised = False

    async def check(self, actions: PlatformActions | None, now: float) -> None:
        health = self.telemetry.writer.health()
        if health.state in ("stopped", "dropping", "misconfigured"):
            await self.alarms.raise_alarm(
                actions, rule_id="platform", subject=self.SUBJECT, kind=f"telemetry_{health.state}",
                severity="high", message=f"telemetry writer {health.state}: {health.detail}", now=now,
            )  # fmt: skip
            self.raised = True
        elif self.raised:
            await self.alarms.clear_for(actions, "platform", self.SUBJECT, by="platform", now=now,
                                        reason=f"telemetry writer {health.state}")  # fmt: skip
            self.raised = False


BUILTIN_RULES = Path(__file__).resolve().parent.parent / "rules" / "builtin"


class RulesFeed:
    """Feeds the rules engine: device events, twin changes, and the platform's status/telemetry."""

    def __init__(self, engine: RulesEngine) -> None:
        self.engine = engine
        self.inputs = 0  # events, twin changes, status and telemetry handed to the engine
        #: Set once the engine has caught up on the stored events it had not processed (rules.catch_up):
        #: live inputs wait until then, so they come after those.
        self.caught_up = asyncio.Event()

    def metrics(self) -> Iterable[Metric]:
        """The rules engine on ``/metrics``."""
        yield counter("rule_inputs", "Events, twin changes, status and telemetry the rules engine evaluated.",
                      self.inputs)  # fmt: skip
        health = self.engine.health
        yield gauge("rules_loaded", "Rules running (including those kept at their last valid version).",
                    len(self.engine.rules))  # fmt: skip
        yield gauge("rule_file_problems", "Problems in rule files at the last load (one alarm per file).",
                    len(health.problems))  # fmt: skip
        yield gauge("rules_stale", "Rules kept at their last valid version because their file is invalid.",
                    len(health.stale))  # fmt: skip
        yield gauge("rules_faulted", "Rules that failed at run time since they were loaded (one alarm each).",
                    len(health.faults))  # fmt: skip
        yield counter("rule_faults", "Rule evaluations that failed at run time (each affects only that input).",
                      health.fault_total)  # fmt: skip
        yield counter("rule_reloads", "Reloads of edited rule files.", health.reloads)
        yield counter("rule_event_time_rejected", "Events stamped beyond rules_event_skew_s of the platform clock "
                      "(judged at the platform's time).", self.engine.clock.rejected)  # fmt: skip

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        await self.caught_up.wait()
        self.inputs += 1
        if event.type == "status":
            await self.engine.on_status(event.device_id, event.kind, str(event.data.get("state")), actions)
        elif event.type == "telemetry":
            await self.engine.on_telemetry(event.device_id, event.kind, event.data, actions)
        else:
            await self.engine.on_event(event, actions)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        await self.caught_up.wait()
        self.inputs += 1
        await self.engine.on_twin_change(change, actions)


class AccessFeed:
    """Feeds access control with device events (not the platform's status/telemetry)."""

    def __init__(self, access: AccessHandler, vision: VisionService) -> None:
        self.access, self.vision = access, vision  # vision: the recogniser access control uses

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        if event.type not in ("status", "telemetry"):
            await self.access.on_event(event, actions)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        await self.access.on_twin_change(change, actions)


class TelemetryFeed:
    """Feeds telemetry: charted events and twin changes, device status."""

    def __init__(self, telemetry: TelemetryHandler) -> None:
        self.telemetry = telemetry

    def record_telemetry(self, site: str, device_id: str, kind: str, ts: float, metrics: dict[str, float]) -> None:
        self.telemetry.record_telemetry(site, device_id, kind, ts, metrics)

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None:
        if event.type == "status":
            self.telemetry.record_status(
                event.site, event.device_id, event.kind, event.ts, event.data.get("state") == "online"
            )
        elif event.type != "telemetry":
            await self.telemetry.on_event(event, actions)

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None:
        await self.telemetry.on_twin_change(change, actions)

    def tap_alarm(self, topic: str, payload: dict[str, Any] | str) -> None:
        """Alarm transitions published on ``anfang/{site}/alarms/{id}`` become alarm points."""
        parts = topic.split("/")
        if len(parts) != 4 or parts[2] != "alarms" or not isinstance(payload, dict):
            return
        state = payload.get("state") or (ALARM_RAISED if payload.get("active", True) else ALARM_CLEARED)
        self.telemetry.record_alarm(
            parts[1],
            parts[3],
            str(payload.get("rule_id") or payload.get("rule") or "access"),
            str(payload.get("kind") or payload.get("type") or "unknown"),
            str(payload.get("severity", "medium")),
            str(state),
            float(payload.get("updated_at") or payload.get("ts") or payload.get("raised_at") or 0.0),
        )


def registry_connection(settings: Settings) -> BaseDBAsyncClient:
    """The registry database's connection, opened by ``open_registry`` before the services start."""
    return open_connection(settings.db_url)


@asynccontextmanager
async def open_services(
    settings: Settings,
    registry: Registry,
    access_registry: CommunityServices | None = None,
    alarms: AlarmManager | None = None,
    metrics: PlatformMetrics | None = None,
    readiness: Readiness | None = None,
) -> AsyncIterator[Services]:
    """Rules, access control, vision, telemetry and alarm delivery for the configured site.
    ``access_registry`` and ``alarms``: what the HTTP API uses too (one instance each per process), so a
    change made through the API reaches access decisions, and an alarm acknowledged there is delivered, at once.
    ``metrics``: the process's ``/metrics``, which these services add their counters to; ``readiness``:
    ``/readyz``, which learns whether telemetry can be delivered."""
    running = await current_site(settings, registry)
    model = running.model
    site = settings.site
    data = settings.data_dir
    async with AsyncExitStack() as stack:
        telemetry = build_handler(
            settings_from_platform(settings.telemetry, data),
            site=site,
            tag_groups={t.id: t.group for t in model.tags},
            origin=(model.origin.lat, model.origin.lon) if model.origin else None,
        )
        try:
            await stack.enter_async_context(telemetry)
        except SinkMisconfigured as exc:
            raise ConfigError(f"telemetry: {exc}") from None
        keep = settings.privacy
        retention = Retention(
            keep.captures_days, keep.decisions_days, keep.audit_days, keep.passes_days,
            keep.strangers_days, keep.location_days, (settings.data_dir / "rule-audit.jsonl",), keep.events_days,
        )  # fmt: skip
        access_config = AccessConfig(
            site=site, face_threshold=settings.vision.face_threshold, retention=retention,
            purge_interval=keep.purge_interval_s,
        )  # fmt: skip
        # one pending recognition per access worker (and one spare), so a burst never overflows the pool
        vision = await stack.enter_async_context(VisionService(max_pending=access_config.workers + 1))

        async def read_plate_image(image: bytes) -> PlateImageReading | None:
            reading = await vision.read_plate(image)
            return None if reading is None else (reading.plate or reading.text, reading.score, reading.char_scores)

        telemetry_feed = TelemetryFeed(telemetry)

        people = access_registry or community_services(settings)
        plan = await rules_plan(running, registry, people.store)
        rules_path = settings.rules_dir or BUILTIN_RULES
        loaded = load_rules(rules_path, plan)
        # timers and alarms live in the registry database, so the worker that takes over the site (the
        # lease is held by now) carries on with them, whichever host and data directory it has
        db = registry_connection(settings)
        timers = await DatabaseTimerStore.open(db, site)
        http = await stack.enter_async_context(httpx.AsyncClient())
        alarm_store = DatabaseAlarmStore(db, site)
        alarms = alarms or AlarmManager(site, alarm_store)
        engine = RulesEngine(
            loaded.rules,
            plan,
            alarm_store=alarm_store,
            timer_store=timers,
            webhooks=HttpxWebhookSender(http),
            audit=JsonlAuditLog(data / "rule-audit.jsonl"),
            rules_path=rules_path,
            observer=lambda firing: telemetry.record_rule_firing(site, firing.rule_id, firing.ts),
            problems=loaded.diagnostics,  # logged by the engine, raised as an alarm per file at its first tick
            trace_store=DatabaseTraceStore(db, site),  # GET /rules/{id}/traces from any process of the site
            max_event_skew=settings.rules_event_skew_s,
        )
        # the stored twins: conditions see them at once, and a `for` timer lost in a crash is re-derived
        stored = await TwinStore(db, is_postgres(settings.db_url)).load_all()
        engine.restore_twins(
            [
                StoredTwin(t.device_id, t.kind, dict(t.reported), dict(t.metadata.reported))
                for t in stored
                if t.site == site
            ]
        )
        del stored  # this generator lives as long as the platform: its locals would hold every document
        log.info("rules: %d loaded from %s, %d problems", len(loaded.rules), rules_path, len(loaded.diagnostics))
        for rule_id, why in loaded.not_applicable:
            log.info("rules: %s is not applicable to site %s: %s", rule_id, site, why)
        dispatcher = AlarmDispatcher(alarm_store, alarms, settings.alarms, http)
        dispatcher.watch(alarms, engine.alarms)

        taps: list[Callable[[DeviceEvent], None]] = []

        rules_feed = RulesFeed(engine)

        async def platform_event(event: DeviceEvent) -> None:
            """Access control's own events (decisions, watchlist matches) go to rules and telemetry."""
            await rules_feed.caught_up.wait()
            if engine.actions is not None:
                await engine.on_event(event, engine.actions)
            telemetry.handle_event(event)
            for tap in taps:
                tap(event)

        access = AccessHandler(
            people.store,
            people.records,
            access_config,
            embed_image=vision.embed_face,
            read_plate_image=read_plate_image,
            on_platform_event=platform_event,
            alarms=alarms,
        )

        async def run_rules(actions: PlatformActions) -> None:
            # the stored events the engine had not fully processed when the site's last engine stopped
            # (its state is written once a tick), before any live input: nothing acknowledged is lost
            engine.start(actions.now())
            try:
                missed = await events_after(db, site, engine.input_mark, actions.now())
                fed = await engine.catch_up(missed, actions)
                if fed:
                    log.info("rules: caught up on %d stored event(s) after the input mark", fed)
            except DB_ERRORS as exc:  # the rules run on; what the lost state held is lost, as before
                log.error("rules: stored events after the input mark not read: %s", exc)
            # a site without a mark starts it here; written (with what the catch-up changed) before live inputs
            engine.input_mark.begin(actions.now())
            await engine.tick(actions.now(), actions)
            rules_feed.caught_up.set()
            await engine.run(actions)

        async def watch_registered_devices(actions: PlatformActions) -> None:
            while True:  # devices provisioned while the platform runs join the silence rules
                await asyncio.sleep(REGISTERED_DEVICES_EVERY_S)
                try:  # no local holds the list: it would keep every device's record until the next round
                    engine.register_devices(await registry.list_devices(site), actions.now())
                except Exception as exc:  # the database may be away: the next round retries
                    log.warning("rules: registered devices not read or not registered: %s", exc)

        async def run_access(actions: PlatformActions) -> None:
            await access.run()

        async def deliver_alarms(actions: PlatformActions) -> None:
            await dispatcher.run(actions)

        async def warm_up_vision(actions: PlatformActions) -> None:
            await vision.warm_up()  # load the models now, not on the first capture

        if readiness is not None:
            stack.enter_context(readiness.extra_check("telemetry", telemetry.writer.readiness))
        watch = TelemetryWatch(telemetry, alarms)

        async def watch_telemetry(actions: PlatformActions) -> None:
            while True:
                await asyncio.sleep(TELEMETRY_WATCH_S)
                await watch.check(actions, actions.now())

        tasks: list[Callable[[PlatformActions], Coroutine[Any, Any, None]]] = [
            watch_telemetry,
            run_rules,
            watch_registered_devices,
            run_access,
            deliver_alarms,
            warm_up_vision,
        ]
        if metrics is not None:
            stack.enter_context(metrics.source(telemetry.metrics))
            stack.enter_context(metrics.source(rules_feed.metrics))

            async def time_database(actions: PlatformActions) -> None:
                while True:  # a trivial query's round trip, every few seconds, for /metrics
                    done = metrics.time_database()
                    with contextlib.suppress(Exception):  # an outage shows on /readyz; here only latency counts
                        await db.execute_query("SELECT 1")
                        done()
                    await asyncio.sleep(DB_PROBE_INTERVAL_S)

            tasks.append(time_database)
        handlers: list[PlatformHandler] = [rules_feed, AccessFeed(access, vision), telemetry_feed]
        features = ["twins", "rules", "access", "vision", "telemetry"]
        if settings.viewlib.enabled:
            # captures reach it on a dispatch queue of its own: access decisions never wait for an upload
            uploader = await stack.enter_async_context(open_uploader(settings.viewlib, db, site, people.store.cipher))
            handlers.append(uploader)
            features.append("viewlib")

            async def upload_captures(actions: PlatformActions) -> None:
                await uploader.run()

            tasks.append(upload_captures)
            if metrics is not None:
                stack.enter_context(metrics.source(uploader.metrics))
        yield Services(
            handlers=handlers,
            tasks=tasks,
            features=features,
            health_sinks=[telemetry.record_health],
            publish_taps=[telemetry_feed.tap_alarm],
            platform_event_taps=taps,
        )
