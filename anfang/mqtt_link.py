"""The platform's one MQTT client (gmqtt): persistent session, QoS 1, acknowledged after commit.

With ``optimistic_acknowledgement=False`` gmqtt sends PUBACK only when the async message
callback returns, so a message is acknowledged to the broker only after the platform has
committed it; a crash before that leaves it with the broker, which redelivers it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import gmqtt

from anfang import gmqtt_adapter
from twins import jsoncodec

log = logging.getLogger(__name__)

ReplyTo = tuple[str, bytes | None]  # MQTT 5 response topic and correlation data
MessageHandler = Callable[[str, bytes, bool, ReplyTo | None], Awaitable[None]]
AcceptQos1 = Callable[[str, bytes, ReplyTo | None, Callable[[], None], bool], None]  # ..., ack, redelivered


_FILTERS_PER_PACKET = 200
_PAUSED_READ_INTERVAL_S = 0.25
_MAX_WAITING = 100_000  # QoS 1 publishes held while the broker's receive maximum is reached
_Outgoing = tuple[str, "bytes | str", int, bool, dict[str, Any]]
# PUBACK: type 0x40, remaining length, packet id (+ MQTT 5: reason code 0 "success", no properties)
_PUBACK_V5 = struct.Struct("!BBHBB")
_PUBACK_V311 = struct.Struct("!BBH")


class MqttLinkError(Exception):
    """The broker refused or could not be reached."""


class MqttLink:
    """Connects, subscribes (optionally as an MQTT 5 shared-subscription group) and publishes."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        mqtt5: bool,
        keepalive: int = 30,
        shared_group: str | None = None,
        receive_maximum: int = 4000,
    ) -> None:
        self._host, self._port, self._keepalive = host, port, keepalive
        self._mqtt5 = mqtt5
        self._shared_group = shared_group if mqtt5 else None
        # MQTT 5: a session that outlives restarts, and a receive maximum that bounds unacknowledged
        # deliveries (the platform acknowledges only after commit)
        props: dict[str, Any] = (
            {"session_expiry_interval": 0xFFFFFFFF, "receive_maximum": receive_maximum} if mqtt5 else {}
        )
        self._client = gmqtt.Client(client_id, clean_session=False, optimistic_acknowledgement=False, **props)
        gmqtt_adapter.check(self._client)
        self._client.set_auth_credentials(username, password)
        self._client.set_config({"reconnect_retries": -1, "reconnect_delay": 1})
        self._handler: MessageHandler | None = None
        self._client.on_message = self._on_message
        self.published = 0
        self.dropped = 0
        self._connected = False
        self._pubacks: list[int] = []
        self._waiting: deque[_Outgoing] = deque()
        self._may_read = asyncio.Event()
        self._accept_qos1: AcceptQos1 | None = None
        self._may_read.set()
        self._subscriptions: list[gmqtt.Subscription] = []
        self._unacknowledged: set[int] = set()  # SUBSCRIBE packet ids the broker has not answered yet
        self.refused_filters: set[str] = set()
        self.resubscribed = 0  # connections that came back without a session
        self._granted = asyncio.Event()  # set while every subscription is granted
        self._client.on_subscribe = self._on_subscribe

    async def start(
        self, subscriptions: Sequence[str], handler: MessageHandler, accept_qos1: AcceptQos1 | None = None
    ) -> None:
        """Connect and subscribe. QoS 1 messages go to ``accept_qos1`` (if given) with a callable that
        sends their PUBACK — no task per message; everything else to the async ``handler``."""
        self._handler = handler
        self._accept_qos1 = accept_qos1
        self._resend_on_puback()
        if accept_qos1 is not None:
            self._take_qos1_directly(accept_qos1)
        self._client.on_connect = self._on_connect
        try:
            await self._client.connect(
                self._host,
                self._port,
                keepalive=self._keepalive,
                version=gmqtt.constants.MQTTv50 if self._mqtt5 else gmqtt.constants.MQTTv311,
            )
        except Exception as exc:
            raise MqttLinkError(f"cannot connect to MQTT broker {self._host}:{self._port}: {exc}") from exc
        self._connected = True
        self.subscribe(subscriptions)
        log.info("connected to MQTT broker %s:%d (MQTT %s)", self._host, self._port, "5" if self._mqtt5 else "3.1.1")

    @property
    def connected(self) -> bool:
        """Started and currently connected to the broker."""
        return self._connected and bool(self._client.is_connected)

    @property
    def subscribed(self) -> bool:
        """Connected, and the broker granted every subscription (none waits for its SUBACK)."""
        return self.connected and not self._unacknowledged and not self.refused_filters

    async def wait_subscribed(self) -> None:
        """Return once the broker has granted every subscription (again, after a reconnect)."""
        while not self.subscribed:
            self._granted.clear()
            await self._granted.wait()

    def state(self) -> str:
        """``ok``, or what is wrong with the link (for readiness and health)."""
        if not self.connected:
            return "not connected"
        if self.refused_filters:
            return f"connected but the broker refused {len(self.refused_filters)} subscriptions"
        if self._unacknowledged:
            return "connected but not subscribed"
        return "ok"

    def subscribe(self, filters: Sequence[str]) -> None:
        """Subscribe (QoS 1) to more topic filters, a few hundred per SUBSCRIBE packet.

        The filters are remembered: a connection that comes back without a session subscribes
        to all of them again."""
        full = [f"$share/{self._shared_group}/{t}" if self._shared_group else t for t in filters]
        subscriptions = [gmqtt.Subscription(t, qos=1) for t in full]
        self._subscriptions += subscriptions
        self._client.subscriptions.extend(subscriptions)  # gmqtt matches SUBACKs to them by packet id
        self._send_subscribe(subscriptions)

    def _send_subscribe(self, subscriptions: Sequence[gmqtt.Subscription]) -> None:
        for start in range(0, len(subscriptions), _FILTERS_PER_PACKET):
            chunk = subscriptions[start : start + _FILTERS_PER_PACKET]
            self._unacknowledged.add(gmqtt_adapter.send_subscribe(self._client, chunk))

    def _on_subscribe(self, client: Any, mid: int, granted: Sequence[int], properties: dict[str, Any]) -> None:
        self._unacknowledged.discard(mid)
        # gmqtt clears each subscription's packet id only after this callback
        answered = [sub.topic for sub in self._subscriptions if sub.mid == mid]
        for code, topic in zip(granted, answered, strict=False):
            if code >= 0x80:
                self.refused_filters.add(topic)
            else:
                self.refused_filters.discard(topic)
        if not self._unacknowledged:
            self._granted.set()
        refused = [code for code in granted if code >= 0x80]
        if refused:
            log.error("the MQTT broker refused %d subscriptions (SUBACK %s)", len(refused), sorted(set(refused)))

    def _take_qos1_directly(self, accept: AcceptQos1) -> None:
        # gmqtt wraps every QoS 1 message in a task whose completion sends the PUBACK; at tens of
        # thousands of messages per second that task is most of the cost. Hand the message over
        # synchronously with a callable that sends the PUBACK after the commit instead.
        def on_qos1(mid: int, payload: bytes, topic: str, properties: dict[str, Any]) -> None:
            ack = functools.partial(self._puback, mid)
            accept(topic, payload, _reply_to(properties), ack, bool(properties.get("dup")))

        gmqtt_adapter.take_qos1_publishes(self._client, on_qos1)

    def _puback(self, mid: int) -> None:
        # a batch acknowledges hundreds of messages at once: one socket write for all of them
        self._pubacks.append(mid)
        if len(self._pubacks) == 1:
            asyncio.get_running_loop().call_soon(self._flush_pubacks)

    def _flush_pubacks(self) -> None:
        mids, self._pubacks = self._pubacks, []
        if not self._connected:
            return  # the broker redelivers what was not acknowledged on the next connection
        if self._mqtt5:
            data = b"".join([_PUBACK_V5.pack(0x40, 4, mid, 0, 0) for mid in mids])
        else:
            data = b"".join([_PUBACK_V311.pack(0x40, 2, mid) for mid in mids])
        gmqtt_adapter.send_raw(self._client, data)

    async def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> int:
        assert self._handler is not None
        await self._handler(topic, payload, bool(properties.get("retain")), _reply_to(properties))
        return 0

    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) taking messages from the broker: TCP back-pressure for a backlog.

        Brokers do not all honour the MQTT 5 receive maximum; not reading makes the broker keep
        the messages (queued for this persistent session) instead of this process
        (:func:`anfang.gmqtt_adapter.gate_reads`).
        """
        if paused:
            self._may_read.clear()
        else:
            self._may_read.set()

    def _on_connect(self, client: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        """Each connection gets a new gmqtt protocol: gate its reads and give it the fast reader.

        A connection that comes back without a session (the broker crashed or lost its state, or
        the session expired) has no subscriptions: subscribe to everything again, or the platform
        stays connected and deaf. So does one whose SUBSCRIBE was never answered."""
        self._install_readers()
        if self._subscriptions and (not flags & 0x01 or self._unacknowledged):
            self._unacknowledged.clear()
            self.resubscribed += 1
            log.warning(
                "MQTT broker %s:%d kept no session for this client: subscribing to %d filters again",
                self._host,
                self._port,
                len(self._subscriptions),
            )
            self._send_subscribe(self._subscriptions)

    def _install_readers(self) -> None:
        gmqtt_adapter.gate_reads(self._client, self._may_read, _PAUSED_READ_INTERVAL_S)
        accept = self._accept_qos1
        if accept is not None:

            def on_publish(mid: int, topic: str, payload: bytes, dup: bool) -> None:
                accept(topic, payload, None, functools.partial(self._puback, mid), dup)

            gmqtt_adapter.install_fast_reader(self._client, self._mqtt5, on_publish)

    def publish(
        self,
        topic: str,
        payload: dict[str, Any] | str | bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        correlation: bytes | None = None,
        response_topic: str | None = None,
    ) -> None:
        if isinstance(payload, dict):
            body: bytes | str = jsoncodec.dumps_bytes(payload)
        else:
            body = payload
        props: dict[str, Any] = {"correlation_data": correlation} if correlation is not None and self._mqtt5 else {}
        if response_topic is not None and self._mqtt5:
            props["response_topic"] = response_topic
        if qos and self._waiting:
            self._wait_for_window((topic, body, qos, retain, props))  # keep the order of what waits
            return
        try:
            self._client.publish(topic, body, qos=qos, retain=retain, **props)
        except OverflowError:
            # every packet id the broker allows in flight is taken: wait for its PUBACKs
            self._wait_for_window((topic, body, qos, retain, props))
            return
        self.published += 1

    @property
    def waiting(self) -> int:
        """QoS 1 publishes waiting for the broker to acknowledge earlier ones."""
        return len(self._waiting)

    def _wait_for_window(self, message: _Outgoing) -> None:
        if len(self._waiting) >= _MAX_WAITING:
            self.dropped += 1
            log.error(
                "MQTT publish backlog full (%d): dropped a message to %s (%d dropped so far)",
                _MAX_WAITING,
                message[0],
                self.dropped,
            )
            return
        self._waiting.append(message)

    def _send_waiting(self) -> None:
        while self._waiting:
            topic, body, qos, retain, props = self._waiting[0]
            try:
                self._client.publish(topic, body, qos=qos, retain=retain, **props)
            except OverflowError:
                return
            self._waiting.popleft()
            self.published += 1

    def _resend_on_puback(self) -> None:
        def after_puback() -> None:
            if self._waiting:
                self._send_waiting()

        gmqtt_adapter.after_puback(self._client, after_puback)

    async def stop(self) -> None:
        """Disconnect for good — also a connection still being set up when ``start`` was cancelled (a partition
        handed off while its owner connects): gmqtt would otherwise keep reconnecting it, and two clients with
        the partition's client id take its session from each other every second, so neither is served."""
        self._connected = False
        try:
            await self._client.disconnect()
        except OSError as exc:  # the connection was lost already; nothing will reconnect it now
            log.debug("MQTT disconnect after the connection was lost: %s", exc)


def _reply_to(properties: dict[str, Any]) -> ReplyTo | None:
    """The MQTT 5 response topic and correlation data of a request, if it has them."""
    if not properties.get("response_topic"):
        return None
    correlation = properties.get("correlation_data")
    return str(properties["response_topic"][0]), bytes(correlation[0]) if correlation else None
