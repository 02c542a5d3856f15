"""The fast reader of QoS 1 PUBLISH packets splits a byte stream exactly as MQTT frames it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from anfang.mqtt_fastpath import split_packets


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(
    topic: str, mid: int, payload: bytes, qos: int, props: bytes, mqtt5: bool, flags: int
) -> tuple[bytes, bytes]:
    """The packet and its body (what follows the fixed header)."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + (mid.to_bytes(2, "big") if qos else b"")
    if mqtt5:
        body += _varint(len(props)) + props
    body += payload
    return bytes([0x30 | qos << 1 | flags]) + _varint(len(body)) + body, body


topics = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=40)
publishes = st.tuples(
    st.just("publish"),
    topics,
    st.integers(1, 65535),
    st.binary(max_size=300),
    st.sampled_from([0, 1, 2]),
    st.sampled_from([b"", b"\x09\x00\x01x"]),  # no properties, or correlation data "x"
    st.sampled_from([0, 1, 8, 9]),  # retain and dup flags
)
others = st.tuples(st.just("other"), st.sampled_from([0x40, 0x90, 0xD0, 0x20]), st.binary(max_size=20))


@given(st.lists(st.one_of(publishes, others), max_size=12), st.booleans(), st.data())
def test_every_complete_packet_is_handed_on_once_in_order(
    packets: list[tuple],
    mqtt5: bool,
    data: st.DataObject,  # type: ignore[type-arg]
) -> None:
    stream, expected, ends = b"", [], []
    for p in packets:
        if p[0] == "publish":
            _, topic, mid, payload, qos, props, flags = p
            raw, body = _publish(topic, mid, payload, qos, props, mqtt5, flags)
            fast = qos == 1 and (not mqtt5 or not props)
            expected.append(("pub", mid, topic, payload, bool(flags & 8)) if fast else ("other", raw[0], body))
        else:
            _, command, body = p
            raw = bytes([command]) + _varint(len(body)) + body
            expected.append(("other", command, body))
        stream += raw
        ends.append(len(stream))
    cut = data.draw(st.integers(0, len(stream)))
    seen: list[tuple] = []  # type: ignore[type-arg]
    used = split_packets(
        stream[:cut],
        mqtt5,
        lambda mid, t, pl, dup: seen.append(("pub", mid, t, pl, dup)),
        lambda cmd, body: seen.append(("other", cmd, body)),
    )
    complete = sum(1 for end in ends if end <= cut)
    assert seen == expected[:complete]
    assert used == (ends[complete - 1] if complete else 0)


def test_a_remaining_length_beyond_four_bytes_is_malformed() -> None:
    assert split_packets(b"\x30\xff\xff\xff\xff\x01", True, lambda *a: None, lambda *a: None) == -1
