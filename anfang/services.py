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
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from prometheus_client.core import Metric
from tortoise.backends.base.client import BaseDBAsyncClient

from anfang.alarm_dispatch import AlarmDispatcher
from anfang.app import Services, community_services
from anfang.config import ConfigError, Settings
from anfang.feed import FeedWriter, platform_stream
from anfang.readiness import Readiness
from anfang.site_setup import current_site, rules_plan
from community.api import CommunityServices
from community.credential_limits import CredentialLimitStore
from community.handler import AccessConfig, AccessHandler, PlateImageReading
from community.records import Retention
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import open_connection
from registry.migrate import is_postgres
from registry.sql import DB_ERRORS, Sql
from registry.store import Registry, TwinStore
from rules.db_events import events_after
from rules.db_timers import DatabaseTimerStore
from rules.db_traces import DatabaseTraceStore
from rules.derive import StoredTwin
from rules.engine import RulesEngine
from rules.loader import load_rules
from rules.routing import Ownership
from rules.sinks import HttpxWebhookSender, JsonlAuditLog
from telemetry.config import settings_from_platform
from telemetry.factory import build_handler
from telemetry.handler import TelemetryHandler
from telemetry.metrics import PlatformMetrics, counter, gauge, labelled_counter
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


T = TypeVar("T")


class ProcessShared:
    """What one process builds once and lends to every partition it serves (several workers per site):
    the vision models, the telemetry writer and its spool, the HTTP client, the rules' metrics by
    partition, and the per-process duties (``/metrics`` sources, warming the models up) claimed once."""

    def __init__(self) -> None:
        self.stack = AsyncExitStack()
        self._made: dict[str, Any] = {}
        self._claimed: set[str] = set()
        self._lock = asyncio.Lock()
        #: The rules feed of each partition this process serves now (``/metrics``: one source for all).
        self.rules_feeds: dict[int, RulesFeed] = {}

    async def __aenter__(self) -> ProcessShared:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stack.aclose()

    async def get(self, name: str, make: Callable[[], AbstractAsyncContextManager[T]]) -> T:
        """The process's one ``name``, entered (for the process's lifetime) the first time it is asked for."""
        async with self._lock:
            if name not in self._made:
                self._made[name] = await self.stack.enter_async_context(make())
            return self._made[name]  # type: ignore[no-any-return]  # stored by this method under its name

    def claim(self, duty: str) -> bool:
        """True the first time a duty is claimed in this process (then it is the caller's)."""
        if duty in self._claimed:
            return False
        self._claimed.add(duty)
        return True

    def rules_metrics(self) -> Iterable[Metric]:
        """The rules engines of this process on ``/metrics``; by partition when the site has several."""
        feeds = sorted(self.rules_feeds.items())
        if len(feeds) == 1 and feeds[0][1].engine.ownership.single:
            yield from feeds[0][1].metrics()
            return
        yield labelled_counter("rule_inputs", RulesFeed.INPUTS_DOC, ["partition"],
                               [((str(p), ), float(f.inputs)) for p, f in feeds])  # fmt: skip
        yield labelled_counter("rule_forwarded", "Inputs forwarded to the owners of the entities rules key them "
                               "on, by writing partition.", ["partition"],
                               [((str(p), ), float(f.engine.forwarded)) for p, f in feeds])  # fmt: skip
        for family in _summed([list(f.metrics()) for _, f in feeds]):
            if family.name != "anfang_rule_inputs":
                yield family


def _summed(per_feed: list[list[Metric]]) -> Iterable[Metric]:
    """Families of the same name across partitions: counters added, gauges (the same rule files in every
    partition's engine) their largest value."""
    if not per_feed:
        return
    for i, family in enumerate(per_feed[0]):
        values = [feed[i].samples[0].value for feed in per_feed if feed[i].samples]
        name = family.name.removeprefix("anfang_")
        if family.type == "counter":
            yield counter(name, family.documentation, sum(values))
        else:
            yield gauge(name, family.documentation, max(values, default=0.0))


class RulesFeed:
    """Feeds the rules engine: device events, twin changes, and the platform's status/telemetry."""

    INPUTS_DOC = "Events, twin changes, status and telemetry the rules engine evaluated."

    def __init__(self, engine: RulesEngine) -> None:
        self.engine = engine
        self.inputs = 0  # events, twin changes, status and telemetry handed to the engine
        #: Set once the engine has caught up on the stored events it had not processed (rules.catch_up):
        #: live inputs wait until then, so they come after those.
        self.caught_up = asyncio.Event()

    def metrics(self) -> Iterable[Metric]:
        """The rules engine on ``/metrics``."""
        yield counter("rule_inputs", self.INPUTS_DOC, self.inputs)
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
    *,
    part: int = 0,
    partitions: int = 1,
    shared: ProcessShared | None = None,
) -> AsyncIterator[Services]:
    """Rules, access control, vision, telemetry and alarm delivery for the configured site.
    ``access_registry`` and ``alarms``: what the HTTP API uses too (one instance each per process), so a
    change made through the API reaches access decisions, and an alarm acknowledged there is delivered, at once.
    ``metrics``: the process's ``/metrics``, which these services add their counters to; ``readiness``:
    ``/readyz``, which learns whether telemetry can be delivered.

    With several workers per site (``partitions`` > 1) each partition's owner opens these for partition
    ``part``: its rules engine evaluates the entities the partition owns (:mod:`rules.routing`), access
    control and telemetry take its own devices; ``shared`` holds what the process builds once for all the
    partitions it serves. Site-wide duties (alarm delivery, the telemetry watch, retention purges, the
    viewlib uploader, the features announcement) run with partition 0 only."""
    running = await current_site(settings, registry)
    model = running.model
    site = settings.site
    data = settings.data_dir
    singleton = part == 0  # the site-wide duties' partition (the only one of a one-partition site)
    async with AsyncExitStack() as stack:
        if shared is None:
            shared = await stack.enter_async_context(ProcessShared())

        @asynccontextmanager
        async def open_telemetry() -> AsyncIterator[TelemetryHandler]:
            handler = build_handler(
                settings_from_platform(settings.telemetry, data),
                site=site,
                tag_groups={t.id: t.group for t in model.tags},
                origin=(model.origin.lat, model.origin.lon) if model.origin else None,
            )
            try:
                async with handler:
                    yield handler
            except SinkMisconfigured as exc:
                raise ConfigError(f"telemetry: {exc}") from None

        telemetry = await shared.get("telemetry", open_telemetry)
        keep = settings.privacy
        retention = Retention(
            keep.captures_days, keep.decisions_days, keep.audit_days, keep.passes_days,
            keep.strangers_days, keep.location_days, (settings.data_dir / "rule-audit.jsonl",), keep.events_days,
        )  # fmt: skip
        access_config = AccessConfig(
            site=site, face_threshold=settings.vision.face_threshold, retention=retention,
            purge_interval=keep.purge_interval_s, purge=singleton,
        )  # fmt: skip
        # one pending recognition per access worker (and one spare), so a burst never overflows the pool
        vision = await shared.get("vision", lambda: VisionService(max_pending=access_config.workers + 1))

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
        timers = await DatabaseTimerStore.open(db, site, part)  # the partition's own state
        http = await shared.get("http", httpx.AsyncClient)
        alarm_store = DatabaseAlarmStore(db, site)
        alarms = alarms or AlarmManager(site, alarm_store)
        virtual = {d.id for d in await registry.list_devices(site) if d.virtual} if partitions > 1 else set()
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
            ownership=Ownership(part, partitions, virtual),
        )
        # the stored twins: conditions see them at once, and a `for` timer lost in a crash is re-derived
        twin_store = TwinStore(db, is_postgres(settings.db_url))
        stored = await twin_store.load_all()
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
        # access control's own events go to the owners of the entities rules key them on, in order
        platform_out = (
            await FeedWriter.open(twin_store, site, platform_stream(part), partitions, engine.forward_targets)
            if partitions > 1
            else None
        )

        async def platform_event(event: DeviceEvent) -> None:
            """Access control's own events (decisions, watchlist matches) go to rules and telemetry."""
            await rules_feed.caught_up.wait()
            if engine.actions is not None:
                await engine.on_event(event, engine.actions)
            if platform_out is not None:
                try:
                    await platform_out.write(twin_store, [event])
                except DB_ERRORS as exc:  # the decision stands; the other owners' rules miss this one
                    log.error("access event %s not forwarded to the owners of its rules: %s", event.id, exc)
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
            # each owner decides for its own doors: one credential's refusals are counted site-wide
            credential_limits=CredentialLimitStore(Sql(db), site, access_config.limits) if partitions > 1 else None,
        )

        async def run_rules(actions: PlatformActions) -> None:
            # the stored events the engine had not fully processed when the site's last engine stopped
            # (its state is written once a tick), before any live input: nothing acknowledged is lost
            engine.start(actions.now())
            try:
                missed = await events_after(db, site, engine.input_mark, actions.now())
                # this partition's devices' events, and those forwarded to it
                fed = await engine.catch_up([e for e in missed if engine.needs(e)], actions)
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

        first_in_process = shared.claim("process-duties")
        if readiness is not None and first_in_process:
            shared.stack.enter_context(readiness.extra_check("telemetry", telemetry.writer.readiness))
        watch = TelemetryWatch(telemetry, alarms)

        async def watch_telemetry(actions: PlatformActions) -> None:
            while True:
                await asyncio.sleep(TELEMETRY_WATCH_S)
                await watch.check(actions, actions.now())

        tasks: list[Callable[[PlatformActions], Coroutine[Any, Any, None]]] = [
            run_rules,
            watch_registered_devices,
            run_access,
        ]
        if singleton:
            tasks += [watch_telemetry, deliver_alarms]
        if first_in_process:
            tasks.append(warm_up_vision)
        shared.rules_feeds[part] = rules_feed
        stack.callback(shared.rules_feeds.pop, part, None)
        if metrics is not None and first_in_process:
            shared.stack.enter_context(metrics.source(telemetry.metrics))
            shared.stack.enter_context(metrics.source(shared.rules_metrics))

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
            # captures reach it on a dispatch queue of its own: access decisions never wait for an upload;
            # every owner puts its devices' captures in the outbox, partition 0's owner uploads them
            uploader = await stack.enter_async_context(open_uploader(settings.viewlib, db, site, people.store.cipher))
            handlers.append(uploader)
            features.append("viewlib")

            async def upload_captures(actions: PlatformActions) -> None:
                await uploader.run()

            if singleton:
                tasks.append(upload_captures)
                if metrics is not None:
                    stack.enter_context(metrics.source(uploader.metrics))
        yield Services(
            handlers=handlers,
            tasks=tasks,
            features=features if singleton else [],  # the retained announcement is partition 0's
            health_sinks=[telemetry.record_health],
            publish_taps=[telemetry_feed.tap_alarm],
            platform_event_taps=taps,
            route=engine.forward_targets if partitions > 1 else None,
            forwarded=rules_feed,
        )
