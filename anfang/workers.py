"""Several *active* workers for one site: each serves the partitions of devices whose lease it holds.

A worker process runs one :class:`~anfang.service.Platform` per partition it holds, each with the
partition's own MQTT client id (a persistent session that outlives the worker) and subscriptions to
the twin channels of the partition's devices only. The holder of partition 0 is the site's leader
and runs the services. A worker first takes its *home* partitions; a partition whose worker is gone
is taken by any other worker after ``workers.takeover_after_s``, resuming that partition's session,
so nothing it had not acknowledged is lost and nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

from anfang.app import Services, ServicesFactory, make_platform, open_registry, prepare_site
from anfang.config import ConfigError, Settings
from anfang.feed import FeedReader, FeedWriter
from anfang.lease import LeaseLost, SiteLease
from anfang.mqtt_link import MqttLink
from anfang.partitions import (
    LEADER,
    home_partitions,
    partition_client_id,
    partition_of,
    reply_topic,
    site_wide_filters,
    twin_filters,
)
from anfang.readiness import Readiness
from anfang.remote_twins import RemoteTwins
from anfang.service import Platform
from registry.records import DeviceInfo
from registry.store import Registry, TwinStore

log = logging.getLogger(__name__)


def check_partitioned(settings: Settings) -> None:
    """Several active workers need what they share: an external MQTT 5 broker."""
    if settings.broker.embedded:
        raise ConfigError("workers.partitions > 1 needs an external broker (broker.embedded: false)")
    if settings.mqtt.protocol == "3.1.1":
        raise ConfigError("workers.partitions > 1 needs MQTT 5 (mqtt.protocol: 5 or auto)")
    if settings.mqtt.shared_group:
        raise ConfigError("use either workers.partitions or mqtt.shared_group, not both")


async def run_partitioned_worker(
    settings: Settings,
    services_factory: ServicesFactory | None,
    opened: tuple[Registry, TwinStore] | None = None,
    readiness: Readiness | None = None,
) -> None:
    """Serve this worker's home partitions, and any partition left without a worker, until cancelled.
    ``opened``: the registry and twin store if the caller opened the database; ``readiness`` learns
    which partitions this process serves."""
    check_partitioned(settings)
    w = settings.workers
    async with AsyncExitStack() as stack:
        registry, store = opened if opened else await stack.enter_async_context(open_registry(settings))
        password = await prepare_site(settings, registry)
        homes = set(home_partitions(w.index, w.count, w.partitions))
        log.info(
            "worker %d of %d for site %s: home partitions %s of %d",
            w.index,
            w.count,
            settings.site,
            sorted(homes),
            w.partitions,
        )
        async with asyncio.TaskGroup() as tg:
            for part in range(w.partitions):
                worker = PartitionWorker(settings, registry, store, password, part, services_factory, readiness)
                tg.create_task(worker.serve(home=part in homes), name=f"partition-{part}")


class PartitionWorker:
    """Takes a partition's lease when it can and serves the partition while it holds it."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: TwinStore,
        password: str,
        part: int,
        services_factory: ServicesFactory | None,
        readiness: Readiness | None = None,
    ) -> None:
        self.settings, self.registry, self.store, self.password = settings, registry, store, password
        self.part, self.services_factory, self.readiness = part, services_factory, readiness
        self.partitions = settings.workers.partitions

    def owns(self, device: DeviceInfo) -> bool:
        return partition_of(device, self.partitions) == self.part

    async def serve(self, *, home: bool) -> None:
        if not home:
            # the partition's home worker gets the first chance; we take it only if it stays free
            await asyncio.sleep(self.settings.workers.takeover_after_s)
        s = self.settings
        while True:
            async with SiteLease(s.site, s.db_url, s.data_dir, partition=self.part) as lease:
                try:
                    await self._run(lease)
                except* LeaseLost as group:
                    log.error("%s; stopping partition %d", group.exceptions[0], self.part)

    async def _run(self, lease: SiteLease) -> None:
        s, part = self.settings, self.part
        owned = {d.id for d in await self.registry.list_devices(s.site) if self.owns(d)}
        client_id = partition_client_id(s.mqtt.client_id, part, self.partitions)
        link = MqttLink(
            host=s.mqtt.host,
            port=s.mqtt.port,
            client_id=client_id,
            username=s.mqtt.username,
            password=self.password,
            mqtt5=True,
            keepalive=s.mqtt.keepalive,
        )
        subscriptions = twin_filters(s.site, sorted(owned))
        async with AsyncExitStack() as stack:
            leader = part == LEADER
            # only the leader announces the site's features (a retained message the others must not replace)
            services = Services() if leader else Services(features=[])
            if leader and self.services_factory is not None:
                services = await stack.enter_async_context(self.services_factory(s, self.registry))
            remote = RemoteTwins(link, reply_topic(s.site, client_id), s.limits.command_timeout_s) if leader else None
            feed = None if leader else FeedWriter(s.site, part, await self.store.feed_head(s.site, part))
            if remote is not None:
                subscriptions += [*site_wide_filters(s.site), remote.reply_topic]

            async def watch_lease(platform: Platform) -> None:
                await lease.watch()

            async def pick_up_new_devices(platform: Platform) -> None:
                while True:
                    await asyncio.sleep(s.workers.refresh_s)  # the registry has no change notification
                    new = {d.id for d in await self.registry.list_devices(s.site) if self.owns(d)} - owned
                    if new:
                        link.subscribe(twin_filters(s.site, sorted(new)))
                        owned.update(new)
                        log.info("partition %d now also serves %s", part, ", ".join(sorted(new)[:10]))

            async def read_feed(platform: Platform) -> None:
                others = [p for p in range(self.partitions) if p != LEADER]
                await FeedReader(self.store, s.site, others, platform.deliver).run()

            platform = make_platform(
                s,
                self.registry,
                self.store,
                link,
                services,
                subscriptions,
                extra_tasks=[watch_lease, pick_up_new_devices, *([read_feed] if leader else [])],
                feed=feed,
                remote=remote,
                owns=self.owns,
                health_name="health" if leader else f"health/p{part}",
            )
            log.info(
                "serving partition %d of %d of site %s: %d devices%s",
                part,
                self.partitions,
                s.site,
                len(owned),
                " (leader: rules, access, telemetry)" if leader else "",
            )
            try:
                with self.readiness.serving(platform) if self.readiness else contextlib.nullcontext():
                    await platform.run()
            finally:
                await link.stop()
