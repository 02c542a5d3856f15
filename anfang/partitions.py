"""Which worker serves which device when several workers are active for one site. Pure.

A site's devices are split into ``partitions``; each partition is served by exactly one worker at a
time (it holds the partition's lease and its MQTT session), so per-device order and the twin cache
stay with one process. The owner of a partition takes every channel of its devices (twin, events,
telemetry, command results) and runs rules, access decisions and telemetry for them; a rule keyed on
an entity another partition owns gets its inputs through the database feed (:mod:`anfang.feed`,
:mod:`rules.routing`). Partition 0 (the *site-duty* partition) also runs the site-wide duties that
are not on the hot path: alarm delivery, retention, history pruning, the features announcement.
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.records import DeviceInfo
from rules.routing import owner_of
from twins.topics import ROOT, platform_topic

LEADER = 0  # the partition of the site-wide duties (and of the virtual devices, which it derives)

# The channels whose messages change a twin.
TWIN_CHANNELS = ("twin/reported", "status", "twin/update", "twin/get")
# Every channel a device's partition owner takes for it: its twin, and what rules, access and telemetry read.
DEVICE_CHANNELS = (*TWIN_CHANNELS, "events/#", "telemetry")


def partition_of(device: DeviceInfo, partitions: int) -> int:
    """The partition serving ``device``. Virtual devices belong to the leader, which derives them."""
    if partitions <= 1 or device.virtual:
        return LEADER
    return owner_of(device.id, partitions)


def device_filters(site: str, device_ids: Iterable[str]) -> list[str]:
    """The topic filters of every channel of these devices (their partition owner's subscriptions)."""
    return [f"{ROOT}/{site}/{device_id}/{channel}" for device_id in device_ids for channel in DEVICE_CHANNELS]


def command_results_filter(site: str) -> str:
    """Command results of every device of the site: a rule or access decision of any partition may command
    any device, and the sender resolves the answer (the others ignore it). Few: one per command."""
    return f"{ROOT}/{site}/+/cmd/+/result"


def reply_topic(site: str, client_id: str) -> str:
    """Where the owner of a twin answers another partition's desired-state updates (MQTT 5 response topic)."""
    return platform_topic(site, f"replies/{client_id}")


def partition_client_id(client_id: str, partition: int, partitions: int) -> str:
    """The MQTT client id of a partition's session; a single-partition site keeps the plain id."""
    return client_id if partitions <= 1 else f"{client_id}-p{partition}"
