"""A faster reader for the platform's busiest packet: a QoS 1 PUBLISH without properties.

gmqtt turns every packet into a ``Package``, dispatches it through its handler and parses MQTT 5
properties into dicts — most of what a twin report costs before the platform sees it. This splits
the read buffer itself and hands QoS 1 PUBLISH packets without properties straight to the
platform with their DUP flag (set by the broker when it redelivers to a resumed session);
every other packet (and any PUBLISH it does not recognise) goes through gmqtt as before,
in the order it arrived. This module is pure; ``anfang/gmqtt_adapter.py`` installs it in gmqtt.
"""

from __future__ import annotations

from collections.abc import Callable

OnPublish = Callable[[int, str, bytes, bool], None]  # packet id, topic, payload, DUP (a redelivery)
OnOther = Callable[[int, bytes], None]  # fixed-header byte, packet body

_MAX_MULTIPLIER = 128**3


def split_packets(data: bytes, mqtt5: bool, on_publish: OnPublish, on_other: OnOther) -> int:
    """Hand every complete packet in ``data`` on; returns how many bytes were used (-1: malformed)."""
    pos, size = 0, len(data)
    while size - pos >= 2:
        length, multiplier, i = 0, 1, pos + 1
        while True:
            if i >= size:
                return pos
            byte = data[i]
            length += (byte & 0x7F) * multiplier
            i += 1
            if not byte & 0x80:
                break
            multiplier *= 128
            if multiplier > _MAX_MULTIPLIER:
                return -1
        end = i + length
        if end > size:
            return pos
        command = data[pos]
        # 0x32: PUBLISH, QoS 1; the mask ignores DUP (0x08) and RETAIN (0x01)
        if command & 0xF6 != 0x32 or not _publish(data, i, end, mqtt5, bool(command & 0x08), on_publish):
            on_other(command, data[i:end])
        pos = end
    return pos


def _publish(data: bytes, start: int, end: int, mqtt5: bool, dup: bool, on_publish: OnPublish) -> bool:
    if end - start < 4:
        return False
    topic_end = start + 2 + (data[start] << 8 | data[start + 1])
    if topic_end + 2 > end:
        return False
    mid = data[topic_end] << 8 | data[topic_end + 1]
    body = topic_end + 2
    if mqtt5:
        if body >= end or data[body] != 0:  # properties present: gmqtt parses them
            return False
        body += 1
    try:
        topic = data[start + 2 : topic_end].decode()
    except UnicodeDecodeError:
        return False
    if not topic or mid == 0:
        return False
    on_publish(mid, topic, data[body:end], dup)
    return True
