"""The platform service: ingest loop with group commit, desired-state writes, commands, dispatch.

Data flow: broker -> :class:`MqttLink` callback -> bounded inbox -> ingest loop (batch, pure
:func:`process_batch`, one transaction, publish replies) -> PUBACK -> per-handler dispatch queues.
Every write to twins happens under one lock, so per-device order holds and a handler's
``set_desired`` never interleaves with a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from anfang.error_throttle import ERRORS_SUFFIX, ErrorThrottle
from anfang.feed import FeedWriter
from anfang.ingest import Inbound, Outcome, desired_publishes, process_batch
from anfang.last_seen import LastSeen, heard_from
from anfang.mqtt_link import MqttLink
from anfang.remote_twins import RemoteTwins
from registry.records import CommandRecord, DeviceInfo
from registry.store import Registry, TwinStore
from twins import jsoncodec, topics
from twins.document import Limits, TwinDocument, apply_desired, apply_reported, expire_desired
from twins.errors import BadRequest, NotFound
from twins.hooks import CommandResult, DeviceEvent, PlatformHandler, TwinChange
from twins.kinds import validate_desired, validate_reported

log = logging.getLogger(__name__)

_RECENT_EVENTS = 100_000
_DISPATCH_QUEUE = 10_000


@runtime_checkable
class TelemetryRecorder(Protocol):
    def record_telemetry(self, site: str, device_id: str, kind: str, ts: float, metrics: dict[str, float]) -> None: ...


@dataclass
class Counters:
    """What the platform has seen; published on ``_platform/health`` and to telemetry."""

    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    clock_skew_clamped: int = 0
    rejected: Counter[int] = field(default_factory=Counter)
    dispatch_dropped: int = 0
    handler_errors: int = 0
    batches: int = 0
    commands_sent: int = 0
    commands_timed_out: int = 0
    errors_throttled: int = 0  # error answers a flooding device did not get (anfang.error_throttle)
    inbox_peak: int = 0  # the most messages that ever waited for ingest at once
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))

    def latency_percentiles(self) -> dict[str, float | None]:
        """p50/p99 of device report timestamp -> committed, over the last 20,000 reports with ``ts``."""
        if not self.latencies_ms:
            return {"ingest_latency_ms_p50": None, "ingest_latency_ms_p99": None}
        ordered = sorted(self.latencies_ms)

        def pick(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

        return {"ingest_latency_ms_p50": pick(0.50), "ingest_latency_ms_p99": pick(0.99)}

    def as_json(self) -> dict[str, Any]:
        return {
            **self.latency_percentiles(),
            "received": self.received,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "clock_skew_clamped": self.clock_skew_clamped,
            "rejected": sum(self.rejected.values()),
            "rejected_by_code": {str(k): v for k, v in self.rejected.items()},
            "dispatch_dropped": self.dispatch_dropped,
            "handler_errors": self.handler_errors,
            "batches": self.batches,
            "commands_sent": self.commands_sent,
            "commands_timed_out": self.commands_timed_out,
            "errors_throttled": self.errors_throttled,
            "inbox_peak": self.inbox_peak,
        }


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
        self._batch_max, self._command_timeout = batch_max, command_timeout
        self._arrivals: deque[tuple[Inbound, Callable[[], None]]] = deque()
        self._arrived = asyncio.Event()
        self._inbox_warn, self._warned_at, self._reading_paused = inbox_size, 0.0, False
        self._write_lock = asyncio.Lock()
        self._devices: dict[str, DeviceInfo] = {}
        self._twins: dict[str, TwinDocument] = {}
        self._recent_events: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._pending: dict[str, tuple[asyncio.Future[CommandResult], CommandRecord]] = {}
        self._queues: list[asyncio.Queue[DeviceEvent | TwinChange]] = [
            asyncio.Queue(_DISPATCH_QUEUE) for _ in self.handlers
        ]
        self._subscriptions = list(subscriptions)
        self._tasks, self._health_sinks, self._publish_taps = list(tasks), list(health_sinks), list(publish_taps)
        self._health_interval = health_interval
        self._committed = asyncio.Condition(self._write_lock)
        self._expiries: list[tuple[float, str]] = []  # heap of (when, device id): momentary desired fields
        self._expiry_changed = asyncio.Event()
        self.ready = asyncio.Event()

    # ---- running -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled: ingest loop, one dispatcher per handler, health publisher."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._ingest_loop(), name="ingest")
            for handler, queue in zip(self.handlers, self._queues, strict=True):
                tg.create_task(self._dispatch_loop(handler, queue), name=f"dispatch-{type(handler).__name__}")
            await self.link.start(self._subscriptions, self.ingest, self.accept)
            for site in self._sites if self._features else ():  # none: a worker that speaks for no services
                self.link.publish(topics.platform_topic(site, "features"), {"features": self._features}, retain=True)
            tg.create_task(self._health_loop(), name="health")
            tg.create_task(self._expiry_loop(), name="desired-expiry")
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
            if self._reading_paused and len(self._arrivals) < self._inbox_warn // 2:
                self._reading_paused = False
                self.link.pause_reading(False)
            outcome = await self._apply_batch([msg for msg, _ in batch])
            for _, ack in batch:
                ack()
            await self._dispatch(outcome.dispatch)

    async def _apply_batch(self, batch: list[Inbound]) -> Outcome:
        async with self._write_lock:
            await self._preload(batch)
            seen = await self._seen_events(batch)
            now = time.time()
            outcome = process_batch(
                batch, self._devices, self._twins, seen, now=now, limits=self._limits, max_payload=self._max_payload
            )
            finished = self._finish_commands(outcome, now)
            feed = self._feed.rows(outcome.dispatch) if self._feed is not None else ()
            # a failed commit propagates and stops the worker: nothing was acknowledged, the broker redelivers
            await self.store.commit(outcome.twins.values(), outcome.events, finished, feed)
            self._watch_expiries(outcome.twins.values())
            if self.last_seen is not None:
                for device_id in heard_from(batch):
                    if device_id in self._devices:  # registered: the map stays bounded by the registry
                        self.last_seen.saw(device_id, now)
            for event in outcome.events:
                self._remember_event((event.device_id, event.event_id))
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

    def _watch_expiries(self, docs: Any) -> None:
        for doc in docs:
            at = doc.next_expiry
            if at is not None:
                heapq.heappush(self._expiries, (at, doc.device_id))
                self._expiry_changed.set()

    async def _expiry_loop(self) -> None:
        """Delete momentary desired fields when their time-to-live passes, also those set before a restart."""
        self._watch_expiries(await self.store.with_desired_expiry())
        while True:
            self._expiry_changed.clear()
            if not self._expiries:
                await self._expiry_changed.wait()
                continue
            wait = self._expiries[0][0] - time.time()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._expiry_changed.wait(), wait)
                continue
            _, device_id = heapq.heappop(self._expiries)
            await self._expire(device_id)

    async def _expire(self, device_id: str) -> None:
        async with self._write_lock:
            doc = self._twins.get(device_id) or await self.store.load(device_id)
            if doc is None:
                return
            now = time.time()
            applied = expire_desired(doc, now=now)
            if applied.document is doc:
                return
            await self.store.commit([applied.document])
            self._twins[device_id] = applied.document
            self._watch_expiries([applied.document])
            for pub in desired_publishes(applied.document, now):
                self.link.publish(pub.topic, pub.payload, qos=pub.qos, retain=pub.retain)
            self._committed.notify_all()
        log.info("momentary desired field(s) of %s expired: %s", device_id, sorted(applied.changed))

    async def _preload(self, batch: list[Inbound]) -> None:
        wanted = {m.topic.device_id for m in batch if m.topic is not None}
        for device_id in wanted - self._devices.keys():
            info = await self.registry.get_device(device_id)
            if info is not None:
                self._devices[device_id] = info
        for device_id in (wanted & self._devices.keys()) - self._twins.keys():
            doc = await self.store.load(device_id)
            if doc is not None:
                self._twins[device_id] = doc

    async def _seen_events(self, batch: list[Inbound]) -> set[tuple[str, str]]:
        keys: list[tuple[str, str]] = []
        for msg in batch:
            if msg.topic is not None and msg.topic.channel is topics.Channel.EVENT:
                event_id = _peek_event_id(msg.payload)
                if event_id is not None:
                    keys.append((msg.topic.device_id, event_id))
        seen = {k for k in keys if k in self._recent_events}
        seen |= await self.store.seen_events([k for k in keys if k not in seen])
        return seen

    def _remember_event(self, key: tuple[str, str]) -> None:
        self._recent_events[key] = None
        if len(self._recent_events) > _RECENT_EVENTS:
            self._recent_events.popitem(last=False)

    def _finish_commands(self, outcome: Outcome, now: float) -> list[CommandRecord]:
        records = []
        for answer in outcome.answers:
            pending = self._pending.pop(answer.reply.id, None)
            if pending is None:
                log.info("result for unknown or finished command %s from %s", answer.reply.id, answer.device_id)
                continue
            future, sent = pending
            status = "ok" if answer.reply.ok else "error"
            records.append(
                CommandRecord(
                    sent.id, sent.device_id, sent.name, sent.args, status, answer.reply.result, sent.created_at, now
                )
            )
            if not future.done():
                future.set_result(CommandResult(sent.id, answer.reply.ok, answer.reply.result, answer.reply.error))
        return records

    async def deliver(self, items: list[DeviceEvent | TwinChange]) -> None:
        """Hand changes committed by another worker of the site (the feed) to this worker's handlers."""
        await self._dispatch(items)

    async def _dispatch(self, items: list[DeviceEvent | TwinChange]) -> None:
        for item in items:
            for queue in self._queues:
                await queue.put(item)  # back-pressure: a slow handler slows intake, never loses an event

    def _dispatch_nowait(self, item: DeviceEvent | TwinChange) -> None:
        for queue in self._queues:
            try:
                queue.put_nowait(item)
            except asyncio.QueueFull:
                self.counters.dispatch_dropped += 1
                log.error(
                    "dispatch queue full: dropped %s for %s",
                    type(item).__name__,
                    item.device_id,
                    extra={"device": item.device_id},
                )

    async def _dispatch_loop(self, handler: PlatformHandler, queue: asyncio.Queue[DeviceEvent | TwinChange]) -> None:
        while True:
            item = await queue.get()
            try:
                if isinstance(item, DeviceEvent):
                    await handler.on_event(item, self)
                else:
                    await handler.on_twin_change(item, self)
            except Exception:
                self.counters.handler_errors += 1
                log.exception(
                    "handler %s failed on %s from %s",
                    type(handler).__name__,
                    type(item).__name__,
                    item.device_id,
                    extra={"device": item.device_id},
                )

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
            "dispatch_depth": max((q.qsize() for q in self._queues), default=0),
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
                await self.store.commit([applied.document])
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
            await self.store.commit([applied.document])
            self._twins[device_id] = applied.document
            self._committed.notify_all()
        doc = applied.document
        self._dispatch_nowait(
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
        info = await self._device(device_id)
        if not topics.ID_RE.match(name):
            raise BadRequest(f"invalid command name {name!r}")
        wait = self._command_timeout if timeout is None else timeout
        now = time.time()
        record = CommandRecord(uuid.uuid4().hex, device_id, name, args, "sent", None, now, None)
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending[record.id] = (future, record)
        # publish first (a gate should not wait on the database to open); the record follows, and
        # never overwrites an answer that was recorded before it
        self.link.publish(
            topics.command_topic(info.site, device_id, name),
            {"id": record.id, "args": args, "ts": now, "timeout": wait},
        )
        self.counters.commands_sent += 1
        try:
            await self.store.record_command_sent(record)
            return await asyncio.wait_for(future, wait)
        except TimeoutError:
            self._pending.pop(record.id, None)
            self.counters.commands_timed_out += 1
            log.warning(
                "command %s %s to %s timed out after %.1fs",
                name,
                record.id,
                device_id,
                wait,
                extra={"device": device_id},
            )
            done = time.time()
            await self.store.commit(
                [], commands=[CommandRecord(record.id, device_id, name, args, "timeout", None, now, done)]
            )
            self.link.publish(
                topics.platform_topic(info.site, f"commands/{record.id}"),
                {"id": record.id, "device_id": device_id, "name": name, "status": "timeout", "ts": done},
            )
            return CommandResult(record.id, False, {}, "timed out", timed_out=True)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        self.link.publish(topic, payload, qos=qos, retain=retain)
        for tap in self._publish_taps:
            tap(topic, payload)


def _peek_event_id(payload: bytes) -> str | None:
    """The event id, read before the full parse (which may still reject the event)."""
    try:
        data = jsoncodec.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
