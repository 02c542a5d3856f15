"""Every reach into gmqtt's internals, in one place (gmqtt 0.8.x). tests/core/test_core_gmqtt_adapter.py
holds a test per patched or relied-on behaviour, so a gmqtt that changes one fails loudly;
:func:`check` (called before a client connects) refuses to start if a name this module uses is gone.

gmqtt's public API (``Client``, ``Subscription``, the callbacks, ``publish``) covers connecting,
subscribing once and publishing; the platform needs more, for speed and for acknowledging only
after a commit. What this module does, and why:

* **QoS 1 without a task** (:func:`take_qos1_publishes`): gmqtt wraps every QoS 1 message in a task
  whose completion sends its PUBACK; the platform takes the message synchronously instead and
  acknowledges it after the commit (:func:`send_raw` writes the PUBACKs of a batch in one write).
* **The fast reader** (:func:`install_fast_reader`): QoS 1 PUBLISH packets without properties are
  split off the read buffer before gmqtt builds a ``Package`` for them (``anfang/mqtt_fastpath.py``,
  pure); every other packet goes through gmqtt's handler in arrival order.
* **Gated reads** (:func:`gate_reads`): the protocol's read loop waits at a gate, so a backlog leaves
  messages with the broker (TCP back-pressure) instead of in this process.
* **Subscribing again** (:func:`send_subscribe`): the connection's SUBSCRIBE, not ``Client.subscribe``,
  which would add the filters to the client's list again on each resubscription; gmqtt matches a
  SUBACK to ``Client.subscriptions`` by packet id and clears that id only after ``on_subscribe``.
* **A free packet id after each PUBACK** (:func:`after_puback`): publishes held back because every
  packet id the broker allows in flight was taken (``Client.publish`` raises ``OverflowError``) go
  out as PUBACKs come in.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import gmqtt
from gmqtt.mqtt.connection import MQTTConnection
from gmqtt.mqtt.handler import MqttPackageHandler
from gmqtt.mqtt.package import Package
from gmqtt.mqtt.protocol import MQTTProtocol

from anfang.mqtt_fastpath import OnPublish, split_packets

#: packet id, payload, topic, MQTT 5 properties as gmqtt parses them (``dup``, ``retain``, ``response_topic``...);
#: gmqtt's own argument order, so the callable is installed as it is (no wrapper on the hot path)
OnQos1 = Callable[[int, bytes, str, dict[str, Any]], None]

#: methods this module calls or replaces; :func:`check` looks for every one (the instance attributes it
#: reaches, ``_connection``, ``_protocol``, ``_handler``, ``_last_data_in`` and ``_transport``, fail at
#: once where they are used, and each has a test)
_RELIED_ON = (
    (MqttPackageHandler, "_handle_qos_1_publish_packet"),
    (MqttPackageHandler, "_handle_puback_packet"),
    (MQTTConnection, "subscribe"),
    (MQTTConnection, "send_package"),
    (MQTTConnection, "put_package"),
    (MQTTProtocol, "read"),
    (MQTTProtocol, "_read_packet"),
)


class GmqttChanged(RuntimeError):
    """The installed gmqtt lacks something this adapter relies on."""


def check(client: gmqtt.Client) -> None:
    """Refuse to go on with a gmqtt whose internals moved."""
    missing = [f"{owner.__name__}.{name}" for owner, name in _RELIED_ON if not callable(getattr(owner, name, None))]
    if not isinstance(getattr(client, "_package_handler", None), MqttPackageHandler):
        missing.append("Client._package_handler")
    if missing:
        raise GmqttChanged(f"gmqtt {getattr(gmqtt, '__version__', '?')} lacks {', '.join(missing)}")


def _handler(client: gmqtt.Client) -> Any:
    return client._package_handler


def _connection(client: gmqtt.Client) -> Any:
    return getattr(client, "_connection", None)


def take_qos1_publishes(client: gmqtt.Client, on_qos1: OnQos1) -> None:
    """Hand every QoS 1 PUBLISH that gmqtt parses to ``on_qos1`` synchronously; gmqtt sends no PUBACK for it.
    Set before connecting: gmqtt caches its packet handlers on first use."""
    _handler(client)._handle_qos_1_publish_packet = on_qos1


def after_puback(client: gmqtt.Client, callback: Callable[[], None]) -> None:
    """Call ``callback`` after gmqtt has taken each PUBACK (its packet id is free again). Set before connecting."""
    handler = _handler(client)
    on_puback = handler._handle_puback_packet

    def handle_puback(cmd: int, packet: bytes) -> None:
        on_puback(cmd, packet)
        callback()

    handler._handle_puback_packet = handle_puback


def send_subscribe(client: gmqtt.Client, subscriptions: Sequence[gmqtt.Subscription]) -> int:
    """Send one SUBSCRIBE on the current connection; its packet id. The subscriptions must be in
    ``client.subscriptions`` for gmqtt to match the SUBACK to them (``sub.mid`` is still set while
    ``on_subscribe`` runs)."""
    return int(client._connection.subscribe(list(subscriptions)))


def send_raw(client: gmqtt.Client, data: bytes) -> bool:
    """Write ready-made packets on the current connection; False if there is none."""
    connection = _connection(client)
    if connection is None:
        return False
    connection.send_package(data)
    return True


def drop_transport(client: gmqtt.Client) -> None:
    """Close the socket under gmqtt without a DISCONNECT, as a network failure does (gmqtt reconnects)."""
    client._connection._transport.close()


def gate_reads(client: gmqtt.Client, may_read: asyncio.Event, paused_interval_s: float) -> None:
    """Make the current connection's read loop wait for ``may_read`` (a read every ``paused_interval_s``
    while it is clear, so PUBACKs and PINGRESPs still get through). gmqtt reads through an
    ``asyncio.StreamReader`` whose own flow control would resume a paused transport, so the gate sits in
    the read itself; the reader's buffer then fills and the reader pauses the socket."""
    protocol = client._connection._protocol
    read = protocol.read

    async def gated_read(n: int = -1) -> bytes:
        if not may_read.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(may_read.wait(), paused_interval_s)
        return bytes(await read(n))

    protocol.read = gated_read


def install_fast_reader(client: gmqtt.Client, mqtt5: bool, on_publish: OnPublish) -> None:
    """Split the current connection's read buffer with :func:`split_packets`: QoS 1 PUBLISH packets
    without properties go to ``on_publish``, everything else to gmqtt's handler as a ``Package``.
    gmqtt makes a protocol per connection: call this from ``on_connect``."""
    protocol = client._connection._protocol
    connection = protocol._connection

    def on_other(command: int, body: bytes) -> None:
        connection.put_package(Package(command, body))

    def read_packet(data: bytes) -> int:
        if connection._handler.current_connection is not connection:
            return len(data)  # a superseded connection: gmqtt drops its packets too
        connection._last_data_in = time.monotonic()  # gmqtt's keepalive watches it
        return split_packets(data, mqtt5, on_publish, on_other)

    protocol._read_packet = read_packet
