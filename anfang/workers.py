"""Several *active* workers for one site: each serves the partitions assigned to it.

A worker process runs one :class:`~anfang.service.Platform` per partition it holds, each with the
partition's own MQTT client id (a persistent session that outlives the worker), subscriptions to every
channel of the partition's devices, and its own services: rules for the entities it owns, access
decisions and telemetry for its devices (:mod:`anfang.services`; what a process builds once — vision
models, the telemetry writer — is shared by its partitions). Inputs a rule keys on an entity another
partition owns reach that partition's owner through the feed (:mod:`anfang.feed`). The holder of
partition 0 also runs the site-wide duties (alarm delivery, retention, history pruning).

Workers join and leave a running site: every ``workers.heartbeat_s`` each one heartbeats and follows
the assignment in the database (:mod:`anfang.membership`), handing off the partitions assigned
elsewhere (it stops, disconnects and releases the partition's lease) and taking the ones assigned to
it (it takes the lease and resumes the partition's session), so nothing acknowledged is lost and
``seq``/event ids keep anything redelivered from being applied twice. A worker killed outright is
dropped from the assignment once its heartbeat is ``takeover_after_s`` old.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

from anfang.app import Services, ServicesFactory, make_platform, open_registry, prepare_site
from anfang.assignment import plan
from anfang.config import ConfigError, Settings
from anfang.feed import FeedReader, FeedWriter, platform_stream
from anfang.lease import LeaseLost, SiteLease
from anfang.membership import Membership, announce_device, connect, wait_served
from anfang.mqtt_link import MqttLink
from anfang.partitions import (
    LEADER,
    command_results_filter,
    device_filters,
    partition_client_id,
    partition_of,
    reply_topic,
)
from anfang.readiness import Readiness
from anfang.remote_twins import RemoteTwins
from anfang.service import Platform
from anfang.services import ProcessShared
from registry.migrate import is_postgres
from registry.records import DeviceInfo
from registry.store import Registry, TwinStore
from twins.hooks import DeviceEvent, TwinChange

log = logging.getLogger(__name__)

DRAIN_S = 5.0  # a hand-off waits this long for what the partition has read to commit; the rest is redelivered


def check_partitioned(settings: Settings) -> None:
    """Several active workers need what they share: an external MQTT 5 broker."""
    if settings.broker.embedded:
        raise ConfigError("workers.partitions > 1 needs an external broker (broker.embedded: false)")
    if settings.mqtt.protocol == "3.1.1":
        raise ConfigError("workers.partitions > 1 needs MQTT 5 (mqtt.protocol: 5 or auto)")
    if settings.mqtt.shared_group:
        raise ConfigError("use either workers.partitions or mqtt.shared_group, not both")
    if not is_postgres(settings.db_url):
        raise ConfigError("workers.partitions > 1 needs PostgreSQL (the workers share the assignment there)")


def worker_name(index: int) -> str:
    """This process's name among the site's workers: unique across hosts and restarts."""
    return f"{socket.gethostname()}-{index}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


async def run_partitioned_worker(
    settings: Settings,
    services_factory: ServicesFactory | None,
    opened: tuple[Registry, TwinStore] | None = None,
    readiness: Readiness | None = None,
) -> None:
    """Join the site's workers and serve the partitions assigned to this one, until cancelled.
    ``opened``: the registry and twin store if the caller opened the database; ``readiness`` learns
    which partitions this process serves."""
    check_partitioned(settings)
    w = settings.workers
    async with AsyncExitStack() as stack:
        registry, store = opened if opened else await stack.enter_async_context(open_registry(settings))
        password = await prepare_site(settings, registry)
        name = worker_name(w.index)
        members = Membership(settings.db_url, settings.site, name, w.partitions, w.takeover_after_s)
        await stack.enter_async_context(members)
        log.info("worker %s joins site %s (%d partitions)", name, settings.site, w.partitions)
        # built once per process, lent to each partition it serves (vision models, telemetry writer, ...)
        shared = await stack.enter_async_context(ProcessShared())
        async with asyncio.TaskGroup() as tg:
            crew = Crew(settings, members, tg, lambda part: PartitionWorker(
                settings, registry, store, password, part, services_factory, readiness, members, shared
            ))  # fmt: skip
            await crew.run()


async def announce_new_devices(settings: Settings, site: str, device_ids: Sequence[str]) -> dict[str, int] | None:
    """After registering devices of a partitioned site: tell the workers and wait until the owners of their
    partitions have subscribed to their topics, so that their first messages are served. Returns the
    partition of each device confirmed within ``workers.provision_wait_s``, or ``None`` when the site is
    not partitioned (one worker subscribes to every device by wildcard)."""
    if settings.workers.partitions <= 1 or not is_postgres(settings.db_url) or not device_ids:
        return None
    conn = await connect(settings.db_url)
    try:
        await announce_device(conn, site)
        return await wait_served(conn, site, device_ids, settings.workers.provision_wait_s)
    finally:
        await conn.close()


class Crew:
    """The partitions one worker serves: follows the assignment, heartbeat by heartbeat."""

    def __init__(
        self,
        settings: Settings,
        members: Membership,
        tg: asyncio.TaskGroup,
        make: Callable[[int], PartitionWorker],
    ) -> None:
        self.settings, self.members, self._tg, self._make = settings, members, tg, make
        self.serving: dict[int, tuple[PartitionWorker, asyncio.Task[None]]] = {}

    def _heard_of_a_device(self) -> None:
        for worker, _ in self.serving.values():
            worker.new_devices.set()

    async def run(self) -> None:
        await self.members.listen(self._heard_of_a_device)
        while True:
            todo = plan(self.members.worker, await self.members.beat(), self.serving)
            for part in sorted(todo.release):
                await self._hand_off(part)
            for part in sorted(todo.take):
                worker = self._make(part)
                task = self._tg.create_task(worker.serve(), name=f"partition-{part}")
                self.serving[part] = (worker, task)
            await asyncio.sleep(self.settings.workers.heartbeat_s)  # the heartbeat's period

    async def _hand_off(self, part: int) -> None:
        """Stop serving ``part`` so that its new owner can take it: stop consuming, disconnect (what was not
        acknowledged stays in the partition's session for the new owner), release the lease, mark it."""
        worker, task = self.serving.pop(part)
        drained = 0
        if worker.platform is not None and not task.done():
            drained = await worker.platform.drain(DRAIN_S)
        task.cancel()
        await asyncio.wait([task])
        await self.members.mark_holder(part, False)
        log.info(
            "handed partition %d of site %s off (%d messages committed while draining)",
            part,
            self.settings.site,
            drained,
        )


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
        readiness: Readiness | None,
        members: Membership,
        shared: ProcessShared | None = None,
    ) -> None:
        self.settings, self.registry, self.store, self.password = settings, registry, store, password
        self.shared = shared
        self.part, self.services_factory, self.readiness = part, services_factory, readiness
        self.partitions, self.members = settings.workers.partitions, members
        self.new_devices = asyncio.Event()  # set when a device of the site was announced
        self.platform: Platform | None = None  # while serving

    def owns(self, device: DeviceInfo) -> bool:
        return partition_of(device, self.partitions) == self.part

    async def serve(self) -> None:
        """Wait for the partition's lease (its previous owner hands it off, or died), then serve it."""
        s = self.settings
        while True:
            async with SiteLease(s.site, s.db_url, s.data_dir, partition=self.part) as lease:
                await self.members.mark_holder(self.part, True)
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
        subscriptions = device_filters(s.site, sorted(owned))
        async with AsyncExitStack() as stack:
            leader = part == LEADER
            # only partition 0 announces the site's features (a retained message the others must not replace)
            services = Services() if leader else Services(features=[])
            if self.services_factory is not None:
                services = await stack.enter_async_context(
                    self.services_factory(s, self.registry, part=part, partitions=self.partitions, shared=self.shared)
                )
            # rules and access write desired state to twins other partitions own through their owners
            remote = RemoteTwins(link, reply_topic(s.site, client_id), s.limits.command_timeout_s)
            subscriptions += [remote.reply_topic, command_results_filter(s.site)]
            route = services.route
            feed = await FeedWriter.open(self.store, s.site, part, self.partitions, route) if route else None

            async def watch_lease(platform: Platform) -> None:
                await lease.watch()

            async def pick_up_new_devices(platform: Platform) -> None:
                await link.wait_subscribed()
                await self.members.record_served(part, sorted(owned))
                while True:
                    # announced devices at once; ``refresh_s`` for a notification lost with a connection
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.new_devices.wait(), s.workers.refresh_s)
                    self.new_devices.clear()
                    new = {d.id for d in await self.registry.list_devices(s.site) if self.owns(d)} - owned
                    if new:
                        link.subscribe(device_filters(s.site, sorted(new)))
                        await link.wait_subscribed()  # the broker holds their messages for this session from now on
                        await self.members.record_served(part, sorted(new))
                        owned.update(new)
                        log.info("partition %d now also serves %s", part, ", ".join(sorted(new)[:10]))

            forwarded = services.forwarded

            async def read_feed(platform: Platform) -> None:
                # what the other partitions' batches and platform events forward to this one's rules (only
                # to them: access control and telemetry take each device's inputs at its own partition)
                others = [p for p in range(self.partitions) if p != part]
                streams = [*others, *(platform_stream(p) for p in others)]

                async def to_rules(items: list[DeviceEvent | TwinChange]) -> None:
                    for item in items:
                        if forwarded is None:
                            continue
                        if isinstance(item, TwinChange):
                            await forwarded.on_twin_change(item, platform)
                        else:
                            await forwarded.on_event(item, platform)

                await FeedReader(self.store, s.site, streams, part, to_rules).run()

            platform = make_platform(
                s,
                self.registry,
                self.store,
                link,
                services,
                subscriptions,
                extra_tasks=[watch_lease, pick_up_new_devices, *([read_feed] if route else [])],
                site_duties=leader,
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
                " (and the site-wide duties)" if leader else "",
            )
            self.platform = platform
            try:
                with self.readiness.serving(platform) if self.readiness else contextlib.nullcontext():
                    await platform.run()
            finally:
                self.platform = None
                await link.stop()
