"""A raw MQTT 3.1.1 connection for tests: packets no client library would send, and a client that
does not acknowledge what it receives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK = 2, 3, 4, 5, 6, 7, 9


def string(s: str) -> bytes:
    return len(s.encode()).to_bytes(2, "big") + s.encode()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(
    client_id: str,
    user: str | None = "user",
    password: str | None = "pw",
    *,
    level: int = 4,
    clean: bool = True,
    keepalive: int = 30,
    will: tuple[str, bytes, int] | None = None,
    properties: bytes = b"",
) -> bytes:
    flags = (0x80 if user is not None else 0) | (0x40 if password is not None else 0) | (0x02 if clean else 0)
    payload = string(client_id)
    if will is not None:
        flags |= 0x04 | (will[2] << 3)
        payload += string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    if user is not None:
        payload += string(user)
    if password is not None:
        payload += string(password)
    body = string("MQTT") + bytes([level, flags]) + keepalive.to_bytes(2, "big") + properties
    return packet(0x10, body + payload)


def subscribe(packet_id: int, *filters: tuple[str, int]) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(string(f) + bytes([q]) for f, q in filters)
    return packet(0x82, body)


def publish(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1, retain: bool = False) -> bytes:
    body = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return packet(0x30 | (qos << 1) | int(retain), body)


@dataclass
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def topic(self) -> str:
        size = int.from_bytes(self.body[:2], "big")
        return self.body[2 : 2 + size].decode()

    @property
    def packet_id(self) -> int:
        start = 2 + int.from_bytes(self.body[:2], "big") if self.kind == PUBLISH else 0
        return int.from_bytes(self.body[start : start + 2], "big")

    @property
    def payload(self) -> bytes:
        start = 2 + int.from_bytes(self.body[:2], "big") + (2 if self.qos else 0)
        return self.body[start:]


class Raw:
    """One raw connection to ``host:port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Raw:
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next(self, timeout: float = 10.0) -> Packet:
        async with asyncio.timeout(timeout):
            first = (await self.reader.readexactly(1))[0]
            length, shift = 0, 0
            while True:
                byte = (await self.reader.readexactly(1))[0]
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            return Packet(first >> 4, first & 0x0F, await self.reader.readexactly(length))

    async def connack(self) -> tuple[bool, int]:
        """(session present, return code) of the CONNACK."""
        ack = await self.next()
        assert ack.kind == CONNACK, ack
        return bool(ack.body[0] & 1), ack.body[1]

    async def closed_by_peer(self, timeout: float = 10.0) -> bytes:
        """Everything the broker still sends until it closes the connection."""
        async with asyncio.timeout(timeout):
            return await self.reader.read()

    def close(self) -> None:
        self.writer.close()
