"""The embedded amqtt broker with per-device authentication and topic access control.

amqtt loads plugins by dotted path, so the plugins are bound to the platform's
:class:`Authenticator` after the broker is built (``bind``), not through globals.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from broker.acl import Identity, Role, client_id_refusal, may_publish, may_subscribe
from broker.amqtt_adapter import (
    PACKET_OVERHEAD,
    EdgePolicy,
    broker_plugins,
    close_connection,
    forget_session,
    harden,
    install_policy,
)
from broker.certs import common_name
from twins.topics import errors_topic, parse

log = logging.getLogger(__name__)


class BrokerError(Exception):
    """The embedded broker could not start (e.g. its port is taken)."""


class Authenticator(Protocol):
    async def authenticate(self, username: str | None, password: str | None) -> Identity | None: ...

    async def device_identity(self, device_id: str) -> Identity | None: ...


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """MQTT over TLS on ``bind`` with the site's server certificate. Clients presenting a certificate
    must present one signed by ``cafile`` (the site CA; any other is refused in the handshake), and
    are then the device named by its common name, without a password. ``require_client_cert``: a
    TLS client without a certificate is refused."""

    bind: str
    certfile: Path
    keyfile: Path
    cafile: Path
    require_client_cert: bool = False


@dataclass
class BrokerStats:
    """Counters of refused connections and denied publishes/subscriptions."""

    auth_refused: int = 0
    client_id_refused: int = 0
    delivery_denied: int = 0
    publish_denied: int = 0
    subscribe_denied: int = 0
    identities: dict[str, Identity] = field(default_factory=dict)


def _will_refusal(identity: Identity, session: Session) -> str | None:
    """A will is published by the broker on the client's behalf: only where the client may publish."""
    if session.will_flag and not may_publish(identity, session.will_topic or ""):
        return f"a will on {session.will_topic!r}, where it may not publish"
    return None


class DeviceAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no type information
    """Accepts a client only if its username and secret match a device or service account."""

    authenticator: Authenticator | None = None
    stats: BrokerStats | None = None
    require_client_cert = False

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        # amqtt asks twice per CONNECT (see _init_from_connect_authenticated): hash the secret once
        self._verified: dict[tuple[str, str | None, str | None], Identity] = {}

    def bind(self, authenticator: Authenticator, stats: BrokerStats, require_client_cert: bool = False) -> None:
        self.authenticator, self.stats, self.require_client_cert = authenticator, stats, require_client_cert

    async def _identify(self, session: Session) -> Identity | None:
        """A verified client certificate names the device (CN = device id, no password needed); other
        clients are who their user name and password say, unless the TLS listener requires certificates."""
        assert self.authenticator is not None
        if session.ssl_object is not None:
            device_id = common_name(session.ssl_object.getpeercert())
            if device_id is not None:
                if session.username not in (None, "", device_id):
                    log.warning(
                        "refused MQTT connection: user=%r with a certificate for %r", session.username, device_id
                    )
                    return None
                session.username = device_id
                return await self.authenticator.device_identity(device_id)
            if self.require_client_cert:
                log.warning("refused MQTT connection: user=%r without a client certificate", session.username)
                return None
        return await self.authenticator.authenticate(session.username, session.password)

    async def authenticate(self, *, session: Session) -> bool:
        if self.authenticator is None or self.stats is None:
            return False
        key = (session.client_id, session.username, session.password)
        identity = self._verified.pop(key, None)
        if identity is None:
            identity = await self._identify(session)
            if identity is None:
                self.stats.auth_refused += 1
                log.warning("refused MQTT connection: user=%r client=%r", session.username, session.client_id)
                return False
            refusal = client_id_refusal(identity, session.client_id) or _will_refusal(identity, session)
            if refusal is not None:
                self.stats.auth_refused += 1
                self.stats.client_id_refused += 1
                log.warning(
                    "refused MQTT connection: user=%r client=%r: %s", session.username, session.client_id, refusal
                )
                return False
            if len(self._verified) > 1000:  # connections that vanished between the two checks
                self._verified.clear()
            # (a certificate's device id has become the session's user name: the second check sees it)
            self._verified[(session.client_id, session.username, session.password)] = identity
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
            await self._tell_device(identity, topic)
            return False
        if may_subscribe(identity, topic):
            return True
        self.stats.subscribe_denied += 1
        log.warning("denied subscribe: user=%s filter=%s", identity.username, topic)
        return False

    async def _tell_device(self, identity: Identity, topic: str) -> None:
        """MQTT 3.1.1 can only acknowledge a denied publish (as if delivered) or close the connection
        [MQTT-3.3.5-2]; closing makes clients reconnect and resend it for ever. So it is acknowledged,
        dropped, and the device is told on its ``errors`` topic (docs/protocol.md)."""
        if identity.role is not Role.DEVICE or identity.site is None:
            return
        answer = {"code": 403, "message": f"publish to {topic} denied: not this device's topic"}
        await self.context.broadcast_message(
            errors_topic(identity.site, identity.username), json.dumps(answer).encode()
        )


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


DirectIngest = Callable[[str, bytes], Awaitable[None]]


class EmbeddedBroker:
    """amqtt on ``bind`` with device authentication; use as an async context manager.

    Packets bigger than ``max_payload`` plus room for a topic close the connection before their body
    is read (as the generated Mosquitto configuration's ``max_packet_size`` does)."""

    def __init__(
        self,
        bind: str,
        authenticator: Authenticator,
        *,
        max_payload: int = 256 * 1024,
        tls: BrokerTls | None = None,
        direct_ingest: bool = False,
    ) -> None:
        """``direct_ingest``: the platform will take device messages inside the broker
        (:meth:`ingest_directly`); until it does, their acknowledgements wait, so a device that
        reconnects while the platform is still starting loses nothing."""
        self.host, self.port = split_bind(bind)
        self.tls = tls
        self.stats = BrokerStats()
        self._authenticator = authenticator
        listeners: dict[str, Any] = {
            "default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}
        }
        if tls is not None:
            for path in (tls.certfile, tls.keyfile, tls.cafile):
                if not path.is_file():
                    raise BrokerError(
                        f"MQTT over TLS needs {path}: make the site's certificates with anfang certs init"
                    )
            host, port = split_bind(tls.bind)
            listeners["tls"] = {
                "type": "tcp",
                "bind": f"{host}:{port}",
                "max_connections": 0,
                "ssl": True,
                "certfile": str(tls.certfile),
                "keyfile": str(tls.keyfile),
                "cafile": str(tls.cafile),  # amqtt verifies a presented client certificate against it
            }
        config: dict[str, Any] = {
            "listeners": listeners,
            "plugins": {
                f"{__name__}.DeviceAuthPlugin": {},
                f"{__name__}.DeviceTopicPlugin": {},
            },
        }
        self._broker = Broker(config)
        self.edge = EdgePolicy(max_packet=max_payload + PACKET_OVERHEAD)
        install_policy(self._broker, self.edge)
        harden(self._broker)
        self._ingest: DirectIngest | None = None
        self._ingest_ready = asyncio.Event()
        if direct_ingest:
            self.edge.ingest = self._ingest_device_message

    async def __aenter__(self) -> EmbeddedBroker:
        check_port_free(self.host, self.port)
        if self.tls is not None:
            check_port_free(*split_bind(self.tls.bind))
        for plugin in broker_plugins(self._broker):
            if isinstance(plugin, DeviceAuthPlugin):
                plugin.bind(self._authenticator, self.stats, self.tls is not None and self.tls.require_client_cert)
            elif isinstance(plugin, DeviceTopicPlugin):
                plugin.bind(self.stats)
        try:
            await self._broker.start()
        except Exception as exc:
            raise BrokerError(f"embedded MQTT broker failed to start on {self.host}:{self.port}: {exc}") from exc
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        if self.tls is not None:
            log.info("embedded MQTT broker: MQTT over TLS on %s", self.tls.bind)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._broker.shutdown()

    async def disconnect(self, client_id: str, *, forget: bool = False) -> bool:
        """Close ``client_id``'s live connection now, as if it had dropped (its will is published); its
        next CONNECT is authenticated afresh. ``forget`` also ends its session (subscriptions, queued
        messages). Returns whether a connection was open."""
        self.stats.identities.pop(client_id, None)  # nothing more is delivered to it
        was_open = await close_connection(self._broker, client_id)
        if was_open:
            log.warning("disconnected %s: its credentials changed", client_id)
        if forget:
            await forget_session(self._broker, client_id)
        return was_open

    async def clear_retained(self, topics: Sequence[str]) -> None:
        """Drop the retained messages on ``topics`` (a deleted device's desired document and status)."""
        for topic in topics:
            await self._broker.retain_message(None, topic, None)

    def ingest_directly(self, ingest: DirectIngest) -> None:
        """Feed device messages to ``ingest`` (awaited to commit) before amqtt acknowledges them."""
        self._ingest = ingest
        self.edge.ingest = self._ingest_device_message
        self._ingest_ready.set()

    async def _ingest_device_message(self, client_id: str, topic: str, payload: bytes) -> None:
        identity = self.stats.identities.get(client_id)
        if identity is None or identity.role is Role.PLATFORM:
            return
        if parse(topic) is None and identity.role is not Role.DEVICE:
            return
        if may_publish(identity, topic):  # denied publishes are counted by the topic plugin
            await self._ingest_ready.wait()
            assert self._ingest is not None
            await self._ingest(topic, payload)
