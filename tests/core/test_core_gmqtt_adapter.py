"""The gmqtt adapter (anfang/gmqtt_adapter.py): one test per patched or relied-on gmqtt behaviour, each
against the real gmqtt client and a scripted broker end that reads and writes raw MQTT packets, so a
gmqtt that changes the behaviour fails here rather than in production."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import gmqtt
import pytest
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from gmqtt.mqtt.handler import MqttPackageHandler
from mqtt_raw import packet, publish, string, varint

from anfang import gmqtt_adapter

CONNACK_311 = b"\x20\x02\x00\x00"
TIMEOUT = 10


@dataclass
class _Peer:
    """The broker's end of one connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def read(self) -> tuple[int, bytes]:
        """The next packet: its first byte and its body."""
        first = (await asyncio.wait_for(self.reader.readexactly(1), TIMEOUT))[0]
        length, shift = 0, 0
        while True:
            byte = (await self.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return first, await self.reader.readexactly(length)

    def send(self, data: bytes) -> None:
        self.writer.write(data)


class _Broker:
    def __init__(self) -> None:
        self.peers: asyncio.Queue[_Peer] = asyncio.Queue()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.peers.put(_Peer(reader, writer))

    async def connected(self, connack: bytes = CONNACK_311) -> _Peer:
        """Take the next connection's CONNECT and answer it."""
        peer = await asyncio.wait_for(self.peers.get(), TIMEOUT)
        first, _ = await peer.read()
        assert first == 0x10
        peer.send(connack)
        return peer


@contextlib.asynccontextmanager
async def _session(
    client: gmqtt.Client, connack: bytes = CONNACK_311, version: int = MQTTv311
) -> AsyncIterator[tuple[_Broker, _Peer]]:
    broker = _Broker()
    server = await asyncio.start_server(broker._accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client.set_config({"reconnect_retries": 1, "reconnect_delay": 0})
    connecting = asyncio.create_task(client.connect("127.0.0.1", port, version=version))
    peer = await broker.connected(connack)
    await asyncio.wait_for(connecting, TIMEOUT)
    try:
        yield broker, peer
    finally:
        await asyncio.wait_for(client.disconnect(), TIMEOUT)
        server.close()


def _client(**kwargs: Any) -> gmqtt.Client:
    client = gmqtt.Client("platform-test", clean_session=False, optimistic_acknowledgement=False, **kwargs)
    gmqtt_adapter.check(client)
    return client


def test_check_refuses_a_gmqtt_whose_internals_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    gmqtt_adapter.check(gmqtt.Client("c"))
    monkeypatch.delattr(MqttPackageHandler, "_handle_qos_1_publish_packet")
    with pytest.raises(gmqtt_adapter.GmqttChanged, match="_handle_qos_1_publish_packet"):
        gmqtt_adapter.check(gmqtt.Client("c"))


async def test_a_qos1_publish_is_taken_synchronously_and_acknowledged_only_by_send_raw() -> None:
    """gmqtt parses the PUBLISH (MQTT 5 properties: the fast reader leaves it to gmqtt) and sends no PUBACK."""
    client = _client()
    taken: list[tuple[int, str, bytes, dict[str, Any]]] = []
    got = asyncio.Event()

    def on_qos1(mid: int, payload: bytes, topic: str, properties: dict[str, Any]) -> None:
        taken.append((mid, topic, payload, properties))
        got.set()

    gmqtt_adapter.take_qos1_publishes(client, on_qos1)
    connack = packet(0x20, b"\x00\x00\x00")  # MQTT 5: no properties
    async with _session(client, connack, MQTTv50) as (_, peer):
        props = b"\x08" + string("reply/here")  # response topic
        body = string("anfang/s/d/twin/get") + b"\x00\x07" + varint(len(props)) + props + b"{}"
        peer.send(packet(0x3A, body))  # QoS 1, DUP
        await asyncio.wait_for(got.wait(), TIMEOUT)
        mid, topic, payload, properties = taken[0]
        assert (mid, topic, payload) == (7, "anfang/s/d/twin/get", b"{}")
        assert properties["dup"] and properties["response_topic"] == ["reply/here"]
        assert gmqtt_adapter.send_raw(client, b"\x40\x04\x00\x07\x00\x00")
        assert await peer.read() == (0x40, b"\x00\x07\x00\x00")  # ours, the first packet after CONNECT


async def test_the_fast_reader_takes_qos1_publishes_and_leaves_the_rest_to_gmqtt_in_order() -> None:
    client = _client()
    seen: list[tuple[str, object]] = []
    done = asyncio.Event()

    def on_connect(c: Any, flags: int, rc: int, properties: dict[str, Any]) -> None:
        gmqtt_adapter.install_fast_reader(c, False, lambda *m: seen.append(("fast", m)))

    def on_message(c: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> int:
        seen.append(("gmqtt", (topic, payload)))
        done.set()
        return 0

    client.on_connect, client.on_message = on_connect, on_message
    async with _session(client) as (_, peer):
        connection = client._connection
        connection._last_data_in = 0.0
        dup = packet(0x3A, string("anfang/s/d/twin/reported") + b"\x00\x05" + b"{}")
        peer.send(dup + publish("anfang/s/d/x", b"q0"))
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert seen == [("fast", (5, "anfang/s/d/twin/reported", b"{}", True)), ("gmqtt", ("anfang/s/d/x", b"q0"))]
        assert connection._last_data_in > 0  # gmqtt's keepalive still sees the traffic


async def test_a_gated_read_is_what_the_read_loop_awaits() -> None:
    client = _client()
    gate_waited = asyncio.Event()

    class Gate(asyncio.Event):
        async def wait(self) -> bool:  # type: ignore[override]
            gate_waited.set()
            return await super().wait()

    gate = Gate()
    received = asyncio.Event()
    client.on_connect = lambda c, *a: gmqtt_adapter.gate_reads(c, gate, 3600)
    client.on_message = lambda *a: received.set() or 0
    async with _session(client) as (_, peer):
        await asyncio.wait_for(gate_waited.wait(), TIMEOUT)  # the loop's next read waits at the gate
        peer.send(publish("anfang/a", b"x"))
        assert not received.is_set()
        gate.set()
        await asyncio.wait_for(received.wait(), TIMEOUT)


async def test_publish_raises_overflow_at_the_receive_maximum_and_after_puback_sees_the_id_freed() -> None:
    client = _client()
    freed = asyncio.Event()
    gmqtt_adapter.after_puback(client, freed.set)
    connack = packet(0x20, b"\x00\x00" + varint(3) + b"\x21\x00\x03")  # receive maximum 3
    async with _session(client, connack, MQTTv50) as (_, peer):
        sent = 0
        with pytest.raises(OverflowError):
            for _ in range(10):
                client.publish("anfang/out", b"m", qos=1)
                sent += 1
        first, body = await peer.read()
        assert first & 0xF6 == 0x32 and sent >= 1
        mid = body[2 + len("anfang/out") :][:2]
        peer.send(packet(0x40, mid + b"\x00\x00"))
        await asyncio.wait_for(freed.wait(), TIMEOUT)
        client.publish("anfang/out", b"m", qos=1)  # a packet id is free again


async def test_send_subscribe_is_matched_to_client_subscriptions_without_adding_them_again() -> None:
    client = _client()
    subs = [gmqtt.Subscription("anfang/+/+/twin/reported", qos=1), gmqtt.Subscription("anfang/#", qos=1)]
    answered: list[tuple[int, tuple[int, ...], list[int | None]]] = []
    done = asyncio.Event()

    def on_subscribe(c: Any, mid: int, granted: tuple[int, ...], properties: dict[str, Any]) -> None:
        answered.append((mid, tuple(granted), [s.mid for s in subs]))  # gmqtt clears sub.mid after this
        done.set()

    client.on_subscribe = on_subscribe
    async with _session(client) as (_, peer):
        client.subscriptions.extend(subs)
        mid = gmqtt_adapter.send_subscribe(client, subs)
        first, body = await peer.read()
        assert first == 0x82 and body[:2] == mid.to_bytes(2, "big")
        assert string("anfang/+/+/twin/reported") in body and string("anfang/#") in body
        assert len(client.subscriptions) == 2
        peer.send(packet(0x90, mid.to_bytes(2, "big") + b"\x01\x80"))
        await asyncio.wait_for(done.wait(), TIMEOUT)
        assert answered == [(mid, (1, 0x80), [mid, mid])]
        assert [s.mid for s in subs] == [None, None]


async def test_a_dropped_transport_reconnects_and_on_connect_sees_the_session_present_flag() -> None:
    client = _client()
    flags_seen: asyncio.Queue[int] = asyncio.Queue()
    client.on_connect = lambda c, flags, rc, properties: flags_seen.put_nowait(flags)
    async with _session(client) as (broker, _):
        assert await asyncio.wait_for(flags_seen.get(), TIMEOUT) == 0
        gmqtt_adapter.drop_transport(client)
        await broker.connected(b"\x20\x02\x01\x00")  # session present
        assert await asyncio.wait_for(flags_seen.get(), TIMEOUT) & 0x01


async def test_manual_acknowledgement_sends_the_puback_only_after_the_callback_returns() -> None:
    """What the link relies on for QoS 0/2 and for QoS 1 without the synchronous path."""
    client = _client()
    entered, release = asyncio.Event(), asyncio.Event()

    async def on_message(c: Any, topic: str, payload: bytes, qos: int, properties: dict[str, Any]) -> int:
        entered.set()
        await release.wait()
        c.publish("marker", b"m", qos=0)
        return 0

    client.on_message = on_message
    async with _session(client) as (_, peer):
        peer.send(publish("anfang/a", b"x", qos=1, packet_id=9))
        await asyncio.wait_for(entered.wait(), TIMEOUT)
        release.set()
        first, body = await peer.read()
        assert first == 0x30 and body.startswith(string("marker"))  # nothing was acknowledged before
        assert await peer.read() == (0x40, b"\x00\x09")
