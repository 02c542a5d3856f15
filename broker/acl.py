"""Who may publish and subscribe where. Pure; shared by the embedded broker and Mosquitto files.

A device may publish only to its own ``twin/reported``, ``events/#``, ``telemetry``, ``status``
and ``cmd/+/result`` and subscribe only to its own ``twin/desired``, ``twin/delta``, ``cmd/#``
and ``errors``. The platform service account may do anything under ``anfang/#``; operator
accounts read everything under ``anfang/#`` and may ask for twin updates and documents.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from twins.topics import ROOT


class Role(StrEnum):
    DEVICE = "device"
    PLATFORM = "platform"
    OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated MQTT user. ``site`` is set for devices."""

    username: str
    role: Role
    site: str | None = None


def device_publish_filters(site: str, device_id: str) -> tuple[str, ...]:
    base = f"{ROOT}/{site}/{device_id}"
    return (f"{base}/twin/reported", f"{base}/events/#", f"{base}/telemetry", f"{base}/status", f"{base}/cmd/+/result")


def device_subscribe_filters(site: str, device_id: str) -> tuple[str, ...]:
    base = f"{ROOT}/{site}/{device_id}"
    return (f"{base}/twin/desired", f"{base}/twin/delta", f"{base}/cmd/#", f"{base}/errors")


PLATFORM_CLIENT_PREFIX = "anfang-platform"  # the platform's client ids: anfang-platform, anfang-platform-p1, ...


def client_id_refusal(identity: Identity, client_id: str) -> str | None:
    """Why ``identity`` may not connect as ``client_id``; None when it may.

    Device ids are public (they are in every topic), so a device connects only under its own id:
    no device can take over another's session or knock it off by reusing its id. The platform's
    client ids belong to the platform account alone."""
    if identity.role is Role.DEVICE:
        return None if client_id == identity.username else "a device's client id must be its device id"
    if identity.role is Role.OPERATOR and client_id.startswith(PLATFORM_CLIENT_PREFIX):
        return f"client ids starting with {PLATFORM_CLIENT_PREFIX} belong to the platform"
    return None


OPERATOR_PUBLISH = (f"{ROOT}/+/+/twin/update", f"{ROOT}/+/+/twin/get")
ALL = (f"{ROOT}/#",)


def publish_filters(identity: Identity) -> tuple[str, ...]:
    if identity.role is Role.PLATFORM:
        return ALL
    if identity.role is Role.OPERATOR:
        return OPERATOR_PUBLISH
    assert identity.site is not None
    return device_publish_filters(identity.site, identity.username)


def subscribe_filters(identity: Identity) -> tuple[str, ...]:
    if identity.role in (Role.PLATFORM, Role.OPERATOR):
        return ALL
    assert identity.site is not None
    return device_subscribe_filters(identity.site, identity.username)


def covers(allowed: str, requested: str) -> bool:
    """True when every topic matched by filter ``requested`` is matched by filter ``allowed``."""
    want = requested.split("/")
    have = allowed.split("/")
    for i, level in enumerate(have):
        if level == "#":
            return True
        if i >= len(want):
            return False
        if level == "+":
            if want[i] == "#":
                return False
            continue
        if level != want[i]:
            return False
    return len(want) == len(have)


def may_publish(identity: Identity, topic: str) -> bool:
    if "+" in topic or "#" in topic:
        return False
    return any(covers(f, topic) for f in publish_filters(identity))


def may_subscribe(identity: Identity, topic_filter: str) -> bool:
    if topic_filter.startswith("$share/"):
        # $share/{group}/{filter}: judged by the filter it shares
        parts = topic_filter.split("/", 2)
        if len(parts) < 3:
            return False
        topic_filter = parts[2]
    return any(covers(f, topic_filter) for f in subscribe_filters(identity))
