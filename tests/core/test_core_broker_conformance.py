"""MQTT 3.1.1 conformance of both brokers, for what the Eclipse Paho interoperability suite found broken
in stock amqtt: keepalive expiry with the will published, offline message queueing for persistent
sessions, redelivery of unacknowledged QoS 1/2 messages on reconnect, retained messages of every QoS.
The same cases run against the embedded broker and a private Mosquitto; the embedded one must behave
as Mosquitto does."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mqtt_raw import PUBACK, PUBLISH, PUBREC, PUBREL, SUBACK, Packet, Raw, connect, packet, publish, subscribe
from testkit import Mosquitto, free_port

from broker.acl import Identity, Role
from broker.credentials import hash_secret
from broker.embedded import EmbeddedBroker
from broker.mosquitto import acl_file, password_file

USERS = ("alice", "bob")
PASSWORD = "pw"
T = "anfang/conformance"


class _Accounts:
    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        return Identity(username, Role.PLATFORM) if username in USERS and password == PASSWORD else None

    async def device_identity(self, device_id: str) -> Identity | None:
        return None  # no client certificates here


@dataclass
class Endpoint:
    host: str
    port: int

    async def raw(self, client_id: str, *, clean: bool = True, keepalive: int = 30, **kw: object) -> Raw:
        """A connected raw client (``client_id`` is also its user name); asserts the CONNACK accepted."""
        raw = await Raw.open(self.host, self.port)
        await raw.send(connect(client_id, client_id, PASSWORD, clean=clean, keepalive=keepalive, **kw))
        self.session_present, code = await raw.connack()
        assert code == 0
        return raw


@contextlib.asynccontextmanager
async def _broker(kind: str, tmp: Path) -> AsyncIterator[Endpoint]:
    if kind == "amqtt":
        async with EmbeddedBroker(f"127.0.0.1:{free_port()}", _Accounts()) as broker:
            yield Endpoint(broker.host, broker.port)
        return
    identities = [Identity(u, Role.PLATFORM) for u in USERS]
    (tmp / "passwd").write_text(password_file((i, hash_secret(PASSWORD, 1000)) for i in identities))
    (tmp / "acl").write_text(acl_file(identities))
    server = Mosquitto(tmp)
    server.start()
    try:
        yield Endpoint("127.0.0.1", server.port)
    finally:
        server.stop()


BROKERS = pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])


async def _subscribed(ep: Endpoint, client_id: str, topic_filter: str, qos: int = 2, clean: bool = True) -> Raw:
    raw = await ep.raw(client_id, clean=clean)
    await raw.send(subscribe(1, (topic_filter, qos)))
    ack = await raw.next()
    assert ack.kind == SUBACK and ack.body[2] == qos
    return raw


async def _published(raw: Raw, topic: str, payload: bytes, qos: int, packet_id: int, retain: bool = False) -> None:
    """Publish and complete the QoS flow as a well-behaved client."""
    await raw.send(publish(topic, payload, qos, packet_id, retain))
    if qos == 1:
        assert (await raw.next()).kind == PUBACK
    elif qos == 2:
        assert (await raw.next()).kind == PUBREC
        await raw.send(packet(0x62, packet_id.to_bytes(2, "big")))
        assert (await raw.next()).kind == 7  # PUBCOMP


async def _received(raw: Raw, count: int, *, ack: bool = True) -> list[Packet]:
    """The next ``count`` PUBLISHes, acknowledged as their QoS requires (QoS 2: PUBREC, and PUBCOMP for
    each PUBREL on the way) unless ``ack`` is false."""
    out: list[Packet] = []
    while len(out) < count:
        msg = await raw.next()
        if msg.kind == PUBREL:
            await raw.send(packet(0x70, msg.body[:2]))
            continue
        if msg.kind != PUBLISH:
            continue
        out.append(msg)
        if ack and msg.qos:
            await raw.send(packet(0x40 if msg.qos == 1 else 0x50, msg.packet_id.to_bytes(2, "big")))
    return out


@BROKERS
async def test_keepalive_expiry_publishes_the_will(kind: str, tmp_path: Path) -> None:
    async with _broker(kind, tmp_path) as ep:
        watcher = await _subscribed(ep, "alice", f"{T}/will")
        silent = await ep.raw("bob", keepalive=1, will=(f"{T}/will", b"bob gone", 1))
        # bob sends nothing more (no PINGREQ): half-open as far as the broker can tell
        msg = await watcher.next(timeout=1.5 + 5)  # the 1 s bound: tests/core/test_core_broker_edge.py
        assert msg.kind == PUBLISH and msg.topic == f"{T}/will" and msg.payload == b"bob gone"
        assert await silent.closed_by_peer() == b""
        silent.close()
        watcher.close()


@BROKERS
async def test_offline_messages_are_queued_for_a_persistent_session(kind: str, tmp_path: Path) -> None:
    async with _broker(kind, tmp_path) as ep:
        sub = await _subscribed(ep, "bob", f"{T}/queue/#", clean=False)
        await sub.send(packet(0xE0, b""))  # DISCONNECT: the session stays
        assert await sub.closed_by_peer() == b""
        sub.close()
        pub = await ep.raw("alice")
        for qos in (1, 2):
            await _published(pub, f"{T}/queue/{qos}", f"qos{qos}".encode(), qos, packet_id=10 + qos)
        pub.close()
        back = await ep.raw("bob", clean=False)
        assert ep.session_present
        got = {m.topic: (m.payload, m.qos, m.retain) for m in await _received(back, 2)}
        assert got == {f"{T}/queue/1": (b"qos1", 1, False), f"{T}/queue/2": (b"qos2", 2, False)}
        back.close()


@BROKERS
async def test_unacknowledged_messages_are_sent_again_on_reconnect(kind: str, tmp_path: Path) -> None:
    async with _broker(kind, tmp_path) as ep:
        sub = await _subscribed(ep, "bob", f"{T}/redeliver/#", clean=False)
        pub = await ep.raw("alice")
        for qos in (1, 2):
            await _published(pub, f"{T}/redeliver/{qos}", f"qos{qos}".encode(), qos, packet_id=20 + qos)
        first = {m.topic: m for m in await _received(sub, 2, ack=False)}
        sub.close()  # the connection drops without DISCONNECT
        back = await ep.raw("bob", clean=False)
        assert ep.session_present
        again = {m.topic: m for m in await _received(back, 2)}
        assert all(m.dup for m in again.values())
        assert {t: (m.payload, m.qos) for t, m in again.items()} == {t: (m.payload, m.qos) for t, m in first.items()}
        back.close()
        pub.close()


@BROKERS
async def test_retained_messages_of_every_qos(kind: str, tmp_path: Path) -> None:
    async with _broker(kind, tmp_path) as ep:
        pub = await ep.raw("alice")
        for qos in (0, 1, 2):
            await _published(pub, f"{T}/retained/{qos}", f"qos{qos}".encode(), qos, packet_id=30 + qos, retain=True)
        # on the same connection, right after the publishes (as the Paho suite does)
        await pub.send(subscribe(2, (f"{T}/retained/+", 2)))
        received = await _received(pub, 3)
        assert all(m.retain for m in received)
        got = {m.topic: (m.payload, m.qos) for m in received}
        assert got == {f"{T}/retained/{q}": (f"qos{q}".encode(), q) for q in (0, 1, 2)}
        pub.close()
        # a late subscriber gets them too; an empty retained message clears one
        late = await ep.raw("bob")
        await _published(late, f"{T}/retained/1", b"", 1, packet_id=40, retain=True)
        await late.send(subscribe(3, (f"{T}/retained/+", 2)))
        topics = {m.topic for m in await _received(late, 2)}
        assert topics == {f"{T}/retained/0", f"{T}/retained/2"}
        late.close()


@BROKERS
async def test_a_client_dropping_while_its_queue_is_delivered_is_offline_and_gets_it_again(
    kind: str, tmp_path: Path
) -> None:
    async with _broker(kind, tmp_path) as ep:
        sub = await _subscribed(ep, "bob", f"{T}/drop/#", clean=False)
        await sub.send(packet(0xE0, b""))
        assert await sub.closed_by_peer() == b""
        sub.close()
        pub = await _subscribed(ep, "alice", f"{T}/will/#")
        await _published(pub, f"{T}/drop/1", b"queued", 1, packet_id=50)
        back = await ep.raw("bob", clean=False, will=(f"{T}/will/bob", b"bob gone", 1))
        (first,) = await _received(back, 1, ack=False)
        assert first.payload == b"queued"
        back.close()  # dropped before acknowledging what was queued for it
        (will,) = await _received(pub, 1)
        assert will.topic == f"{T}/will/bob" and will.payload == b"bob gone"
        again = await ep.raw("bob", clean=False)
        (msg,) = await _received(again, 1)
        assert msg.payload == b"queued" and msg.dup
        again.close()
        pub.close()
