"""The amqtt adapter (broker/amqtt_adapter.py): one test per patched amqtt behaviour, against the real
embedded broker and raw MQTT packets where no client library would send them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable

from mqtt_raw import PUBACK, SUBACK, Raw, connect, packet, publish, string, subscribe, varint
from testkit import Device, free_port

from broker.acl import Identity, Role
from broker.amqtt_adapter import SnapshotDict, broker_sessions, close_connection, connect_protocol
from broker.embedded import EmbeddedBroker


def test_a_subscription_added_during_a_broadcast_does_not_break_the_broadcast() -> None:
    table = SnapshotDict({"anfang/+/+/status": ["platform"]})
    seen = []
    for topic_filter, sessions in table.items():  # amqtt awaits inside this loop; others subscribe then
        table["anfang/youzheng/door-b1-u2/twin/desired"] = ["door-b1-u2"]
        seen.append((topic_filter, sessions))
    for topic_filter in table:  # amqtt removes empty filters this way
        if topic_filter == "anfang/+/+/status":
            del table[topic_filter]
    assert seen == [("anfang/+/+/status", ["platform"])]
    assert list(table) == ["anfang/youzheng/door-b1-u2/twin/desired"]


# --- one test per patched amqtt behaviour (broker/amqtt_adapter.py); each fails if amqtt changes it ---


class _Accounts:
    """Any user name with the password ``pw`` is a platform account (may use any topic under anfang/)."""

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        return Identity(username, Role.PLATFORM) if username and password == "pw" else None

    async def device_identity(self, device_id: str) -> Identity | None:
        return None  # no client certificates here


@contextlib.asynccontextmanager
async def _broker(max_payload: int = 1024) -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker(f"127.0.0.1:{free_port()}", _Accounts(), max_payload=max_payload) as broker:
        yield broker


async def _open(broker: EmbeddedBroker) -> Raw:
    return await Raw.open(broker.host, broker.port)


async def test_an_mqtt5_connect_gets_connack_unacceptable_protocol_version() -> None:
    async with _broker() as broker:
        raw = await _open(broker)
        await raw.send(connect("c1", level=5, properties=b"\x00"))  # MQTT 5: an empty property block
        assert await raw.closed_by_peer() == b"\x20\x02\x00\x01"
        raw.close()
        assert broker.edge.refused_protocol == 1


async def test_a_publish_to_a_wildcard_topic_closes_the_connection() -> None:
    async with _broker() as broker:
        raw = await _open(broker)
        await raw.send(connect("c1"))
        assert await raw.reader.readexactly(4) == b"\x20\x02\x00\x00"
        # stock amqtt raised mid-packet and read the rest of the payload as the next packets
        await raw.send(packet(0x30, string("anfang/+/x") + b"\xc0\x00" * 20))
        assert await raw.closed_by_peer() == b""
        raw.close()


async def test_a_packet_over_the_limit_is_refused_before_its_body_is_read() -> None:
    async with _broker(max_payload=1024) as broker:
        raw = await _open(broker)
        await raw.send(connect("c1"))
        assert await raw.reader.readexactly(4) == b"\x20\x02\x00\x00"
        limit = broker.edge.max_packet
        await raw.send(bytes([0x30]) + varint(limit + 1) + string("anfang/a/b"))  # header only: no body sent
        assert await raw.closed_by_peer() == b""
        raw.close()
        assert broker.edge.closed_oversized == 1


async def test_an_oversized_or_missing_connect_closes_the_connection() -> None:
    async with _broker(max_payload=1024) as broker:
        raw = await _open(broker)
        await raw.send(bytes([0x10]) + varint(broker.edge.max_packet + 1))
        assert await raw.closed_by_peer() == b""
        raw.close()
        raw = await _open(broker)
        await raw.send(packet(0xC0, b""))  # PINGREQ before CONNECT
        assert await raw.closed_by_peer() == b""
        raw.close()


async def test_a_silent_connection_is_closed_after_one_and_a_half_keepalives_with_its_will() -> None:
    async with _broker() as broker:
        watcher = Device(broker.host, broker.port, "watcher", "pw", client_id="watcher", will=False)
        assert await watcher.connect() == 0
        await watcher.subscribe("anfang/will/#")
        raw = await _open(broker)
        await raw.send(connect("silent", keepalive=1, will=("anfang/will/silent", b"gone", 1)))
        assert await raw.reader.readexactly(4) == b"\x20\x02\x00\x00"
        # nothing more is sent: after 1.5 s the broker closes and publishes the will
        assert await raw.closed_by_peer() == b""
        _, payload = await watcher.expect(r"^anfang/will/silent$")
        assert payload == "gone" and broker.edge.closed_keepalive == 1
        raw.close()
        watcher.close()


def test_the_adapter_knows_the_protocol_level_of_a_connect() -> None:
    assert connect_protocol(connect("c", level=4)[2:]) == ("MQTT", 4)
    assert connect_protocol(connect("c", level=5)[2:]) == ("MQTT", 5)
    assert connect_protocol(b"\x00") is None


class _Door:
    """``door-1`` of site ``s`` with the password ``pw``."""

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        return Identity("door-1", Role.DEVICE, site="s") if (username, password) == ("door-1", "pw") else None

    async def device_identity(self, device_id: str) -> Identity | None:
        return None


async def test_a_device_publish_waits_for_the_platform_instead_of_being_lost() -> None:
    # a device that reconnects while the restarted platform is still starting its services: amqtt
    # would acknowledge the report at once and route it to no one
    async with EmbeddedBroker(f"127.0.0.1:{free_port()}", _Door(), direct_ingest=True) as broker:
        raw = await _open(broker)
        await raw.send(connect("door-1", user="door-1", password="pw"))
        assert await raw.connack() == (False, 0)
        await raw.send(publish("anfang/s/door-1/twin/reported", b'{"seq": 1}', qos=1, packet_id=7))
        with contextlib.suppress(TimeoutError):
            early = await raw.next(timeout=1.0)
            raise AssertionError(f"acknowledged before the platform could take it: {early}")
        taken: list[tuple[str, bytes]] = []

        async def ingest(topic: str, payload: bytes) -> None:
            taken.append((topic, payload))

        broker.ingest_directly(ingest)
        puback = await raw.next()
        assert (puback.kind, puback.packet_id) == (4, 7)
        assert taken == [("anfang/s/door-1/twin/reported", b'{"seq": 1}')]
        raw.close()


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for ``condition`` on the broker's state (checked as the broker's tasks run)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the broker's counters and sessions offer nothing to wait on
            await asyncio.sleep(0.01)


async def _connected(broker: EmbeddedBroker, client_id: str, *, clean: bool = True) -> Raw:
    raw = await _open(broker)
    await raw.send(connect(client_id, clean=clean))
    assert (await raw.connack())[1] == 0
    return raw


async def test_a_flooding_connection_is_read_no_further_than_its_intake_bound_while_others_are_served() -> None:
    async with _broker() as broker:
        held, started = asyncio.Event(), Counter[str]()
        reached: dict[int, asyncio.Event] = {broker.edge.intake_bound: asyncio.Event(), 500: asyncio.Event()}

        async def ingest(client_id: str, topic: str, payload: bytes) -> None:
            started[client_id] += 1
            if client_id == "flood":
                if started["flood"] in reached:
                    reached[started["flood"]].set()
                await held.wait()  # the platform is slow with this client's messages

        broker.edge.ingest = ingest
        flood = await _connected(broker, "flood")
        flood.writer.write(b"".join(publish("anfang/f/x", b"%d" % i) for i in range(500)))  # QoS 0, not drained
        bound = broker.edge.intake_bound
        await asyncio.wait_for(reached[bound].wait(), 20)
        # stock amqtt read all 500 at once, a task each; here the socket rests and TCP pushes back
        calm = await _connected(broker, "calm")
        await calm.send(publish("anfang/c/x", b"hi", qos=1, packet_id=7))
        ack = await calm.next()
        assert (ack.kind, ack.packet_id, started["calm"]) == (PUBACK, 7, 1)
        assert started["flood"] == bound and broker.edge.intake_paused > 0
        held.set()
        await asyncio.wait_for(reached[500].wait(), 20)  # and not one of the flooder's QoS 0 messages is lost
        for raw in (flood, calm):
            raw.close()


async def _slow_reader(broker: EmbeddedBroker, client_id: str, topic_filter: str, qos: int) -> Raw:
    """A client that subscribes and then reads nothing, with a small receive buffer."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (broker.host, broker.port))
    raw = Raw(*await asyncio.open_connection(sock=sock))
    await raw.send(connect(client_id))
    assert (await raw.connack())[1] == 0
    await raw.send(subscribe(1, (topic_filter, qos)))
    assert (await raw.next()).kind == SUBACK
    return raw


async def test_a_slow_reader_gets_a_bounded_queue_and_the_qos0_messages_beyond_are_dropped() -> None:
    async with _broker(max_payload=64 * 1024) as broker:
        broker.edge.qos0_queue = 10
        slow = await _slow_reader(broker, "slow", "anfang/load/#", 0)
        fast = Device(broker.host, broker.port, "fast", "pw", client_id="fast", will=False)
        assert await fast.connect() == 0
        await fast.subscribe("anfang/load/last")
        publisher = await _connected(broker, "pub")
        chunk = b"x" * 32 * 1024
        for i in range(400):  # ~13 MB, beyond what the socket buffers and amqtt's writer take
            await publisher.send(publish(f"anfang/load/{i}", chunk))
        await _until(lambda: broker.edge.dropped_qos0 > 0)
        _, handler = broker_sessions(broker._broker)["slow"]
        assert handler._pending_qos0 <= broker.edge.qos0_queue
        # a client reading at its own pace is not held up by the slow one
        await publisher.send(publish("anfang/load/last", b"done"))
        assert await fast.expect(r"^anfang/load/last$") == ("anfang/load/last", "done")
        fast.close()
        for raw in (slow, publisher):
            raw.close()


async def test_an_offline_persistent_session_queues_at_most_max_queued_messages() -> None:
    async with _broker() as broker:
        broker.edge.max_queued = 5
        keeper = await _connected(broker, "keeper", clean=False)
        await keeper.send(subscribe(1, ("anfang/q/#", 1)))
        assert (await keeper.next()).kind == SUBACK
        await keeper.send(packet(0xE0, b""))  # DISCONNECT: its session and subscription stay
        keeper.close()
        session, _ = broker_sessions(broker._broker)["keeper"]
        await _until(lambda: not session.transitions.is_connected())
        publisher = await _connected(broker, "pub")
        for i in range(8):
            await publisher.send(publish("anfang/q/x", b"%d" % i, qos=1, packet_id=i + 1))
            assert (await publisher.next()).kind == PUBACK
        await _until(lambda: broker.edge.dropped_queued == 3)
        keeper = await _connected(broker, "keeper", clean=False)
        received = [(await keeper.next()).payload for _ in range(5)]
        assert received == [b"0", b"1", b"2", b"3", b"4"]  # the oldest kept, in order; the newest dropped
        for raw in (keeper, publisher):
            raw.close()


async def test_a_connection_parked_at_its_intake_bound_can_still_be_taken_over_and_closed() -> None:
    async with _broker() as broker:
        held, parked = asyncio.Event(), asyncio.Event()

        async def ingest(client_id: str, topic: str, payload: bytes) -> None:
            parked.set()
            await held.wait()  # the platform never gets to these (as when it stops under a flood)

        broker.edge.ingest = ingest
        flood = await _connected(broker, "flood")
        flood.writer.write(b"".join(publish("anfang/f/x", b"x") for _ in range(100)))
        await asyncio.wait_for(parked.wait(), 20)
        # the same client id connects again: the parked connection is closed, the new one accepted
        again = await asyncio.wait_for(_connected(broker, "flood"), 20)
        assert await flood.closed_by_peer() is not None
        await asyncio.wait_for(close_connection(broker._broker, "flood"), 20)
        assert await again.closed_by_peer() is not None
        for raw in (flood, again):
            raw.close()
