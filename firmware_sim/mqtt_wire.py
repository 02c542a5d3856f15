"""A minimal MQTT 3.1.1 packet codec for fleet mode (CONNECT, PUBLISH, PUBACK, PINGREQ and replies).

Sans-IO: bytes in, packets out.  Only what a publishing device needs; the scenario devices use
paho-mqtt instead.
"""

from __future__ import annotations

from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP = 0x20, 0x30, 0x40, 0x90, 0xD0
PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"


class WireError(ValueError):
    """Malformed bytes from the broker."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode_length(n: int) -> bytes:
    """MQTT variable-length 'remaining length' (1–4 bytes)."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else s
    return len(b).to_bytes(2, "big") + b


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 60,
    will: tuple[str, bytes] | None = None,
    clean: bool = True,
) -> bytes:
    """CONNECT; ``will`` is (topic, payload), sent retained at QoS 1."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20
        payload += _str(will[0]) + _str(will[1])
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    var = _str("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    body = var + payload
    return bytes([0x10]) + encode_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 0, retain: bool = False) -> bytes:
    """PUBLISH at QoS 0 or 1."""
    header = PUBLISH | (qos << 1) | (1 if retain else 0)
    body = _str(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return bytes([header]) + encode_length(len(body)) + body


@dataclass(frozen=True, slots=True)
class Packet:
    """A received packet: type nibble (as the high-nibble value), flags and body."""

    type: int
    flags: int
    body: bytes


class Decoder:
    """Incremental decoder: ``feed(data)`` returns the complete packets seen so far."""

    def __init__(self, max_packet: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._max = max_packet

    def feed(self, data: bytes) -> list[Packet]:
        """Add bytes; return complete packets."""
        self._buf += data
        out: list[Packet] = []
        while True:
            if len(self._buf) < 2:
                return out
            length, mult, i = 0, 1, 1
            while True:
                if i >= len(self._buf):
                    return out
                b = self._buf[i]
                length += (b & 0x7F) * mult
                mult *= 128
                i += 1
                if not b & 0x80:
                    break
                if i > 4:
                    raise WireError("remaining length longer than 4 bytes")
            if length > self._max:
                raise WireError(f"packet of {length} bytes exceeds {self._max}")
            if len(self._buf) < i + length:
                return out
            first = self._buf[0]
            out.append(Packet(first & 0xF0, first & 0x0F, bytes(self._buf[i : i + length])))
            del self._buf[: i + length]
