"""MQTT topic layout: ``anfang/{site}/{device_id}/...``, parsed once into value objects."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import StrEnum

ROOT = "anfang"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
RESERVED_IDS = frozenset({"alarms", "_platform", "platform", "all"})


class Channel(StrEnum):
    """What a message on a device topic is."""

    REPORTED = "twin/reported"
    EVENT = "events"
    TELEMETRY = "telemetry"
    STATUS = "status"
    CMD_RESULT = "cmd/result"
    UPDATE = "twin/update"
    GET = "twin/get"


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed inbound device or service topic. ``name`` is the event type or command name."""

    site: str
    device_id: str
    channel: Channel
    name: str | None = None


def valid_id(value: str) -> bool:
    """Site and device ids: lowercase letters, digits, ``-`` and ``_``, not reserved."""
    return bool(ID_RE.match(value)) and value not in RESERVED_IDS


_PARSED: dict[str, DeviceTopic | None] = {}
# Enough for the topics of ~4,000 busy devices (~300 B each). Larger fleets mostly miss and refill it
# (a parse is ~1 us); a cache sized to every device would cost each cached twin ~600 B of memory.
_PARSED_MAX = 8192


def parse(topic: str) -> DeviceTopic | None:
    """Parse an inbound topic; ``None`` for anything that is not a platform-bound topic.

    Cached: a device's few topics repeat with every message. A plain dict emptied when full costs
    less memory per entry than an LRU cache, and the per-message path only looks it up.
    """
    try:
        return _PARSED[topic]
    except KeyError:
        pass
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    parsed = _PARSED[topic] = _parse(topic)
    return parsed


def _parse(topic: str) -> DeviceTopic | None:
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != ROOT:
        return None
    # interned: the same strings as the device's record and twin, not two more copies per cached topic
    site, device, rest = sys.intern(parts[1]), sys.intern(parts[2]), parts[3:]
    if not (valid_id(site) and valid_id(device)):
        return None
    match rest:
        case ["twin", "reported"]:
            return DeviceTopic(site, device, Channel.REPORTED)
        case ["events", name] if ID_RE.match(name):
            return DeviceTopic(site, device, Channel.EVENT, name)
        case ["telemetry"]:
            return DeviceTopic(site, device, Channel.TELEMETRY)
        case ["status"]:
            return DeviceTopic(site, device, Channel.STATUS)
        case ["cmd", name, "result"] if ID_RE.match(name):
            return DeviceTopic(site, device, Channel.CMD_RESULT, name)
        case ["twin", "update"]:
            return DeviceTopic(site, device, Channel.UPDATE)
        case ["twin", "get"]:
            return DeviceTopic(site, device, Channel.GET)
    return None


def desired_topic(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/{device_id}/twin/desired"


def delta_topic(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/{device_id}/twin/delta"


def command_topic(site: str, device_id: str, name: str) -> str:
    return f"{ROOT}/{site}/{device_id}/cmd/{name}"


def errors_topic(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/{device_id}/errors"


def update_reply_topic(site: str, device_id: str, accepted: bool) -> str:
    return f"{ROOT}/{site}/{device_id}/twin/update/{'accepted' if accepted else 'rejected'}"


def document_topic(site: str, device_id: str) -> str:
    return f"{ROOT}/{site}/{device_id}/twin/document"


def alarm_topic(site: str, alarm_id: str) -> str:
    return f"{ROOT}/{site}/alarms/{alarm_id}"


def platform_topic(site: str, name: str) -> str:
    return f"{ROOT}/{site}/_platform/{name}"


STATUS_SUBSCRIPTION = f"{ROOT}/+/+/status"

# What the platform subscribes to (all QoS 1).
PLATFORM_SUBSCRIPTIONS = (
    f"{ROOT}/+/+/twin/reported",
    f"{ROOT}/+/+/events/#",
    f"{ROOT}/+/+/telemetry",
    f"{ROOT}/+/+/status",
    f"{ROOT}/+/+/cmd/+/result",
    f"{ROOT}/+/+/twin/update",
    f"{ROOT}/+/+/twin/get",
)
