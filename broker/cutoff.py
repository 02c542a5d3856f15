"""Cutting a device off the broker at once: after it is disabled, deleted or given a new secret.

A broker checks credentials only when a client connects, so changing them in the registry (and, for
Mosquitto, in its password file) leaves a live connection working. Two ways end it:

* :class:`EmbeddedCutOff` — the process that runs the embedded broker closes the connection itself
  (:meth:`broker.embedded.EmbeddedBroker.disconnect`).
* :class:`TakeoverCutOff` — any process holding the platform account's secret connects *with the
  device's client id* and leaves again. MQTT lets one connection per client id live, so the broker
  closes the device's connection (MQTT-3.1.4-2) and, the takeover asking for a clean session, ends
  its session too. This works on Mosquitto 2.0 (which has no admin API without the dynamic security
  plugin) and on the embedded broker alike; Mosquitto must have re-read its password file first
  (:class:`broker.mosquitto.MosquittoSync`), or the device simply connects again.

The device's next connection is checked against the new credentials; a disabled or deleted device
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from twins.topics import ROOT

__all__ = [
    "BrokerUnreachable",
    "CutOff",
    "CutOffError",
    "Disconnector",
    "EmbeddedCutOff",
    "TakeoverCutOff",
    "connack_code",
    "retained_topics",
]


class CutOffError(Exception):
    """The broker could not be reached or refused the platform account."""


class BrokerUnreachable(CutOffError):
    """No broker listens: nothing is connected to it either."""


class CutOff(Protocol):
    """Ends a device's live connection (and its broker session)."""

    async def cut_off(self, site: str, device_id: str, *, forget: bool = False) -> None:
        """``forget``: the device is deleted; also clear what the broker retains for it."""
        ...


class Disconnector(Protocol):
    async def disconnect(self, client_id: str, *, forget: bool = False) -> bool: ...

    async def clear_retained(self, topics: Sequence[str]) -> None: ...


def retained_topics(site: str, device_id: str) -> tuple[str, ...]:
    """What the broker keeps for a device (docs/protocol.md): its desired document and its status."""
    base = f"{ROOT}/{site}/{device_id}"
    return (f"{base}/twin/desired", f"{base}/status")


class EmbeddedCutOff:
    """Through the embedded broker this process runs."""

    def __init__(self, broker: Disconnector) -> None:
        self._broker = broker

    async def cut_off(self, site: str, device_id: str, *, forget: bool = False) -> None:
        await self._broker.disconnect(device_id, forget=forget)
        if forget:
            await self._broker.clear_retained(retained_topics(site, device_id))


class TakeoverCutOff:
    """By taking over the device's client id with the platform account (any broker, any process)."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout: float = 10.0) -> None:
        self._address = (host, port)
        self._credentials = (username, password)
        self._timeout = timeout

    async def cut_off(self, site: str, device_id: str, *, forget: bool = False) -> None:
        topics = retained_topics(site, device_id) if forget else ()
        await asyncio.to_thread(self._take_over, device_id, topics)

    def _take_over(self, client_id: str, clear: Sequence[str]) -> None:
        with _connected(self._address, self._credentials, client_id, self._timeout) as (client, code):
            if code != 0:
                raise CutOffError(f"the broker refused the platform account taking over {client_id}: {code}")
            for topic in clear:
                client.publish(topic, b"", qos=1, retain=True).wait_for_publish(self._timeout)


def connack_code(address: tuple[str, int], credentials: tuple[str, str], client_id: str, timeout: float) -> int:
    """Connect, return the CONNACK's reason code (0: accepted) and leave. Blocking: call in a thread."""
    with _connected(address, credentials, client_id, timeout) as (_, code):
        return code


@contextlib.contextmanager
def _connected(
    address: tuple[str, int], credentials: tuple[str, str], client_id: str, timeout: float
) -> Iterator[tuple[mqtt.Client, int]]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    client.username_pw_set(*credentials)
    connected = threading.Event()
    codes: list[int] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        codes.append(int(getattr(reason, "value", reason)))  # type: ignore[call-overload]  # paho's ReasonCode
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(*address, keepalive=10)
    except OSError as exc:
        raise BrokerUnreachable(f"cannot reach the broker at {address[0]}:{address[1]}: {exc}") from None
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise CutOffError(f"no CONNACK for {client_id} within {timeout:.0f} s")
        yield client, codes[0]
    finally:
        client.disconnect()
        client.loop_stop()
