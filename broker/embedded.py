"""The embedded amqtt broker with per-device authentication and topic access control.

amqtt loads plugins by dotted path, so the plugins are bound to the platform's
:class:`Authenticator` after the broker is built (``bind``), not through globals.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.errors import AMQTTError
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.acl import Identity, Role, client_id_refusal, may_publish, may_subscribe
from twins.topics import parse

log = logging.getLogger(__name__)


class BrokerError(Exception):
    """The embedded broker could not start (e.g. its port is taken)."""


class Authenticator(Protocol):
    async def authenticate(self, username: str | None, password: str | None) -> Identity | None: ...


DirectIngest = Callable[[str, bytes], Awaitable[None]]
_HOOK_ATTR = "anfang_direct_ingest"
_original_handle_publish = BrokerProtocolHandler.handle_publish


async def _handle_publish_after_commit(self: BrokerProtocolHandler, packet: PublishPacket) -> None:
    """amqtt acknowledges a PUBLISH as soon as it is queued in memory; a crash right after would lose it.

    For platform-bound topics the embedded broker first hands the message to the platform and
    waits until it is committed, then lets amqtt acknowledge and route it as usual.
    """
    hook = getattr(self.plugins_manager, _HOOK_ATTR, None)
    if hook is not None and self.session is not None and packet.topic_name is not None and packet.data is not None:
        await hook(self.session.client_id, packet.topic_name, bytes(packet.data))
    await _original_handle_publish(self, packet)


BrokerProtocolHandler.handle_publish = _handle_publish_after_commit

_original_retained_for = Broker._publish_retained_messages_for_subscription


async def _retained_for_own_subscriptions(self: Broker, subscription: tuple[str, int], session: Session) -> None:
    """amqtt 0.12 sends a connecting client the retained messages of *every* client's subscriptions.

    That would hand a door the retained desired state and status of every other device (and alarms),
    past the topic ACL; only the client's own (ACL-checked) subscriptions get their retained messages.
    """
    subscribers = self._subscriptions.get(subscription[0], [])
    if any(sub.client_id == session.client_id for sub, _ in subscribers):
        await _original_retained_for(self, subscription, session)


Broker._publish_retained_messages_for_subscription = _retained_for_own_subscriptions


_original_init_from_connect = BrokerProtocolHandler.init_from_connect


async def _init_from_connect_authenticated(
    cls: type[BrokerProtocolHandler], reader: Any, writer: Any, plugins_manager: Any, loop: Any = None
) -> tuple[BrokerProtocolHandler, Session]:
    """amqtt 0.12 finds, changes (will, user name) and takes over the session named by a CONNECT's
    client id before it checks the credentials: anyone knowing a device's id knocked it off and
    rewrote its session, and a clean-session CONNECT deleted it. Refuse before any session is touched."""
    handler, session = await _original_init_from_connect(reader, writer, plugins_manager, loop)
    returns = await plugins_manager.map_plugin_auth(session=session)
    results = [result for result in (returns or {}).values() if result is not None]
    if not results or not all(results):
        await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
        await writer.close()
        raise AMQTTError(f"refused {session.client_id!r} before touching any session")
    if session.clean_session:
        await _take_over(plugins_manager, session.client_id)
    return handler, session


async def _take_over(plugins_manager: Any, client_id: str) -> None:
    """MQTT-3.1.4-2: a CONNECT with a client id already connected closes that connection. amqtt 0.12
    does so only for a persistent session; with a clean one it dropped the old session from its table
    and left its connection running, unreachable (and a device's reconnect left a ghost behind).
    The old connection goes as a dropped one does: its will is published before the new one starts."""
    broker = getattr(plugins_manager.context, "_broker_instance", None)  # amqtt offers no public accessor
    entry = broker._sessions.get(client_id) if broker is not None else None
    if entry is None or not entry[0].transitions.is_connected():
        return
    old, old_handler = entry
    await old_handler.handle_connection_closed()
    await old_handler.stop()
    for _ in range(100):  # amqtt's own client loop publishes the will and marks it disconnected
        if not old.transitions.is_connected():
            break
        await asyncio.sleep(0.01)


BrokerProtocolHandler.init_from_connect = classmethod(_init_from_connect_authenticated)


@dataclass
class BrokerStats:
    """Counters of refused connections and denied publishes/subscriptions."""

    auth_refused: int = 0
    client_id_refused: int = 0
    delivery_denied: int = 0
    publish_denied: int = 0
    subscribe_denied: int = 0
    identities: dict[str, Identity] = field(default_factory=dict)


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Accepts a client only if its username and secret match a device or service account."""

    authenticator: Authenticator | None = None
    stats: BrokerStats | None = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        # amqtt asks twice per CONNECT (see _init_from_connect_authenticated): hash the secret once
        self._verified: dict[tuple[str, str | None, str | None], Identity] = {}

    def bind(self, authenticator: Authenticator, stats: BrokerStats) -> None:
        self.authenticator, self.stats = authenticator, stats

    async def authenticate(self, *, session: Session) -> bool:
        if self.authenticator is None or self.stats is None:
            return False
        key = (session.client_id, session.username, session.password)
        identity = self._verified.pop(key, None)
        if identity is None:
            identity = await self.authenticator.authenticate(session.username, session.password)
            if identity is None:
                self.stats.auth_refused += 1
                log.warning("refused MQTT connection: user=%r client=%r", session.username, session.client_id)
                return False
            refusal = client_id_refusal(identity, session.client_id)
            if refusal is not None:
                self.stats.auth_refused += 1
                self.stats.client_id_refused += 1
                log.warning(
                    "refused MQTT connection: user=%r client=%r: %s", session.username, session.client_id, refusal
                )
                return False
            if len(self._verified) > 1000:  # connections that vanished between the two checks
                self._verified.clear()
            self._verified[key] = identity
            return True
        self.stats.identities[session.client_id] = identity
        return True


class DeviceTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Lets each identity publish and subscribe only where :mod:`broker.acl` allows."""

    stats: BrokerStats | None = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)

    def bind(self, stats: BrokerStats) -> None:
        self.stats = stats

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: Action | None = None
    ) -> bool:
        if self.stats is None or session is None or topic is None:
            return False
        identity = self.stats.identities.get(session.client_id)
        if identity is None or identity.username != session.username:
            return False
        if action == Action.RECEIVE:
            # checked against the receiving connection's own identity, not only at SUBSCRIBE time
            if may_subscribe(identity, topic):
                return True
            self.stats.delivery_denied += 1
            return False
        if action == Action.PUBLISH:
            if may_publish(identity, topic):
                return True
            self.stats.publish_denied += 1
            log.warning("denied publish: user=%s topic=%s", identity.username, topic)
            return False
        if may_subscribe(identity, topic):
            return True
        self.stats.subscribe_denied += 1
        log.warning("denied subscribe: user=%s filter=%s", identity.username, topic)
        return False


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`BrokerError` with a clear reason if ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BrokerError(
                    f"cannot start the embedded MQTT broker: {host}:{port} is already in use "
                    "(another broker running? set broker.bind / ANFANG_BROKER_BIND, or use an external "
                    "broker with broker.embedded: false)"
                ) from None
            raise BrokerError(f"cannot bind the embedded MQTT broker to {host}:{port}: {exc}") from None


def split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BrokerError(f"invalid broker address {bind!r}; expected host:port")
    return host, int(port)


class _SnapshotDict(dict[Any, Any]):
    """A dict whose iteration walks a copy, so it may change while a loop over it is suspended."""

    def __iter__(self) -> Iterator[Any]:
        return iter(list(super().keys()))

    def items(self) -> Any:
        return list(super().items())


class EmbeddedBroker:
    """amqtt on ``bind`` with device authentication; use as an async context manager."""

    def __init__(self, bind: str, authenticator: Authenticator) -> None:
        self.host, self.port = split_bind(bind)
        self.stats = BrokerStats()
        self._authenticator = authenticator
        config: dict[str, Any] = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {
                f"{__name__}.DeviceAuthPlugin": {},
                f"{__name__}.DeviceTopicPlugin": {},
            },
        }
        self._broker = Broker(config)
        # amqtt walks its subscription table across awaits while broadcasting; a client subscribing
        # meanwhile made it raise "dictionary changed size during iteration" and drop the message
        # (seen: a device's "online" status lost while devices reconnected after a power cut)
        self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)

    async def __aenter__(self) -> EmbeddedBroker:
        check_port_free(self.host, self.port)
        for plugin in self._broker.plugins_manager._plugins:  # amqtt offers no public accessor
            if isinstance(plugin, DeviceAuthPlugin):
                plugin.bind(self._authenticator, self.stats)
            elif isinstance(plugin, DeviceTopicPlugin):
                plugin.bind(self.stats)
        try:
            await self._broker.start()
        except Exception as exc:
            raise BrokerError(f"embedded MQTT broker failed to start on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._broker.shutdown()

    async def disconnect(self, client_id: str, *, forget: bool = False) -> bool:
        """Close ``client_id``'s live connection now, as if it had dropped (its will is published); its
        next CONNECT is authenticated afresh. ``forget`` also ends its session (subscriptions, queued
        messages). Returns whether a connection was open."""
        entry = self._broker._sessions.get(client_id)  # amqtt offers no public accessor
        self.stats.identities.pop(client_id, None)  # nothing more is delivered to it
        was_open = False
        if entry is not None:
            session, handler = entry
            if session.transitions.is_connected():
                was_open = True
                log.warning("disconnecting %s: its credentials changed", client_id)
                # what amqtt itself does when a client id is taken over
                await handler.handle_connection_closed()
                await handler.stop()
        if forget:
            await self._broker._delete_session(client_id)
        return was_open

    async def clear_retained(self, topics: Sequence[str]) -> None:
        """Drop the retained messages on ``topics`` (a deleted device's desired document and status)."""
        for topic in topics:
            await self._broker.retain_message(None, topic, None)

    def ingest_directly(self, ingest: DirectIngest) -> None:
        """Feed device messages to ``ingest`` (awaited to commit) before amqtt acknowledges them."""

        async def hook(client_id: str, topic: str, payload: bytes) -> None:
            identity = self.stats.identities.get(client_id)
            if identity is None or identity.role is Role.PLATFORM:
                return
            if parse(topic) is None and identity.role is not Role.DEVICE:
                return
            if may_publish(identity, topic):  # denied publishes are counted by the topic plugin
                await ingest(topic, payload)

        setattr(self._broker.plugins_manager, _HOOK_ATTR, hook)
