"""The MQTT adapter around a pure :class:`~firmware_sim.firmware.Firmware`: one paho client per device,
all driven from one asyncio event loop through paho's socket callbacks (no thread per device).

A :class:`DeviceClient` connects with its own credentials and a last will, keeps QoS 1 messages in
a bounded outbox while offline (dropping the oldest, logged), reconnects with exponential back-off,
and fires the firmware's timers on the simulated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections import deque
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.clock import SimClock
from firmware_sim.firmware import Firmware, Output, Publish, Reboot

log = logging.getLogger(__name__)

SUBSCRIPTIONS = ("twin/desired", "twin/delta", "cmd/#", "errors")


class DeviceError(Exception):
    """A device could not do what was asked."""

    def __init__(self, device_id: str, reason: str) -> None:
        super().__init__(f"{device_id}: {reason}")
        self.device_id = device_id
        self.reason = reason


def encode(payload: dict[str, Any] | str | bytes) -> bytes:
    """Wire bytes of a payload: JSON for dicts, UTF-8 for text."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class DeviceClient:
    """One simulated device on the broker.  Call :meth:`run` inside a task; :meth:`stop` ends it."""

    def __init__(
        self,
        firmware: Firmware,
        *,
        site: str,
        host: str,
        port: int,
        password: str | None,
        clock: SimClock,
        outbox_limit: int = 1000,
        backoff: tuple[float, float] = (0.2, 30.0),
        keepalive: int = 30,
        reconnect_jitter: float = 0.5,
    ) -> None:
        self.fw = firmware
        self.site = site
        self.host = host
        self.port = port
        self.clock = clock
        self.base = f"anfang/{site}/{firmware.device_id}/"
        self.outbox: deque[Publish] = deque()
        self.outbox_limit = outbox_limit
        self.dropped = 0
        self.connected = asyncio.Event()
        self.connections = 0
        self._backoff = backoff
        self._jitter = reconnect_jitter
        # Per-device jitter so a site coming back from an outage does not reconnect as one herd.
        self._rng = random.Random(firmware.device_id)
        self._keepalive = keepalive
        self._wake = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._stopping = False
        self._network_up = True
        self._offline_until = 0.0
        self._loop = asyncio.get_running_loop()
        self._sock: Any = None
        self._last_mid: int | None = None
        self._reboot_after_mid: int | None = None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=firmware.device_id, clean_session=True)
        if password is not None:
            c.username_pw_set(firmware.device_id, password)
        c.will_set(self.base + "status", b"offline", qos=1, retain=True)
        c.max_inflight_messages_set(50)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_publish = self._on_publish
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        c.enable_logger(logging.getLogger(f"{__name__}.paho"))
        self.client = c

    # --- paho socket integration ----------------------------------------------------------------
    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._sock = sock
        self._loop.add_reader(sock, client.loop_read)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self._sock = None

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.add_writer(sock, client.loop_write)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    # --- paho callbacks (run on the event loop thread) ---------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        if rc.is_failure:
            log.warning("%s: connection refused: %s", self.fw.device_id, rc)
            return
        self.connections += 1
        client.publish(self.base + "status", b"online", qos=1, retain=True)
        client.subscribe([(self.base + s, 1) for s in SUBSCRIPTIONS])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        # Up only once subscribed: commands sent from now on reach the firmware.
        self.connected.set()
        # Queued messages first: their seq numbers are older than the state announcement's.
        while self.outbox and self.connected.is_set():
            self._send(self.outbox.popleft())
        self.perform(self.fw.on_connect(self.clock.now()))
        self._wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        self.connected.clear()
        self._disconnected.set()
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.startswith(self.base):
            return
        self.perform(self.fw.on_message(msg.topic[len(self.base) :], bytes(msg.payload), self.clock.now()))

    # --- outputs ------------------------------------------------------------------------------
    def perform(self, outputs: list[Output]) -> None:
        """Publish firmware outputs now, or queue QoS 1 ones while offline."""
        for out in outputs:
            if isinstance(out, Reboot):
                self._offline_until = self.clock.now() + out.seconds
                self.fw.boot_ts = self._offline_until
                if self._last_mid is None or not self.connected.is_set():
                    self._abort_socket()
                else:
                    self._reboot_after_mid = self._last_mid  # restart once the command result is acked
            elif self.connected.is_set():
                self._send(out)
            elif out.qos > 0:
                self._enqueue(out)

    def _enqueue(self, out: Publish) -> None:
        if len(self.outbox) >= self.outbox_limit:
            self.outbox.popleft()
            self.dropped += 1
            # Drop-oldest: the newest state and events matter most after an outage.
            log.warning(
                "%s: offline outbox full (%d), dropped oldest message (%d dropped so far)",
                self.fw.device_id,
                self.outbox_limit,
                self.dropped,
            )
        self.outbox.append(out)

    def _send(self, out: Publish) -> None:
        info = self.client.publish(self.base + out.suffix, encode(out.payload), qos=out.qos, retain=out.retain)
        self._last_mid = info.mid

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: ReasonCode, props: Any) -> None:
        if mid == self._reboot_after_mid:
            self._reboot_after_mid = None
            self._abort_socket()

    def publish_raw(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish arbitrary bytes on any topic (the ``bad-firmware`` scenario)."""
        if not self.connected.is_set():
            raise DeviceError(self.fw.device_id, "not connected")
        self.client.publish(topic, payload, qos=qos)

    def stimulate(self, suffix: str, payload: dict[str, Any]) -> None:
        """Feed a behaviour-model action to the firmware and publish what it emits."""
        self.perform(self.fw.stimulate(suffix, payload, self.clock.now()))

    # --- network faults -------------------------------------------------------------------------
    def _abort_socket(self) -> None:
        """Drop the TCP connection without DISCONNECT, as a power loss or reboot does (the will fires)."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut_network(self) -> None:
        """Lose the network abruptly (no DISCONNECT, so the broker publishes the last will)."""
        self._network_up = False
        self._abort_socket()
        self._wake.set()

    def restore_network(self) -> None:
        """The network is back; the device reconnects with its usual back-off."""
        self._network_up = True
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`run` to disconnect cleanly and return."""
        self._stopping = True
        self._wake.set()

    # --- the supervisor task ---------------------------------------------------------------------
    async def _pause(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, seconds))

    def _try_connect(self) -> bool:
        try:
            self.client.connect(self.host, self.port, keepalive=self._keepalive)
        except OSError as exc:
            log.info("%s: connect failed: %s", self.fw.device_id, exc)
            return False
        return True

    async def run(self) -> None:
        """Connect, keep connected (with back-off) and fire firmware timers until :meth:`stop`."""
        delay = self._backoff[0]
        try:
            while not self._stopping:
                offline_for = self.clock.until(self._offline_until)
                if not self._network_up or offline_for > 0:
                    await self._pause(offline_for if self._network_up else 3600.0)
                    continue
                if not self.connected.is_set():
                    self._disconnected.clear()
                    if self.connections:
                        await self._pause(self._rng.uniform(0.0, self._jitter))
                    if not self._try_connect():
                        await self._pause(delay * self._rng.uniform(0.5, 1.5))
                        delay = min(delay * 2, self._backoff[1])
                        continue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.connected.wait(), timeout=10.0)
                    if not self.connected.is_set():
                        self._abort_socket()
                        with contextlib.suppress(OSError):
                            self.client.disconnect()
                        await self._pause(delay * self._rng.uniform(0.5, 1.5))
                        delay = min(delay * 2, self._backoff[1])
                        continue
                    delay = self._backoff[0]
                self.perform(self.fw.tick(self.clock.now()))
                self.client.loop_misc()
                due = self.fw.next_due()
                wait = 1.0 if due is None else min(1.0, self.clock.until(due))
                await self._pause(wait)
        finally:
            if self.connected.is_set():
                self.client.publish(self.base + "status", b"offline", qos=1, retain=True)
                self.client.disconnect()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._disconnected.wait(), timeout=2.0)
            if self._sock is not None:
                self._on_socket_close(self.client, None, self._sock)
