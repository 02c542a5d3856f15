"""The composition root: builds the database, broker, MQTT link, handlers and platform."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from anfang.accounts import ensure_service_accounts
from anfang.config import ConfigError, Settings
from anfang.console import ConsoleServices, ConsoleStore, site_plan
from anfang.last_seen import LastSeen
from anfang.lease import SiteLease
from anfang.mqtt_link import MqttLink
from anfang.service import Platform
from broker.certs import SitePki
from broker.embedded import BrokerTls, EmbeddedBroker, split_bind
from community.api import CommunityServices
from community.api.limits import ApiLimits
from community.crypto import CryptoError, FieldCipher, load_master_key
from community.records import AccessRecords
from community.store import CommunityStore
from community.tokens import TokenPolicy
from privacy.captures import EventGuard
from registry import event_partitions
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from registry.db import CORE_MODELS, open_connection, open_database
from registry.history import HistoryPolicy, HistoryStore, prune_periodically
from registry.migrate import is_postgres
from registry.sql import Sql
from registry.store import Registry, TwinStore
from twins.document import Limits
from twins.hooks import DeviceEvent, PlatformActions, PlatformHandler, TwinChange
from twins.site import SiteModel
from twins.topics import PLATFORM_SUBSCRIPTIONS, STATUS_SUBSCRIPTION

log = logging.getLogger(__name__)


def broker_tls(settings: Settings) -> BrokerTls | None:
    """The embedded broker's MQTT-over-TLS listener, when ``tls.mqtt_bind`` is set."""
    if not settings.tls.mqtt_bind:
        return None
    pki = SitePki(settings.tls_dir)
    return BrokerTls(
        settings.tls.mqtt_bind, pki.server_cert, pki.server_key, pki.ca_cert, settings.tls.require_client_cert
    )


MODELS = (*CORE_MODELS, "community.models")  # the registry's tables and the access-control registry


@dataclass
class Services:
    """What the platform runs besides its own loops: handlers, long-running tasks, taps."""

    handlers: list[PlatformHandler] = field(default_factory=list)
    tasks: list[Callable[[PlatformActions], Coroutine[Any, Any, None]]] = field(default_factory=list)
    features: list[str] = field(default_factory=lambda: ["twins"])
    health_sinks: list[Callable[[float, dict[str, float]], None]] = field(default_factory=list)
    publish_taps: list[Callable[[str, dict[str, Any] | str], None]] = field(default_factory=list)
    # observers of the platform's own events (access decisions, watchlist matches); for tools and tests
    platform_event_taps: list[Callable[[DeviceEvent], None]] = field(default_factory=list)
    #: Several workers per site: the other partitions an input of this partition's devices goes to
    #: (the rules engine's :meth:`~rules.engine.RulesEngine.forward_targets`), written to the feed with its batch
    route: Callable[[DeviceEvent | TwinChange], set[int]] | None = None
    #: Several workers per site: the handler the inputs other partitions forward to this one go to (rules)
    forwarded: PlatformHandler | None = None


#: ``factory(settings, registry)``; partition owners add ``part=``, ``partitions=`` and ``shared=``.
ServicesFactory = Callable[..., AbstractAsyncContextManager[Services]]


def tune_gc_for_throughput() -> None:
    """For a long-running worker process, once it has started.

    Every message allocates a few short-lived objects; with the default thresholds the cyclic
    collector runs every 700 allocations and regularly walks everything the process holds
    (cached twins, the inbox). Freezing what start-up created and collecting the young
    generation less often gave ~15 % more accepted reports/s (bench/RESULTS.md). Memory
    freed by reference counting, which is nearly all of it, is unaffected.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


async def prepare_site(settings: Settings, registry: Registry) -> str:
    """The site's row and the service accounts; returns the platform's MQTT password."""
    await registry.ensure_site(settings.site)
    password, _ = await ensure_service_accounts(
        registry, settings.secrets_dir, settings.mqtt.username, settings.mqtt.password
    )
    return password


def make_platform(
    settings: Settings,
    registry: Registry,
    store: TwinStore,
    link: MqttLink,
    services: Services,
    subscriptions: list[str],
    extra_tasks: Sequence[Callable[[Platform], Coroutine[Any, Any, None]]] = (),
    site_duties: bool = True,
    **partition: Any,
) -> Platform:
    """A platform worker from the settings; ``partition`` holds what a partition owner adds
    (feed, remote, owns, health_name — see :mod:`anfang.workers`). ``site_duties``: this worker prunes
    the site's history (a one-worker site's, or partition 0's owner)."""
    lim = settings.limits
    last_seen = LastSeen(registry.record_last_seen)

    async def write_last_seen(_: Platform) -> None:
        await last_seen.run()

    async def event_partitions_ahead(platform: Platform) -> None:  # PostgreSQL: device_events by day
        await event_partitions.keep_ahead(store.add_event_partitions, platform.now)

    async def prune_history(platform: Platform) -> None:
        keep = settings.history
        history = HistoryStore(platform.store.connection, settings.site)
        await prune_periodically(history, HistoryPolicy(keep.keep_versions, keep.keep_days), keep.prune_interval_s)

    maintenance = [prune_history] if site_duties else []

    return Platform(
        registry=registry,
        store=store,
        link=link,
        handlers=services.handlers,
        sites=[settings.site],
        features=services.features,
        limits=Limits(lim.max_document_bytes, lim.max_depth, lim.max_clock_skew_s),
        tasks=[*services.tasks, *extra_tasks, write_last_seen, event_partitions_ahead, *maintenance],
        health_sinks=services.health_sinks,
        publish_taps=services.publish_taps,
        max_payload=lim.max_payload_bytes,
        inbox_size=lim.ingest_queue,
        batch_max=lim.batch_max,
        command_timeout=lim.command_timeout_s,
        subscriptions=subscriptions,
        health_interval=lim.health_interval_s,
        last_seen=last_seen,
        **partition,
    )


@asynccontextmanager
async def open_registry(settings: Settings) -> AsyncIterator[tuple[Registry, TwinStore]]:
    """The registry and twin store on the configured database (migrated first)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    guard = EventGuard(site_cipher(settings), settings.site)
    async with open_database(settings.db_url, MODELS) as conn:
        from privacy.keys import current_generation

        guard.cipher.generation = await current_generation(conn, settings.site)  # after `anfang keys rotate`
        yield Registry(settings.broker.hash_iterations), TwinStore(conn, is_postgres(settings.db_url), guard)


@asynccontextmanager
async def build_platform(
    settings: Settings,
    services_factory: ServicesFactory | None = None,
    opened: tuple[Registry, TwinStore] | None = None,
    brokers: list[EmbeddedBroker] | None = None,
) -> AsyncIterator[Platform]:
    """Everything the platform needs, started and ready for ``Platform.run``; closed at exit.
    ``opened``: the registry and twin store when the caller has opened the database already;
    ``brokers``: holds the embedded broker while it runs (for cutting devices off, :mod:`anfang.lifecycle`)."""
    async with AsyncExitStack() as stack:
        registry, store = opened if opened else await stack.enter_async_context(open_registry(settings))
        lease: SiteLease | None = None
        if not settings.broker.embedded:
            # several workers may serve a site; the lease holder is the active one
            lease = await stack.enter_async_context(SiteLease(settings.site, settings.db_url, settings.data_dir))
        password = await prepare_site(settings, registry)
        broker: EmbeddedBroker | None = None
        if settings.broker.embedded:
            embedded = EmbeddedBroker(
                settings.broker.bind,
                registry,
                max_payload=settings.limits.max_payload_bytes,
                tls=broker_tls(settings),
                direct_ingest=True,
            )
            broker = await stack.enter_async_context(embedded)
            if brokers is not None:
                brokers.append(broker)
                stack.callback(brokers.remove, broker)
            host, port = split_bind(settings.broker.bind)
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            mqtt5 = False  # amqtt speaks MQTT 3.1.1 only
            log.info("embedded broker on %s:%d", broker.host, broker.port)
        else:
            host, port = settings.mqtt.host, settings.mqtt.port
            mqtt5 = settings.mqtt.protocol != "3.1.1"
        link = MqttLink(
            host=host,
            port=port,
            client_id=settings.mqtt.client_id,
            username=settings.mqtt.username,
            password=password,
            mqtt5=mqtt5,
            keepalive=settings.mqtt.keepalive,
            shared_group=settings.mqtt.shared_group,
            # unacknowledged deliveries far beyond the inbox would sit in memory instead of with the broker
            receive_maximum=max(settings.limits.batch_max, min(4000, 2 * settings.limits.ingest_queue)),
        )
        services = (
            await stack.enter_async_context(services_factory(settings, registry)) if services_factory else Services()
        )
        # with the embedded broker, device messages reach the platform inside the broker, committed
        # before they are acknowledged; only wills (status) still come over MQTT
        subscriptions = [STATUS_SUBSCRIPTION] if settings.broker.embedded else list(PLATFORM_SUBSCRIPTIONS)
        if lease is not None:
            watch = lease.watch

            async def watch_lease(actions: PlatformActions) -> None:
                await watch()

            services.tasks.append(watch_lease)
        platform = make_platform(settings, registry, store, link, services, subscriptions)
        if broker is not None:
            broker.ingest_directly(platform.ingest)
        try:
            yield platform
        finally:
            await link.stop()


def site_cipher(settings: Settings) -> FieldCipher:
    """The field cipher of the site's master key (personal data, look-up hashes, capture images)."""
    try:
        return FieldCipher(load_master_key(settings.secret_key, settings.data_dir, settings.secret_key_file))
    except CryptoError as exc:
        raise ConfigError(f"master key: {exc.reason}") from None


def community_services(settings: Settings) -> CommunityServices:
    """The access-control registry and records of the configured site, for the API and access control."""
    cipher = site_cipher(settings)
    api = settings.api
    policy = TokenPolicy(api.token_staff_ttl_h * 3600, api.token_resident_ttl_h * 3600)
    return CommunityServices(
        CommunityStore(cipher, settings.site),
        AccessRecords(settings.site, policy),
        face_threshold=settings.vision.face_threshold,
        limits=ApiLimits.per_minute(api.max_body_bytes, api.token_issue_per_min, api.signin_per_min),
    )


def console_services(
    settings: Settings,
    community: CommunityServices,
    desk: Any = None,
    actions: Callable[[], PlatformActions | None] = lambda: None,
    site: SiteModel | None = None,
) -> ConsoleServices:
    """The web console's sessions on the site's database (open), with the community services, alarm desk,
    the site plan and this process's active worker (``actions``)."""
    c = settings.console
    store = ConsoleStore(
        Sql(open_connection(settings.db_url)),
        settings.site,
        idle_s=c.idle_timeout_s,
        max_age_s=c.session_max_age_s,
        link_ttl_s=c.link_ttl_s,
    )
    return ConsoleServices(store, community, desk, c, plan=site_plan(site), actions=actions)


async def serve(settings: Settings, services_factory: Callable[..., AbstractAsyncContextManager[Services]]) -> None:
    """``anfang run``: the HTTP API and the platform (one worker, or this worker's partitions), until
    cancelled. ``services_factory(settings, registry, community=...)`` builds the services.

    The API starts as soon as the database is open, before the site's lease: a standby answers
    ``/healthz`` and the API too (both only need the database), and ``/readyz`` says it stands by.
    """
    from anfang.alarm_dispatch import PlatformAlarmDesk
    from anfang.http_server import ApiServer, TlsFiles
    from anfang.lifecycle import lifecycle_for
    from anfang.readiness import Readiness
    from anfang.site_setup import current_site
    from anfang.web import create_platform_app
    from anfang.workers import run_partitioned_worker
    from rules.db_traces import DatabaseTraceStore
    from telemetry.metrics import PlatformMetrics

    async with AsyncExitStack() as stack:
        registry, store = await stack.enter_async_context(open_registry(settings))
        community = community_services(settings)
        brokers: list[EmbeddedBroker] = []

        def forget(device_id: str) -> None:
            for worker in readiness.workers:
                worker.forget(device_id)

        lifecycle = lifecycle_for(settings, registry, lambda: brokers[0] if brokers else None, forget)
        readiness = Readiness(open_connection(settings.db_url), is_postgres(settings.db_url))
        readiness.standing_by = not settings.broker.embedded
        alarms = AlarmManager(settings.site, DatabaseAlarmStore(open_connection(settings.db_url), settings.site))
        desk = PlatformAlarmDesk(alarms, lambda: readiness.workers[0] if readiness.workers else None)
        metrics = PlatformMetrics(lambda: readiness.workers)
        if settings.api_enabled:
            running = await current_site(settings, registry)
            console = console_services(
                settings, community, desk, lambda: readiness.workers[0] if readiness.workers else None, running.model
            )
            traces = DatabaseTraceStore(open_connection(settings.db_url), settings.site)
            app = create_platform_app(community, readiness, desk, metrics, console, lifecycle, traces)
            # processes of one site on one host (standbys, --workers) share the port
            pki = SitePki(settings.tls_dir)
            tls = TlsFiles(pki.server_cert, pki.server_key) if settings.tls.api else None
            server = ApiServer(app, settings.api_bind or "", reuse_port=not settings.broker.embedded, tls=tls)
            await stack.enter_async_context(server)
        factory = functools.partial(
            services_factory, access_registry=community, alarms=alarms, metrics=metrics, readiness=readiness
        )
        if settings.workers.partitions > 1:
            await run_partitioned_worker(settings, factory, opened=(registry, store), readiness=readiness)
            return
        async with build_platform(settings, factory, opened=(registry, store), brokers=brokers) as platform:

            async def tune_when_ready() -> None:
                await platform.ready.wait()
                tune_gc_for_throughput()

            tuner = asyncio.create_task(tune_when_ready(), name="gc-tuning")
            try:
                with readiness.serving(platform):
                    await platform.run()
            finally:
                tuner.cancel()
