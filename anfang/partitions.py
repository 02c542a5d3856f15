"""Which worker serves which device when several workers are active for one site. Pure.

A site's devices are split into ``partitions``; each partition is served by exactly one worker at a
time (it holds the partition's lease and its MQTT session), so per-device order and the twin cache
stay with one process. Partition 0 is the site's *leader*: it also runs the site-wide services
(rules, access control, telemetry) and therefore receives every device's events, telemetry and
command results; the other partitions take only the twin channels of their devices and pass their
twin changes to the leader through the database feed (:mod:`anfang.feed`).
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.records import DeviceInfo
from rules.routing import owner_of
from twins.topics import ROOT, platform_topic

LEADER = 0

# The channels whose messages change a twin; they go to the device's partition owner.
TWIN_CHANNELS = ("twin/reported", "status", "twin/update", "twin/get")
# The channels the leader takes for every device of the site.
SITE_WIDE_CHANNELS = ("events/#", "telemetry", "cmd/+/result")


def partition_of(device: DeviceInfo, partitions: int) -> int:
    """The partition serving ``device``. Virtual devices belong to the leader, which derives them."""
    if partitions <= 1 or device.virtual:
        return LEADER
    return owner_of(device.id, partitions)


def twin_filters(site: str, device_ids: Iterable[str]) -> list[str]:
    """The topic filters of the twin channels of these devices."""
    return [f"{ROOT}/{site}/{device_id}/{channel}" for device_id in device_ids for channel in TWIN_CHANNELS]


def site_wide_filters(site: str) -> list[str]:
    return [f"{ROOT}/{site}/+/{channel}" for channel in SITE_WIDE_CHANNELS]


def reply_topic(site: str, client_id: str) -> str:
    """Where the owner of a twin answers the leader's desired-state updates (MQTT 5 response topic)."""
    return platform_topic(site, f"replies/{client_id}")


def partition_client_id(client_id: str, partition: int, partitions: int) -> str:
    """The MQTT client id of a partition's session; a single-partition site keeps the plain id."""
    return client_id if partitions <= 1 else f"{client_id}-p{partition}"
