"""Every reach into amqtt's internals, in one place (amqtt 0.12.x). tests/core/test_core_amqtt_adapter.py
holds a test per patched connection behaviour and tests/core/test_core_broker_conformance.py the
delivery ones (QoS, offline queue, redelivery, retained messages, against Mosquitto too), so a new
amqtt that changes one of them fails loudly; :func:`_install` refuses to start if a patched name is gone.

amqtt's plugin interfaces (authentication, topic filtering) cover who may connect, publish and subscribe;
they do not cover framing, keepalive, packet sizes or acknowledgement order, which live in amqtt's
protocol handler. What this module changes, and why:

* **Framing** (:func:`_framed_packet_class`): every packet after CONNECT is read whole (``remaining
  length`` bytes) and parsed from that buffer. A packet whose header announces more than the
  broker's ``max_packet`` is refused *before its body is read*; a packet amqtt cannot parse, or
  parses without consuming it exactly (a PUBLISH to a wildcard topic), closes the connection. Stock
  amqtt skips such a packet half-read and parses its remaining bytes as the next packet.
* **CONNECT** (:func:`_init_from_connect`): read as one bounded frame within a deadline; a protocol
  level other than 4 (MQTT 3.1.1) gets CONNACK 0x01 "unacceptable protocol version" (stock amqtt
  mis-parses an MQTT 5 CONNECT and hangs); credentials are checked before amqtt finds, changes or
  takes over the session the CONNECT names; a clean-session CONNECT closes the connection already
  using its client id (:func:`_take_over`); the client's keepalive becomes 1.5 times itself.
* **Closing a client** (:func:`close_connection`, :func:`forget_session`): for disabled devices and
  rotated secrets.
* **Keepalive** (:class:`EdgeHandler`): a connection silent for 1.5x its keepalive is closed and its
  will published (stock amqtt logs the read timeout and keeps waiting).
* **Publishes** (:class:`EdgeHandler`): a device's platform-bound message is handed to the platform
  and committed before amqtt acknowledges it.
* **Outgoing QoS 1/2** (:class:`EdgeHandler`): a message stays in flight until the client
  acknowledges it, also across a disconnect, and is sent again (DUP) when the session resumes.
  Stock amqtt forgets it after 5 s or on disconnect.
* **Delivery QoS** (:func:`_run_broadcast`): a message goes out at the lower of its published QoS and
  the subscription's (amqtt used the subscription's).
* **Offline queue** (:func:`_publish_session_queue`): messages queued for a persistent session go
  out in order without the retain flag.
* **Retained messages** (:func:`_retained_for_own_subscriptions`): a connecting client gets the
  retained messages of its own subscriptions only, not of every client's, at the right QoS.
* **Subscription table** (:class:`SnapshotDict`): may change while amqtt iterates it across awaits.
* **Fair intake** (:class:`_FramedClass`, :class:`EdgeHandler`): a connection has at most
  ``intake_bound`` PUBLISH packets read but not yet handed on (ingested and in its session's
  delivery queue, itself bounded to as many); beyond that its socket is not read until one is, so
  TCP pushes back on a flooding client, and another client's message never queues behind more than
  that many of the flooder's (amqtt read every packet at once, a task each, into unbounded queues).
* **Bounded outgoing queues** (:func:`_run_broadcast`, :meth:`EdgeHandler.deliver`): a client that
  reads slowly has at most ``qos0_queue`` QoS 0 and ``max_queued`` QoS 1/2 deliveries pending, and an
  offline persistent session at most ``max_queued`` queued messages (Mosquitto's
  ``max_queued_messages``); a message beyond is dropped, counted and logged (amqtt kept a task per
  message without limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import amqtt
from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.codecs_amqtt import read_or_raise
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt import packet_class
from amqtt.mqtt.connack import NOT_AUTHORIZED, UNACCEPTABLE_PROTOCOL_VERSION, ConnackPacket
from amqtt.mqtt.packet import CONNECT, PUBLISH, MQTTFixedHeader
from amqtt.mqtt.protocol import handler as amqtt_handler
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.session import INCOMING, OUTGOING, Session

log = logging.getLogger(__name__)

TESTED_AMQTT = "0.12"  # the minor version whose internals this module was written against
SUPPORTED_PROTOCOL_LEVEL = 4  # MQTT 3.1.1
KEEPALIVE_FACTOR = 1.5  # [MQTT-3.1.2-24]: disconnect after one and a half keepalive periods of silence
CONNECT_DEADLINE_S = 30.0  # a connection that sends no complete CONNECT within this is closed
# a packet is its payload plus the topic (at most 64 KiB) and a few header bytes
PACKET_OVERHEAD = 65_536 + 16
# fair delivery (issue 20 item 5): per connection, what may wait before the broker pushes back or drops
INTAKE_BOUND = 8  # PUBLISH packets read and not yet handed on; then the socket is not read
QOS0_QUEUE = 100  # QoS 0 deliveries to a slow reader; newer ones are dropped
MAX_QUEUED = 1000  # QoS 1/2 deliveries pending or queued offline, as Mosquitto's max_queued_messages default

DirectIngest = Callable[[str, str, bytes], Awaitable[None]]  # (client id, topic, payload)

if not amqtt.__version__.startswith(TESTED_AMQTT + "."):
    log.warning(
        "amqtt %s: broker/amqtt_adapter.py was written for %s.x; run its tests", amqtt.__version__, TESTED_AMQTT
    )


class ProtocolViolation(Exception):
    """A client broke the protocol; its connection is closed.

    Deliberately not an amqtt ``MQTTError``: amqtt's reader loop skips a packet on those and keeps
    reading (out of step), while any other exception ends the loop, closes the connection and
    publishes the client's will."""


class PacketTooLarge(ProtocolViolation):
    """A packet's header announced more bytes than the broker accepts."""


@dataclass
class EdgePolicy:
    """Per-broker settings of the patched behaviours, kept on the broker's plugin manager."""

    max_packet: int
    ingest: DirectIngest | None = None
    closed_oversized: int = 0
    closed_violations: int = 0
    closed_keepalive: int = 0
    refused_protocol: int = 0
    intake_bound: int = INTAKE_BOUND
    qos0_queue: int = QOS0_QUEUE
    max_queued: int = MAX_QUEUED
    intake_paused: int = 0  # times a connection's reading waited for its earlier messages
    dropped_qos0: int = 0
    dropped_queued: int = 0

    def dropped(self, kind: str, client_id: str) -> None:
        """Count a message dropped for a full queue; logged at the first and then every thousandth."""
        total = self.dropped_qos0 + self.dropped_queued
        if kind == "qos0":
            self.dropped_qos0 += 1
        else:
            self.dropped_queued += 1
        if total % 1000 == 0:
            log.warning(
                "dropped a message for %s: its %s queue is full (%d dropped in all)", client_id, kind, total + 1
            )


_POLICY_ATTR = "anfang_edge_policy"


def install_policy(broker: Broker, policy: EdgePolicy) -> None:
    setattr(broker.plugins_manager, _POLICY_ATTR, policy)


def _policy(plugins_manager: Any) -> EdgePolicy | None:
    return getattr(plugins_manager, _POLICY_ATTR, None)


def broker_plugins(broker: Broker) -> list[Any]:
    """The broker's loaded plugin objects (amqtt offers no public accessor)."""
    return list(broker.plugins_manager._plugins)


def broker_sessions(broker: Broker) -> dict[str, tuple[Session, BrokerProtocolHandler]]:
    """Client id → (session, handler) of every session the broker holds, connected or not."""
    return broker.sessions  # type: ignore[no-any-return]  # amqtt ships no type information


async def close_connection(broker: Broker, client_id: str) -> bool:
    """Close ``client_id``'s live connection as if it had dropped (amqtt then publishes its will, as it
    does when a client id is taken over); returns whether one was open."""
    entry = broker.sessions.get(client_id)
    if entry is None or not entry[0].transitions.is_connected():
        return False
    _, handler = entry
    await handler.handle_connection_closed()
    await handler.stop()
    return True


async def forget_session(broker: Broker, client_id: str) -> None:
    """End ``client_id``'s session: its subscriptions and queued messages."""
    await broker._delete_session(client_id)


async def _take_over(plugins_manager: Any, client_id: str) -> None:
    """MQTT-3.1.4-2: a CONNECT with a client id already connected closes that connection. amqtt 0.12
    does so only for a persistent session; with a clean one it dropped the old session from its table
    and left its connection running, unreachable (and a device's reconnect left a ghost behind).
    The old connection goes as a dropped one does: its will is published before the new one starts."""
    broker = getattr(plugins_manager.context, "_broker_instance", None)  # amqtt offers no public accessor
    entry = broker.sessions.get(client_id) if broker is not None else None
    if entry is None or not entry[0].transitions.is_connected():
        return
    old, old_handler = entry
    await old_handler.handle_connection_closed()
    await old_handler.stop()
    for _ in range(100):  # amqtt's own client loop publishes the will and marks it disconnected
        if not old.transitions.is_connected():
            break
        await asyncio.sleep(0.01)


# ---------------------------------------------------------------------------------------------------
# Framing


class _FrameReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """Serves one packet's bytes; reading past them or leaving some unread is a protocol violation."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    async def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        if end > len(self._data):
            raise ProtocolViolation("packet shorter than its contents claim")
        chunk, self._pos = self._data[self._pos : end], end
        return chunk

    def feed_eof(self) -> None:
        pass

    @property
    def consumed(self) -> bool:
        return self._pos == len(self._data)


async def read_frame_body(reader: ReaderAdapter, header: MQTTFixedHeader, max_packet: int | None) -> bytes:
    """The ``remaining length`` bytes after ``header``, refused before reading when over ``max_packet``."""
    if max_packet is not None and header.remaining_length > max_packet:
        raise PacketTooLarge(f"packet of {header.remaining_length} bytes over the limit of {max_packet}")
    if header.remaining_length == 0:
        return b""
    return bytes(await read_or_raise(reader, header.remaining_length))


async def parse_frame(cls: Any, header: MQTTFixedHeader, body: bytes) -> Any:
    """Parse one whole packet with amqtt's class ``cls``; it must consume exactly ``body``."""
    frame = _FrameReader(body)
    try:
        packet = await cls.from_stream(frame, fixed_header=header)
    except ProtocolViolation:
        raise
    except (MQTTError, AMQTTError, NoDataError, ValueError, UnicodeDecodeError) as exc:
        raise ProtocolViolation(f"malformed packet type {header.packet_type}: {exc}") from None
    if not frame.consumed:
        raise ProtocolViolation(f"packet type {header.packet_type} longer than its contents")
    return packet


class _FramedClass:
    """Stands in for an amqtt packet class in its reader loop: reads the whole frame, then parses it."""

    def __init__(self, cls: Any) -> None:
        self._cls = cls

    async def from_stream(self, reader: ReaderAdapter, fixed_header: MQTTFixedHeader) -> Any:
        policy: EdgePolicy | None = getattr(reader, "policy", None)
        try:
            body = await read_frame_body(reader, fixed_header, policy.max_packet if policy else None)
            packet = await parse_frame(self._cls, fixed_header, body)
        except PacketTooLarge:
            if policy is not None:
                policy.closed_oversized += 1
            raise
        except ProtocolViolation:
            if policy is not None:
                policy.closed_violations += 1
            raise
        intake: asyncio.Semaphore | None = getattr(reader, "intake", None)
        if intake is not None and fixed_header.packet_type == PUBLISH:
            # released by EdgeHandler.handle_publish; until then this connection's socket is not read
            if intake.locked() and policy is not None:
                policy.intake_paused += 1
            await intake.acquire()
        return packet


def _framed_packet_class(fixed_header: MQTTFixedHeader) -> Any:
    return _FramedClass(packet_class(fixed_header))


class _LimitedReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """The connection's reader, carrying the broker's policy (packet size limit, counters) to
    :class:`_FramedClass`."""

    def __init__(self, inner: ReaderAdapter, policy: EdgePolicy) -> None:
        self._inner, self.policy = inner, policy
        self.intake = asyncio.Semaphore(policy.intake_bound)

    async def read(self, n: int = -1) -> bytes:
        return await self._inner.read(n)  # type: ignore[no-any-return]  # amqtt ships no type information

    def feed_eof(self) -> None:
        self._inner.feed_eof()


# ---------------------------------------------------------------------------------------------------
# CONNECT


def connect_protocol(body: bytes) -> tuple[str, int] | None:
    """Protocol name and level of a CONNECT body (pure); None when too short to tell."""
    if len(body) < 2:
        return None
    size = int.from_bytes(body[:2], "big")
    if len(body) < 2 + size + 1:
        return None
    return body[2 : 2 + size].decode("utf-8", "replace"), body[2 + size]


class _ReplayReader(ReaderAdapter):  # type: ignore[misc]  # amqtt ships no type information
    """Replays an already read CONNECT frame to amqtt's parser, and nothing more."""

    def __init__(self, frame: bytes) -> None:
        self._frame = _FrameReader(frame)

    async def read(self, n: int = -1) -> bytes:
        try:
            return await self._frame.read(n)
        except ProtocolViolation:
            raise NoDataError("CONNECT shorter than its contents claim") from None

    def feed_eof(self) -> None:
        pass


async def _refuse(writer: WriterAdapter, code: int) -> None:
    with contextlib.suppress(OSError, AMQTTError):
        await ConnackPacket.build(0, code).to_stream(writer)
    with contextlib.suppress(OSError):
        await writer.close()


async def _read_connect(reader: ReaderAdapter, writer: WriterAdapter, policy: EdgePolicy | None) -> bytes:
    header = await MQTTFixedHeader.from_stream(reader)
    if header is None:
        raise NoDataError("connection closed before CONNECT")
    if header.packet_type != CONNECT:
        raise ProtocolViolation(f"first packet is type {header.packet_type}, not CONNECT")
    body = await read_frame_body(reader, header, policy.max_packet if policy else None)
    protocol = connect_protocol(body)
    if protocol is None:
        raise ProtocolViolation("CONNECT too short")
    name, level = protocol
    if level != SUPPORTED_PROTOCOL_LEVEL:
        if policy is not None:
            policy.refused_protocol += 1
        log.warning("refused MQTT connection: protocol %s level %d (only MQTT 3.1.1, level 4)", name, level)
        await _refuse(writer, UNACCEPTABLE_PROTOCOL_VERSION)
        raise MQTTError(f"unsupported protocol {name} level {level}")
    return bytes(header.to_bytes()) + body


_original_init_from_connect = BrokerProtocolHandler.init_from_connect


async def _init_from_connect(
    cls: type[BrokerProtocolHandler],
    reader: ReaderAdapter,
    writer: WriterAdapter,
    plugins_manager: Any,
    loop: Any = None,
) -> tuple[BrokerProtocolHandler, Session]:
    """amqtt reads a CONNECT of any size with no deadline, mis-parses MQTT 5, and finds, changes (will,
    user name) and takes over the session a CONNECT names before it checks the credentials."""
    policy = _policy(plugins_manager)
    try:
        async with asyncio.timeout(CONNECT_DEADLINE_S):
            frame = await _read_connect(reader, writer, policy)
    except (ProtocolViolation, TimeoutError) as exc:
        if policy is not None and isinstance(exc, PacketTooLarge):
            policy.closed_oversized += 1
        elif policy is not None:
            policy.closed_violations += 1
        with contextlib.suppress(OSError):
            await writer.close()
        raise MQTTError(f"no valid CONNECT: {exc}") from None
    handler, session = await _original_init_from_connect.__func__(
        EdgeHandler, _ReplayReader(frame), writer, plugins_manager, loop
    )
    returns = await plugins_manager.map_plugin_auth(session=session)
    results = [result for result in (returns or {}).values() if result is not None]
    if not results or not all(results):
        await _refuse(writer, NOT_AUTHORIZED)
        raise AMQTTError(f"refused {session.client_id!r} before touching any session")
    if session.clean_session:
        await _take_over(plugins_manager, session.client_id)
    if session.keep_alive > 0:
        session.keep_alive = session.keep_alive * KEEPALIVE_FACTOR
    return handler, session


# ---------------------------------------------------------------------------------------------------
# The connection handler


class EdgeHandler(BrokerProtocolHandler):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's broker-side connection handler with keepalive expiry, packet limits, publish checks
    and durable outgoing QoS 1/2 flows."""

    _intake: asyncio.Semaphore | None = None
    _pending_qos0 = 0
    _pending_queued = 0

    def attach(self, session: Session, reader: ReaderAdapter, writer: WriterAdapter) -> None:
        policy = _policy(self.plugins_manager)
        if policy is not None and not isinstance(reader, _LimitedReader):
            reader = _LimitedReader(reader, policy)
        if isinstance(reader, _LimitedReader):
            self._intake = reader.intake
            queue = session.delivered_message_queue
            if queue.maxsize == 0 and queue.empty():  # amqtt's is unbounded; handle_publish waits for room
                session.delivered_message_queue = asyncio.Queue(reader.policy.intake_bound)
        super().attach(session, reader, writer)

    async def stop(self) -> None:
        # a cancellation of the reader can be lost (Python 3.11's wait_for, around amqtt's read of each
        # packet header, swallows one that races with a completed read: CPython gh-86296); the reader
        # then read on, and parked at its intake bound it never ended while its handler's stop waited
        # for it (seen under a flood: a take-over and a shutdown hung): cancel until it stops
        reader = self._reader_task
        while reader is not None and reader is not asyncio.current_task() and not reader.done():
            if self._reader_stopped.is_set():
                break
            reader.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await self._reader_stopped.wait()
        await super().stop()

    def deliver(self, topic: str, data: Any, qos: int, retain: bool) -> asyncio.Future[Any] | None:
        """Send a message to this client as a task, or drop it (counted) when its queue is full."""
        policy = _policy(self.plugins_manager)
        if policy is not None and self.session is not None:
            full = self._pending_qos0 >= policy.qos0_queue if qos == 0 else self._pending_queued >= policy.max_queued
            if full:
                policy.dropped("qos0" if qos == 0 else "queued", self.session.client_id)
                return None
        # counted now (a burst of broadcasts runs before any of its tasks starts), settled when done
        if qos == 0:
            self._pending_qos0 += 1
        else:
            self._pending_queued += 1
        task: asyncio.Future[Any] = asyncio.ensure_future(self.mqtt_publish(topic, data, qos, retain))
        task.add_done_callback(lambda _: self._settled(qos))
        return task

    def _settled(self, qos: int) -> None:
        if qos == 0:
            self._pending_qos0 -= 1
        else:
            self._pending_queued -= 1

    def _close_from_reader(self) -> None:
        """End the reader loop as if the connection dropped: amqtt then publishes the will."""
        if self._reader_task is not None and not self._reader_task.done():
            self._reader_task.cancel()

    def handle_read_timeout(self) -> None:
        policy = _policy(self.plugins_manager)
        if policy is not None:
            policy.closed_keepalive += 1
        client_id = self.session.client_id if self.session else None
        log.info("closing %s: nothing received for 1.5x its keepalive", client_id)
        self._close_from_reader()

    async def handle_publish(self, packet: PublishPacket) -> None:
        intake, self_release = self._intake, True
        try:
            session, topic = self.session, packet.topic_name
            if session is None or topic is None or packet.data is None:
                return
            policy = _policy(self.plugins_manager)
            if policy is not None and policy.ingest is not None:
                # amqtt acknowledges a PUBLISH once queued in memory; a crash right after would lose it, so
                # the platform's messages are committed first, then amqtt acknowledges and routes them
                await policy.ingest(session.client_id, topic, bytes(packet.data))
            if packet.qos == 2 and intake is not None:
                # its flow waits for the client's PUBREL, which the reader must be free to read
                self_release = False
                intake.release()
            await super().handle_publish(packet)  # QoS 0/1: waits for room in the bounded delivery queue
        finally:
            if intake is not None and self_release:
                intake.release()

    async def _handle_qos0_message_flow(self, app_message: Any) -> None:
        session = self.session
        if app_message.direction != INCOMING or session is None or app_message.publish_packet is None:
            await super()._handle_qos0_message_flow(app_message)
            return
        if app_message.publish_packet.dup_flag:  # [MQTT-3.3.1-2], ignored as amqtt does
            return
        # amqtt dropped it when the queue was full (put_nowait); waiting keeps the intake bound lossless
        await session.delivered_message_queue.put(app_message)

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING or self.session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        session = self.session
        session.inflight_out[app_message.packet_id] = app_message
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._puback_waiters[app_message.packet_id] = waiter
        try:
            await self._send_packet(packet)
            app_message.publish_packet = packet
            app_message.puback_packet = await waiter
        finally:
            self._puback_waiters.pop(app_message.packet_id, None)
        # [MQTT-4.4.0-1]: only an acknowledged message leaves the session; an unacknowledged one is
        # sent again (DUP) when the client resumes the session
        session.inflight_out.pop(app_message.packet_id, None)

    async def _handle_qos2_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING or self.session is None:
            await super()._handle_qos2_message_flow(app_message)
            return
        session = self.session
        session.inflight_out[app_message.packet_id] = app_message
        if app_message.pubrec_packet is None:
            packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
            app_message.publish_packet = packet
            app_message.pubrec_packet = await self._exchange(self._pubrec_waiters, app_message.packet_id, packet)
        pubrel = PubrelPacket.build(app_message.packet_id)
        app_message.pubcomp_packet = await self._exchange(self._pubcomp_waiters, app_message.packet_id, pubrel)
        app_message.pubrel_packet = pubrel
        session.inflight_out.pop(app_message.packet_id, None)

    async def _exchange(self, waiters: dict[int, asyncio.Future[Any]], packet_id: int, packet: Any) -> Any:
        waiter: asyncio.Future[Any] = self._loop.create_future()
        waiters[packet_id] = waiter
        try:
            await self._send_packet(packet)
            return await waiter
        finally:
            waiters.pop(packet_id, None)


# ---------------------------------------------------------------------------------------------------
# Broker-level patches

_publish_qos: contextvars.ContextVar[int | None] = contextvars.ContextVar("publish_qos", default=None)
_original_message_delivery = Broker._handle_message_delivery


async def _message_delivery(self: Broker, session: Session, handler: Any, wait_deliver: Any) -> bool:
    """Remembers the QoS a message was published with while amqtt routes it (see :func:`_broadcast_message`)."""
    message = wait_deliver.result()
    token = _publish_qos.set(message.qos if message is not None else None)
    try:
        return bool(await _original_message_delivery(self, session, handler, wait_deliver))
    finally:
        _publish_qos.reset(token)


async def _broadcast_message(
    self: Broker, session: Session | None, topic: str | None, data: Any, force_qos: int | None = None
) -> None:
    """amqtt forgets the QoS a message was published with and delivers it at each subscription's QoS
    (a QoS 0 publish went out as QoS 2); it is kept here so that delivery uses the lower of the two."""
    broadcast: dict[str, Any] = {"session": session, "topic": topic, "data": data}
    qos = force_qos if force_qos is not None else _publish_qos.get()
    if qos is not None:
        broadcast["qos"] = qos
    await self._broadcast_queue.put(broadcast)


async def _run_broadcast(self: Broker, running_tasks: Any) -> None:
    """amqtt's broadcast step, delivering at min(published QoS, subscription QoS) [MQTT-3.8.4-6]."""
    broadcast = await self._broadcast_queue.get()
    topic = broadcast["topic"]
    for topic_filter, subscriptions in self._subscriptions.items():
        if not self._matches(topic, topic_filter):
            continue
        for target, sub_qos in subscriptions:
            qos = min(broadcast.get("qos", sub_qos), sub_qos)
            if not await self._topic_filtering(target, topic=topic, action=Action.RECEIVE):
                continue
            connected = target.transitions.state == "connected"
            if not connected and not target.clean_session and qos in (1, 2) and not target.is_anonymous:
                await _queue_offline(self, broadcast, qos, target)
                continue
            handler = self._get_handler(target) if connected else None
            task = _deliver(handler, topic, broadcast["data"], qos) if handler is not None else None
            if task is not None:
                running_tasks.append(task)


def _deliver(handler: Any, topic: str, data: Any, qos: int) -> asyncio.Future[Any] | None:
    if isinstance(handler, EdgeHandler):
        bounded: asyncio.Future[Any] | None = handler.deliver(topic, data, qos, False)
        return bounded
    return asyncio.ensure_future(handler.mqtt_publish(topic, data, qos, False))  # type: ignore[no-any-return]  # amqtt untyped


async def _queue_offline(self: Broker, broadcast: dict[str, Any], qos: int, target: Session) -> None:
    """A message for an offline persistent session, unless its queue holds ``max_queued`` already."""
    policy = _policy(self.plugins_manager)
    if policy is not None and target.retained_messages.qsize() >= policy.max_queued:
        policy.dropped("queued", target.client_id)
        return
    await self._retain_broadcast_message(broadcast, qos, target)


async def _publish_session_queue(self: Broker, session: Session) -> None:
    """Messages queued for an offline persistent session go out without the retain flag (amqtt set it,
    as if they were retained messages). Each is its own task, started in queue order (so sent in
    order); a client that drops before acknowledging them ends their tasks, not this connection's."""
    handler = self._get_handler(session)
    if handler is None:
        return
    tasks = []
    while not session.retained_messages.empty():
        queued = session.retained_messages.get_nowait()
        tasks.append(asyncio.ensure_future(handler.mqtt_publish(queued.topic, queued.data, queued.qos, False)))
    if tasks:
        await asyncio.wait(tasks)


async def _retained_for_own_subscriptions(self: Broker, subscription: tuple[str, int], session: Session) -> None:
    """The retained messages a new subscription gets, at min(retained QoS, subscription QoS) (amqtt
    sent QoS 0 ones at the subscription's QoS).

    amqtt 0.12 also sent a connecting client the retained messages of *every* client's subscriptions:
    that would hand a door the retained desired state and status of every other device (and alarms),
    past the topic ACL; only the client's own (ACL-checked) subscriptions get their retained messages.
    """
    topic_filter, qos = subscription
    subscribers = self._subscriptions.get(topic_filter, [])
    handler = self._get_handler(session)
    if handler is None or not any(sub.client_id == session.client_id for sub, _ in subscribers):
        return
    tasks = [
        asyncio.ensure_future(
            handler.mqtt_publish(topic, retained.data, min(qos, qos if retained.qos is None else retained.qos), True)
        )
        for topic, retained in list(self._retained_messages.items())
        if self._matches(topic, topic_filter)
    ]
    if tasks:
        await asyncio.wait(tasks)


class SnapshotDict(dict[Any, Any]):
    """A dict whose iteration walks a copy, so it may change while a loop over it is suspended."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> Any:
        return list(super().items())


def harden(broker: Broker) -> None:
    """Per-broker changes: amqtt walks its subscription table across awaits while broadcasting; a
    client subscribing meanwhile made it raise "dictionary changed size during iteration" and drop
    the message (seen: a device's "online" status lost while devices reconnected after a power cut)."""
    broker._subscriptions = SnapshotDict(broker._subscriptions)


def _install() -> None:
    # what is replaced must exist, or amqtt changed under us: fail at import, not at the first client
    for owner, name in (
        (amqtt_handler, "packet_class"),
        (BrokerProtocolHandler, "init_from_connect"),
        (BrokerProtocolHandler, "handle_read_timeout"),
        (BrokerProtocolHandler, "_handle_qos1_message_flow"),
        (BrokerProtocolHandler, "_handle_qos2_message_flow"),
        (BrokerProtocolHandler, "_handle_qos0_message_flow"),
        (BrokerProtocolHandler, "stop"),
        (Broker, "_retain_broadcast_message"),
        (Broker, "_publish_retained_messages_for_subscription"),
        (Broker, "_handle_message_delivery"),
        (Broker, "_broadcast_message"),
        (Broker, "_run_broadcast"),
        (Broker, "_publish_session_retained_messages"),
    ):
        if not hasattr(owner, name):
            raise ImportError(f"amqtt {amqtt.__version__} has no {name}: broker/amqtt_adapter.py needs updating")
    amqtt_handler.packet_class = _framed_packet_class
    BrokerProtocolHandler.init_from_connect = classmethod(_init_from_connect)
    Broker._publish_retained_messages_for_subscription = _retained_for_own_subscriptions
    Broker._handle_message_delivery = _message_delivery
    Broker._broadcast_message = _broadcast_message
    Broker._run_broadcast = _run_broadcast
    Broker._publish_session_retained_messages = _publish_session_queue


_install()
