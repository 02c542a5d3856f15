"""The platform worker: the inbox and ingest loop with group commit, and the writes handlers make.

Data flow: broker -> :class:`MqttLink` callback -> bounded inbox -> ingest loop (batch, pure
:func:`process_batch`, one transaction, publish replies) -> PUBACK -> per-handler dispatch queues.
Every write to twins happens under one lock, so per-device order holds and a handler's
``set_desired`` never interleaves with a batch.

The worker's other rooms: :mod:`anfang.counters` (what it has seen), :mod:`anfang.dispatch` (handler
queues), :mod:`anfang.commands` (commands and their answers), :mod:`anfang.expiry` (momentary desired
fields), :mod:`anfang.recent_events` (event de-duplication) and the pure :mod:`anfang.ingest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, runtime_checkable

from anfang.commands import CommandDesk
from anfang.counters import Counters
from anfang.dispatch import Dispatcher
from anfang.error_throttle import ERRORS_SUFFIX, ErrorThrottle
from anfang.expiry import ExpiryClock
from anfang.feed import FeedWriter
from anfang.ingest import Inbound, Outcome, desired_publishes, process_batch
from anfang.last_seen import LastSeen, heard_from
from anfang.mqtt_link import MqttLink
from anfang.recent_events import RecentEvents
from anfang.remote_twins import RemoteTwins
from registry.records import DeviceInfo
from registry.store import Registry, TwinStore
from twins import topics
from twins.document import Limits, TwinDocument, apply_desired, apply_reported, expire_desired
from twins.errors import BadRequest, NotFound
from twins.history import HistoryEntry, current_actor, redact
from twins.hooks import CommandResult, DeviceEvent, PlatformHandler, TwinChange
from twins.kinds import validate_desired, validate_reported

__all__ = ["Counters", "Platform", "TelemetryRecorder"]

log = logging.getLogger(__name__)


@runtime_checkable
class TelemetryRecorder(Protocol):
    """A handler that takes telemetry samples directly, besides the dispatched ``telemetry`` events."""

    def record_telemetry(self, site: str, device_id: str, kind: str, ts: float, metrics: dict[str, float]) -> None: ...


class Platform:
    """One platform worker. Implements :class:`twins.hooks.PlatformActions` for its handlers."""

    def __init__(
        self,
        *,
        registry: Registry,
        store: TwinStore,
        link: MqttLink,
        handlers: Sequence[PlatformHandler] = (),
        sites: Sequence[str] = (),
        features: Sequence[str] = ("twins",),
        limits: Limits | None = None,
        max_payload: int = 256 * 1024,
        inbox_size: int = 10_000,
        batch_max: int = 500,
        command_timeout: float = 10.0,
        health_interval: float = 10.0,
        subscriptions: Sequence[str] = topics.PLATFORM_SUBSCRIPTIONS,
        tasks: Sequence[Callable[[Platform], Coroutine[Any, Any, None]]] = (),
        health_sinks: Sequence[Callable[[float, dict[str, float]], None]] = (),
        publish_taps: Sequence[Callable[[str, dict[str, Any] | str], None]] = (),
        feed: FeedWriter | None = None,
        remote: RemoteTwins | None = None,
        owns: Callable[[DeviceInfo], bool] | None = None,
        health_name: str = "health",
        last_seen: LastSeen | None = None,
    ) -> None:
        """With several active workers per site, ``feed`` carries this partition's twin changes to the
        leader, and the leader writes twins it does not ``own`` through ``remote``."""
        self.registry, self.store, self.link = registry, store, link
        self._feed, self._remote, self._owns, self._health_name = feed, remote, owns, health_name
        self.last_seen = last_seen  # per-device last-seen times (written in batches)
        self._error_throttle = ErrorThrottle()  # a flooding device's error answers must not crowd others out
        self._log_throttle = ErrorThrottle()  # nor its rejections the log
        self.handlers = list(handlers)
        self.counters = Counters()
        self._sites, self._features = list(sites), list(features)
        self._limits, self._max_payload = limits or Limits(), max_payload
        self._batch_max = batch_max
        self._arrivals: deque[tuple[Inbound, Callable[[], None]]] = deque()
        self._arrived = asyncio.Event()
        self._inbox_warn, self._warned_at, self._reading_paused = inbox_size, 0.0, False
        self._draining = False  # handing off: read nothing more from the broker
        self._write_lock = asyncio.Lock()
        self._devices: dict[str, DeviceInfo] = {}
        self._twins: dict[str, TwinDocument] = {}
        self._recent_events = RecentEvents(store)
        self._commands = CommandDesk(link, store, self.counters, self._device, command_timeout)
        self._dispatcher = Dispatcher(self.handlers, self.counters)
        self._subscriptions = list(subscriptions)
        self._tasks, self._health_sinks, self._publish_taps = list(tasks), list(health_sinks), list(publish_taps)
        self._health_interval = health_interval
        self._committed = asyncio.Condition(self._write_lock)
        self._expiries = ExpiryClock()  # momentary desired fields
        self.ready = asyncio.Event()

    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled: ingest loop, one dispatcher per handler, health publisher."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ingest_loop(), name="ingest")
            dispatcher = self._dispatcher
            for handler, queue in zip(dispatcher.handlers, dispatcher.queues, strict=True):
                tg.create_task(dispatcher.run(handler, queue, self), name=f"dispatch-{type(handler).__name__}")
            await self.link.start(self._subscriptions, self.ingest, self.accept)
            for site in self._sites if self._features else ():  # none: a worker that speaks for no services
                self.link.publish(topics.platform_topic(site, "features"), {"features": self._features}, retain=True)
            tg.create_task(self._health_loop(), name="health")
            tg.create_task(self._expiries.run(self.store.with_desired_expiry, self._expire), name="desired-expiry")
            for i, task in enumerate(self._tasks):
                tg.create_task(task(self), name=f"service-{i}")
            self.ready.set()
            log.info("platform ready")

    def accept(
        self,
        raw_topic: str,
        payload: bytes,
        reply_to: tuple[str, bytes | None] | None,
        ack: Callable[[], None],
        redelivered: bool = False,
    ) -> None:
        """Take one inbound message; ``ack`` is called once it is committed (or rejected).
        ``redelivered``: the broker's DUP flag, this may be a message a previous session committed."""
        if self._remote is not None and raw_topic == self._remote.reply_topic:
            self._remote.on_reply(payload)
            ack()
            return
        # appended synchronously, so arrival order is kept (an awaiting Queue.put can be overtaken)
        self._arrivals.append((Inbound(raw_topic, topics.parse(raw_topic), payload, reply_to, redelivered), ack))
        self._arrived.set()
        depth = len(self._arrivals)
        if depth > self.counters.inbox_peak:
            self.counters.inbox_peak = depth
        if depth > self._inbox_warn and not self._reading_paused:
            # more than the inbox size waits: stop reading from the broker until the backlog halves
            # (brokers do not all bound unacknowledged deliveries by the MQTT 5 receive maximum)
            self._reading_paused = True
            self.link.pause_reading(True)
            if time.monotonic() - self._warned_at > 10:
                self._warned_at = time.monotonic()
                log.warning(
                    "%d messages wait for ingest: reading from the broker paused until they halve", len(self._arrivals)
                )

    async def ingest(
        self, raw_topic: str, payload: bytes, retained: bool = False, reply_to: tuple[str, bytes | None] | None = None
    ) -> None:
        """Take one inbound message; returns once it is committed (or rejected)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ack() -> None:
            if not done.done():  # the sender may have gone (its connection closed) meanwhile
                done.set_result(None)

        self.accept(raw_topic, payload, reply_to, ack)
        await done

    async def _ingest_loop(self) -> None:
        while True:
            while not self._arrivals:
                self._arrived.clear()
                await self._arrived.wait()
            batch = [self._arrivals.popleft() for _ in range(min(len(self._arrivals), self._batch_max))]
            if self._reading_paused and not self._draining and len(self._arrivals) < self._inbox_warn // 2:
                self._reading_paused = False
                self.link.pause_reading(False)
            outcome = await self._apply_batch([msg for msg, _ in batch])
            for _, ack in batch:
                ack()
            await self._dispatcher.put(outcome.dispatch)

    async def _apply_batch(self, batch: list[Inbound]) -> Outcome:
        async with self._write_lock:
            await self._preload(batch)
            seen = await self._recent_events.seen(batch)
            now = time.time()
            outcome = process_batch(
                batch, self._devices, self._twins, seen, now=now, limits=self._limits, max_payload=self._max_payload
            )
            finished = self._commands.finish(outcome, now)
            feed = self._feed.rows(outcome.dispatch) if self._feed is not None else ()
            # a failed commit propagates and stops the worker: nothing was acknowledged, the broker redelivers
            await self.store.commit(outcome.twins.values(), outcome.events, finished, feed, outcome.history)
            self._expiries.watch(outcome.twins.values())
            if self.last_seen is not None:
                for device_id in heard_from(batch):
                    if device_id in self._devices:  # registered: the map stays bounded by the registry
                        self.last_seen.saw(device_id, now)
            self._recent_events.remember((event.device_id, event.event_id) for event in outcome.events)
            for pub in outcome.publishes:
                if pub.topic.endswith(ERRORS_SUFFIX) and not self._error_throttle.allow(pub.topic, now):
                    self.counters.errors_throttled += 1  # the rejection itself is counted and logged
                    continue
                self.link.publish(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain, correlation=pub.correlation)
            self._count(outcome, len(batch))
            committed_at = time.time()
            self.counters.latencies_ms.extend((committed_at - ts) * 1000 for ts in outcome.sent_at)
            self._committed.notify_all()
        self._forward_telemetry(outcome)
        return outcome

    def _count(self, outcome: Outcome, size: int) -> None:
        c = self.counters
        c.batches += 1
        c.received += size
        c.accepted += outcome.accepted
        c.duplicates += outcome.duplicates
        c.clock_skew_clamped += outcome.clamped
        now = time.monotonic()
        for rej in outcome.rejections:
            c.rejected[rej.code] += 1
            if not self._log_throttle.allow(rej.device_id or "", now):
                continue  # counted; a device flooding bad messages does not flood the log too
            log.warning(
                "rejected %s from device=%s: %d %s",
                rej.topic[:200],
                rej.device_id,
                rej.code,
                rej.message,
                extra={"device": rej.device_id},
            )

    def _forward_telemetry(self, outcome: Outcome) -> None:
        for sample in outcome.telemetry:
            for handler in self.handlers:
                if isinstance(handler, TelemetryRecorder):
                    handler.record_telemetry(sample.site, sample.device_id, sample.kind, sample.ts, sample.metrics)
            outcome.dispatch.append(
                DeviceEvent(
                    sample.site,
                    sample.device_id,
                    sample.kind,
                    "telemetry",
                    f"t-{sample.ts}",
                    sample.ts,
                    dict(sample.metrics),
                )
            )

    async def _expire(self, device_id: str) -> None:
        async with self._write_lock:
            doc = self._twins.get(device_id) or await self.store.load(device_id)
            if doc is None:
                return
            now = time.time()
            applied = expire_desired(doc, now=now)
            if applied.document is doc:
                return
            entry = _desired_entry(applied.document, now, "expiry", applied.changed)
            await self.store.commit([applied.document], history=[entry])
            self._twins[device_id] = applied.document
            self._expiries.watch([applied.document])
            for pub in desired_publishes(applied.document, now):
                self.link.publish(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain)
            self._committed.notify_all()
        log.info("momentary desired field(s) of %s expired: %s", device_id, sorted(applied.changed))

    async def _preload(self, batch: list[Inbound]) -> None:
        # one query each for the batch's devices and twins not held yet (a round trip per device would
        # cost a PostgreSQL worker its first seconds after a start, when every device is new)
        wanted = {m.topic.device_id for m in batch if m.topic is not None}
        for info in await self.registry.get_devices(wanted - self._devices.keys()):
            self._devices[info.id] = info
        for doc in await self.store.load_many((wanted & self._devices.keys()) - self._twins.keys()):
            self._twins[doc.device_id] = doc

    async def deliver(self, items: list[DeviceEvent | TwinChange]) -> None:
        """Hand changes committed by another worker of the site (the feed) to this worker's handlers."""
        await self._dispatcher.put(items)

    def health(self) -> dict[str, Any]:
        """The counters and gauges published on ``_platform/health`` (and scraped on ``/metrics``)."""
        return {
            **self.counters.as_json(),
            "published": self.link.published,
            "publish_dropped": self.link.dropped,
            "publish_waiting": self.link.waiting,
            "broker_subscribed": int(self.link.subscribed),
            "broker_resubscribed": self.link.resubscribed,
            "inbox_depth": len(self._arrivals),
            "dispatch_depth": self._dispatcher.depth(),
        }

    async def _health_loop(self) -> None:
        interval = self._health_interval
        while True:
            now = time.time()
            health = self.health()
            for site in self._sites:
                self.link.publish(
                    topics.platform_topic(site, self._health_name), {"ts": now, **health}, retain=True, qos=0
                )
            numbers = {k: float(v) for k, v in health.items() if isinstance(v, int | float)}
            for sink in self._health_sinks:
                sink(now, numbers)
            await asyncio.sleep(interval)

    # ---- PlatformActions -----------------------------------------------------------------------

    def now(self) -> float:
        return time.time()

    async def _device(self, device_id: str) -> DeviceInfo:
        info = self._devices.get(device_id) or await self.registry.get_device(device_id)
        if info is None:
            raise NotFound(f"unknown device {device_id}", device_id=device_id)
        self._devices[device_id] = info
        return info

    async def _load(self, device_id: str) -> tuple[DeviceInfo, TwinDocument]:
        info = await self._device(device_id)
        doc = self._twins.get(device_id) or await self.store.load(device_id)
        return info, doc or TwinDocument(device_id=info.id, kind=info.kind, site=info.site)

    async def wait_until(self, predicate: Callable[[Platform], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds after some commit (for tests and tools)."""
        async with asyncio.timeout(timeout), self._committed:
            await self._committed.wait_for(lambda: predicate(self))

    async def drain(self, timeout: float) -> int:
        """Stop reading from the broker and wait until what was read has committed and been acknowledged
        (a partition handed off to another worker); returns how many messages that was. What is still
        unread after ``timeout`` stays unacknowledged, so the broker redelivers it to the next owner."""
        self._draining = self._reading_paused = True
        self.link.pause_reading(True)
        pending = len(self._arrivals)
        with contextlib.suppress(TimeoutError):
            await self.wait_until(lambda p: not p._arrivals, timeout)
        # No batch may still be committing once the partition is released: its new owner would write the same
        # rows at the same time. Holding the write lock, for good, waits for the batch in flight and keeps the
        # ingest loop from starting another; the platform is about to be stopped.
        await self._write_lock.acquire()
        # the ingest loop acknowledges a batch right after the commit that notified us, before it yields
        return pending - len(self._arrivals)

    def forget(self, device_id: str) -> None:
        """Drop a deleted device from this worker's caches (the registry no longer has it)."""
        self._devices.pop(device_id, None)
        self._twins.pop(device_id, None)

    def cached_twin(self, device_id: str) -> TwinDocument | None:
        """The last committed twin this worker holds in memory, if any (no IO)."""
        return self._twins.get(device_id)

    async def twin(self, device_id: str) -> TwinDocument:
        """The current, committed twin document of a device."""
        async with self._write_lock:
            return (await self._load(device_id))[1]

    async def set_desired(self, device_id: str, patch: dict[str, Any], expected_version: int | None = None) -> int:
        if self._remote is not None and self._owns is not None:
            info = await self._device(device_id)
            if not self._owns(info):
                return await self._remote.set_desired(info.site, device_id, patch, expected_version)
        async with self._write_lock:
            info, doc = await self._load(device_id)
            validate_desired(info.kind, patch)
            now = time.time()
            applied = apply_desired(doc, patch, now=now, expected_version=expected_version, limits=self._limits)
            if applied.is_change:
                entry = _desired_entry(applied.document, now, current_actor(), applied.changed)
                await self.store.commit([applied.document], history=[entry])
                self._twins[device_id] = applied.document
                for pub in desired_publishes(applied.document, now):
                    self.link.publish(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain)
                self._committed.notify_all()
            return applied.document.version

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None:
        async with self._write_lock:
            info, before = await self._load(device_id)
            if not info.virtual:
                raise BadRequest(f"{device_id} is a {info.kind}, not a virtual device")
            validate_reported(info.kind, state)
            now = time.time()
            applied = apply_reported(before, state, now=now, limits=self._limits)
            if not applied.is_change:
                return
            doc = applied.document
            entry = HistoryEntry(device_id, doc.version, now, "reported", current_actor(), applied.changed)
            await self.store.commit([doc], history=[entry])
            self._twins[device_id] = applied.document
            self._committed.notify_all()
        doc = applied.document
        self._dispatcher.put_nowait(
            TwinChange(
                doc.site,
                doc.device_id,
                doc.kind,
                doc.version,
                now,
                doc.reported,
                before.reported,
                doc.desired,
                applied.changed,
            )
        )

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float | None = None
    ) -> CommandResult:
        return await self._commands.send(device_id, name, args, timeout)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        self.link.publish(topic, payload, qos=qos, retain=retain)
        for tap in self._publish_taps:
            tap(topic, payload)


def _desired_entry(doc: TwinDocument, now: float, actor: str, changed: dict[str, Any]) -> HistoryEntry:
    return HistoryEntry(doc.device_id, doc.version, now, "desired", actor, redact(changed))
