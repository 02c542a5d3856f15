"""Fleet mode: thousands of publishing devices from one process and one asyncio event loop.

Each device is a small :class:`asyncio.Protocol` speaking just enough MQTT 3.1.1
(:mod:`firmware_sim.mqtt_wire`): CONNECT with its own client id (and credentials when given) and
a last will, a retained ``online`` status, then QoS 1 ``twin/reported`` messages paced by one
scheduler so the whole fleet sends at ``rate`` messages per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from firmware_sim.mqtt_wire import (
    CONNACK,
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    PUBACK,
    Decoder,
    WireError,
    connect_packet,
    publish_packet,
)


class FleetError(RuntimeError):
    """The fleet could not be brought up."""

    def __init__(self, reason: str, connected: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connected = connected


@dataclass
class FleetStats:
    """Counters shown on the progress line and in the result."""

    devices: int = 0
    connected: int = 0
    sent: int = 0
    acked: int = 0
    errors: int = 0
    deferred: int = 0
    inflight: int = 0
    idle: asyncio.Event | None = None

    def line(self, rate: float) -> str:
        """The live progress line."""
        return (
            f"connected {self.connected}/{self.devices}  sent {self.sent}  acked {self.acked}  "
            f"errors {self.errors}  {rate:,.0f} msg/s  peak RSS {peak_rss_mb():.0f} MB"
        )


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to run."""

    host: str = "127.0.0.1"
    port: int = 1883
    devices: int = 10_000
    rate: float = 5000.0
    duration: float = 60.0
    site: str = "fleet"
    prefix: str = "fleet"
    qos: int = 1
    max_inflight: int = 20
    connect_concurrency: int = 256
    keepalive: int = 120
    secrets: dict[str, str] = field(default_factory=dict)
    events: float = 0.0  # share of messages that are events (``motion``, each a new id) instead of reports
    changing: bool = False  # reports change the twin every time (``fps`` cycles 15..25) instead of repeating it


@dataclass(frozen=True, slots=True)
class FleetResult:
    """Measured outcome of a fleet run."""

    devices: int
    connected: int
    connect_seconds: float
    send_seconds: float
    sent: int
    acked: int
    errors: int
    target_rate: float
    sustained_rate: float
    peak_rss_mb: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def raise_fd_limit(needed: int) -> int:
    """Raise the soft open-files limit towards ``needed`` (capped by the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


class _Device(asyncio.Protocol):
    """One fleet device connection."""

    __slots__ = (
        "_decoder",
        "_pid",
        "base",
        "closing",
        "connack",
        "dev_id",
        "inflight",
        "paused",
        "seq",
        "stats",
        "transport",
    )

    def __init__(self, dev_id: str, base: str, stats: FleetStats, seq_start: int) -> None:
        self.dev_id = dev_id
        self.base = base
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._decoder = Decoder()
        self._pid = 0
        self.inflight = 0
        self.paused = False
        self.closing = False
        self.seq = seq_start

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except WireError:
            self.stats.errors += 1
            if self.transport is not None:
                self.transport.abort()
            return
        for p in packets:
            if p.type == PUBACK:
                self.inflight -= 1
                self.stats.acked += 1
                self.stats.inflight -= 1
                if self.stats.inflight <= 0 and self.stats.idle is not None:
                    self.stats.idle.set()
            elif p.type == CONNACK and not self.connack.done():
                self.connack.set_result(p.body[1] if len(p.body) > 1 else 255)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_result(-1)
        if not self.closing:
            self.stats.errors += 1
            if self.transport is not None:
                self.stats.connected -= 1
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def ready(self, max_inflight: int) -> bool:
        return self.transport is not None and not self.paused and self.inflight < max_inflight

    def publish(self, suffix: str, payload: bytes, qos: int, retain: bool = False) -> None:
        assert self.transport is not None
        if qos:
            self._pid = self._pid % 65535 + 1
            self.inflight += 1
            self.stats.inflight += 1
        self.transport.write(publish_packet(self.base + suffix, payload, qos=qos, packet_id=self._pid, retain=retain))
        self.stats.sent += 1


async def _connect_all(cfg: FleetConfig, stats: FleetStats, devices: list[_Device]) -> None:
    loop = asyncio.get_running_loop()
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(devices):
            d = devices[next_index]
            next_index += 1
            try:
                await loop.create_connection(lambda d=d: d, cfg.host, cfg.port)  # type: ignore[misc]
            except OSError:
                stats.errors += 1
                continue
            assert d.transport is not None
            secret = cfg.secrets.get(d.dev_id)
            d.transport.write(
                connect_packet(
                    d.dev_id,
                    username=d.dev_id if secret is not None else None,
                    password=secret,
                    keepalive=cfg.keepalive,
                    will=(d.base + "status", b"offline"),
                )
            )
            try:
                rc = await asyncio.wait_for(d.connack, timeout=30.0)
            except TimeoutError:
                rc = -2
            if rc != 0:
                stats.errors += 1
                if d.transport is not None:
                    d.closing = True
                    d.transport.abort()
                continue
            stats.connected += 1
            d.publish("status", b"online", qos=1, retain=True)

    async with asyncio.TaskGroup() as tg:
        for i in range(min(cfg.connect_concurrency, len(devices))):
            tg.create_task(worker(), name=f"fleet-connect-{i}")


async def run_fleet(cfg: FleetConfig, progress: Callable[[str], None] | None = None) -> FleetResult:
    """Connect ``cfg.devices`` devices, send reports at ``cfg.rate`` for ``cfg.duration`` s, disconnect."""
    raise_fd_limit(cfg.devices + 1024)
    stats = FleetStats(devices=cfg.devices)
    seq0 = int(time.time() * 1000)
    devices = [
        _Device(f"{cfg.prefix}-{i:05d}", f"anfang/{cfg.site}/{cfg.prefix}-{i:05d}/", stats, seq0)
        for i in range(cfg.devices)
    ]
    t0 = time.monotonic()
    reporter_stop = asyncio.Event()

    async def reporter() -> None:
        last_acked, last_t = 0, time.monotonic()
        while not reporter_stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reporter_stop.wait(), timeout=1.0)
            now = time.monotonic()
            rate = (stats.acked - last_acked) / max(now - last_t, 1e-6)
            last_acked, last_t = stats.acked, now
            if progress is not None:
                progress(stats.line(rate))

    async with asyncio.TaskGroup() as tg:
        rep = tg.create_task(reporter(), name="fleet-progress")
        try:
            await _connect_all(cfg, stats, devices)
            t_conn = time.monotonic() - t0
            if stats.connected == 0:
                raise FleetError("no device could connect", 0)
            acked_before = stats.acked
            send_seconds = await _send_loop(cfg, stats, devices)
            acked = stats.acked - acked_before
            await _drain(stats, 10.0)
            for d in devices:
                if d.transport is not None:
                    d.publish("status", b"offline", qos=0, retain=True)
                    d.closing = True
                    d.transport.write(DISCONNECT_PACKET)
                    d.transport.close()
        finally:
            reporter_stop.set()
            await rep
            for d in devices:
                if d.transport is not None:
                    d.closing = True
                    d.transport.abort()
    return FleetResult(
        cfg.devices,
        stats.connected,
        round(t_conn, 2),
        round(send_seconds, 2),
        stats.sent,
        stats.acked,
        stats.errors,
        cfg.rate,
        round(acked / max(send_seconds, 1e-6), 1),
        round(peak_rss_mb(), 1),
    )


async def _send_loop(cfg: FleetConfig, stats: FleetStats, devices: list[_Device]) -> float:
    live = [d for d in devices if d.transport is not None]
    start = time.monotonic()
    end = start + cfg.duration
    sent = 0
    rr = 0
    last_ping = start
    while (now := time.monotonic()) < end:
        due = int(cfg.rate * (now - start)) - sent
        tried = 0
        while due > 0 and tried < len(live):
            d = live[rr]
            rr = (rr + 1) % len(live)
            tried += 1
            if not d.ready(cfg.max_inflight):
                continue
            d.seq += 1
            if int((sent + 1) * cfg.events) > int(sent * cfg.events):
                d.publish(
                    "events/motion", b'{"id":"m-%d","ts":%.3f,"data":{"zone":"gate"}}' % (d.seq, time.time()), cfg.qos
                )
            else:
                fps = 15 + d.seq % 11 if cfg.changing else 25
                d.publish(
                    "twin/reported",
                    b'{"seq":%d,"ts":%.3f,"state":{"recording":true,"fps":%d}}' % (d.seq, time.time(), fps),
                    cfg.qos,
                )
            sent += 1
            due -= 1
            tried = 0
        if due > 0:
            stats.deferred += due
        if now - last_ping > cfg.keepalive / 2:
            last_ping = now
            for d in live:
                if d.transport is not None:
                    d.transport.write(PINGREQ_PACKET)
        await asyncio.sleep(0.005)
    return time.monotonic() - start


async def _drain(stats: FleetStats, timeout: float) -> None:
    """Wait until every QoS 1 message is acknowledged (or ``timeout``)."""
    stats.idle = asyncio.Event()
    if stats.inflight <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stats.idle.wait(), timeout)
