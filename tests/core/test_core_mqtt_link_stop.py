"""A link stopped while it was still connecting stays stopped. A partition handed off while its owner was
connecting left gmqtt reconnecting under the partition's client id; the new owner and that orphan then took
the session from each other every second ("already connected, closing old connection") and neither was served."""

from __future__ import annotations

import asyncio

from anfang.mqtt_link import MqttLink

TIMEOUT = 10


async def test_a_link_cancelled_while_connecting_does_not_reconnect_after_stop() -> None:
    connections: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connections.put((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = MqttLink(host="127.0.0.1", port=port, client_id="anfang-platform-p1", username="p", password="x", mqtt5=True)

    async def ignore(*_: object) -> None:
        return None

    starting = asyncio.create_task(link.start(["anfang/s/d/twin/reported"], ignore))
    reader, writer = await asyncio.wait_for(connections.get(), TIMEOUT)
    assert (await asyncio.wait_for(reader.readexactly(1), TIMEOUT))[0] == 0x10  # CONNECT; no CONNACK comes
    starting.cancel()  # the hand-off cancels the partition's task
    await asyncio.wait([starting])
    await asyncio.wait_for(link.stop(), TIMEOUT)
    writer.close()  # the broker closes the connection, as when another client takes the client id
    try:
        # gmqtt reconnects after its reconnect delay (1 s) when it still counts itself active
        reconnected = await asyncio.wait_for(connections.get(), 3.0)
    except TimeoutError:
        reconnected = None
    finally:
        server.close()
    assert reconnected is None, "the stopped link connected again"
