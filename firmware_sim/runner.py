"""Play a community or a scenario over MQTT: device clients, the step player and the operator watcher.

All devices share one asyncio event loop (see :mod:`firmware_sim.device`); the watcher is a single
paho client with its own network thread that hands messages to the loop through a bounded queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.behaviour import BehaviourModel
from firmware_sim.checker import Outcome, Seen, evaluate, passed
from firmware_sim.clock import SimClock
from firmware_sim.community import Community, Device
from firmware_sim.device import DeviceClient, encode
from firmware_sim.firmware import FIRMWARE, Firmware, VehicleGate
from firmware_sim.scenarios import Scenario

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """The simulator could not reach the broker or bring its devices up."""

    def __init__(self, reason: str, device_id: str | None = None) -> None:
        super().__init__(reason if device_id is None else f"{device_id}: {reason}")
        self.reason = reason
        self.device_id = device_id


def make_firmware(device: Device, now: float, wall_ms: int | None = None) -> Firmware:
    """The firmware for a community device; ``seq`` starts at a millisecond wall-clock timestamp so it
    keeps increasing across simulator restarts."""
    seq_start = wall_ms if wall_ms is not None else int(time.time() * 1000)
    cls = FIRMWARE[device.kind]
    if cls is VehicleGate:
        return VehicleGate(device.id, cameras=list(device.cameras), seq_start=seq_start, boot_ts=now)
    return cls(device.id, seq_start=seq_start, boot_ts=now)


@dataclass
class Watcher:
    """The operator's view: subscribes to ``anfang/{site}/#`` and records everything it sees."""

    host: str
    port: int
    site: str
    username: str | None = None
    password: str | None = None
    limit: int = 200_000
    seen: list[Seen] = field(default_factory=list)
    features: frozenset[str] | None = None
    dropped: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()
        self._ready = threading.Event()
        self._refused = False
        self._probe = f"anfang/{self.site}/_sim/probe/{uuid.uuid4().hex}"
        self._probe_seen = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anfang-sim-watch-{uuid.uuid4().hex[:8]}")
        if self.username is not None:
            c.username_pw_set(self.username, self.password)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c

    def _on_connect(self, client: mqtt.Client, u: Any, f: Any, rc: ReasonCode, p: Any) -> None:
        if not rc.is_failure:
            client.subscribe(f"anfang/{self.site}/#", qos=1)

    def _on_subscribe(self, client: mqtt.Client, u: Any, mid: int, rcs: Any, p: Any) -> None:
        self._refused = any(rc.is_failure for rc in rcs)
        self._ready.set()

    def _on_message(self, client: mqtt.Client, u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._probe:
            self._probe_seen.set()
            return
        if msg.topic == f"anfang/{self.site}/_platform/features":
            self._set_features(bytes(msg.payload))
            self._probe_seen.set()
        self._loop.call_soon_threadsafe(
            self._record, Seen(time.monotonic(), msg.topic, bytes(msg.payload), bool(msg.retain))
        )

    def _set_features(self, payload: bytes) -> None:
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("unreadable platform features message")
            return
        if isinstance(doc, dict) and isinstance(doc.get("features"), list):
            self.features = frozenset(str(f) for f in doc["features"])

    def _record(self, m: Seen) -> None:
        if len(self.seen) >= self.limit:
            if not self.dropped:
                log.warning("watcher buffer full (%d messages): dropping newer messages", self.limit)
            self.dropped += 1  # drop-newest: the earliest reactions decide the checks
            return
        self.seen.append(m)
        self._changed.set()

    async def wait_changed(self, timeout: float) -> None:
        """Return after a new message arrives or ``timeout`` seconds."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout=max(0.0, timeout))

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and subscribe; retained messages (features, statuses) are in once this returns."""
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise RunError(f"cannot reach broker {self.host}:{self.port}: {exc}") from exc
        self.client.loop_start()
        topic_filter = f"anfang/{self.site}/#"
        for attempt in range(1, 6):
            if not await asyncio.to_thread(self._ready.wait, timeout):
                raise RunError("operator watcher could not subscribe (credentials or ACL?)")
            if not self._refused:
                break
            # a broker that is reloading its ACL may refuse once; a wrong ACL refuses every time
            log.warning("the broker refused the watcher's subscription to %s (attempt %d)", topic_filter, attempt)
            self._ready.clear()
            await asyncio.sleep(0.2 * attempt)
            self.client.subscribe(topic_filter, qos=1)
        else:
            raise RunError(f"the broker refused the operator watcher's subscription to {topic_filter} (ACL?)")
        self.client.publish(self._probe, b"probe", qos=1)
        # The retained features message (or our probe, which comes back after the retained messages)
        # tells us the subscription's retained messages are in; without either, a short grace period.
        await asyncio.to_thread(self._probe_seen.wait, 2.0)

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Fleet:
    """A set of running device clients owned by one task group."""

    clients: dict[str, DeviceClient]

    async def wait_connected(self, timeout: float) -> None:
        """Wait until every device is connected (RunError naming the stragglers otherwise)."""
        try:
            async with asyncio.timeout(timeout):
                for c in self.clients.values():
                    await c.connected.wait()
        except TimeoutError:
            late = [d for d, c in self.clients.items() if not c.connected.is_set()]
            raise RunError(f"{len(late)} device(s) did not connect: {', '.join(late[:5])}") from None


@contextlib.asynccontextmanager
async def running_devices(
    community: Community,
    device_ids: list[str],
    *,
    host: str,
    port: int,
    secrets: dict[str, str],
    clock: SimClock,
    connect_timeout: float = 15.0,
    boot_wave: int = 1,
) -> AsyncIterator[Fleet]:
    """Run the given devices for the duration of the ``async with`` block."""
    clients: dict[str, DeviceClient] = {}
    for dev_id in device_ids:
        fw = make_firmware(community.device(dev_id), clock.now())
        clients[dev_id] = DeviceClient(
            fw, site=community.site, host=host, port=port, password=secrets.get(dev_id), clock=clock
        )
    fleet = Fleet(clients)
    async with asyncio.TaskGroup() as tg:
        try:
            # Devices boot in small waves (default: one at a time). Simultaneous CONNECTs trip up the
            # embedded amqtt 0.12 broker, which iterates all subscriptions while awaiting on each connect.
            items = list(clients.items())
            for i in range(0, len(items), boot_wave):
                wave = items[i : i + boot_wave]
                for dev_id, c in wave:
                    tg.create_task(c.run(), name=f"device:{dev_id}")
                await Fleet(dict(wave)).wait_connected(connect_timeout)
            yield fleet
        finally:
            for c in clients.values():
                c.stop()


def _do_step(fleet: Fleet, watcher: Watcher | None, action: str, device: str, payload: Any, topic: str | None) -> None:
    client = fleet.clients[device]
    if action == "net/down":
        client.cut_network()
    elif action == "net/up":
        client.restore_network()
    elif action == "raw":
        client.publish_raw(topic or "", encode(payload))
    elif action == "operator":
        if watcher is not None:
            watcher.client.publish(topic or "", encode(payload), qos=1)
    else:
        client.stimulate(action, payload)


@dataclass
class ScenarioReport:
    """What happened when a scenario ran."""

    scenario: str
    outcomes: list[Outcome]
    features: frozenset[str] | None
    ok: bool
    seen: list[Seen] = field(default_factory=list)
    t_start: float = 0.0
    t_done: float = 0.0

    def first(self, topic_suffix: str, after: float | None = None) -> Seen | None:
        """The first live message seen on a topic ending with ``topic_suffix`` (times: ``time.monotonic``)."""
        t0 = self.t_start if after is None else after
        return next((m for m in self.seen if not m.retained and m.t >= t0 and m.topic.endswith(topic_suffix)), None)

    def text(self) -> str:
        """Human-readable report."""
        feats = "no platform" if self.features is None else ", ".join(sorted(self.features))
        head = f"scenario {self.scenario}: {'PASSED' if self.ok else 'FAILED'} (platform features: {feats})"
        return "\n".join([head, *(o.line() for o in self.outcomes)])


async def run_scenario(
    scenario: Scenario,
    community: Community,
    *,
    host: str,
    port: int,
    secrets: dict[str, str],
    operator: tuple[str, str] | None = None,
    speed: float | None = None,
    check: bool = True,
    patience: float = 1.0,
    on_progress: Callable[[str], None] | None = None,
) -> ScenarioReport:
    """Run the scenario's devices, play its steps at ``speed`` and (with ``check``) judge the reactions."""
    watcher = Watcher(host, port, community.site, *(operator or (None, None)))
    await watcher.start()
    try:
        clock = SimClock(scenario.start, speed or scenario.speed)
        async with running_devices(
            community, list(scenario.devices), host=host, port=port, secrets=secrets, clock=clock
        ) as fleet:
            clock = SimClock(scenario.start, speed or scenario.speed)
            for c in fleet.clients.values():
                c.clock = clock
            t_start = time.monotonic()
            for step in sorted(scenario.steps, key=lambda s: s.at):
                await asyncio.sleep(clock.until(scenario.start + step.at))
                _do_step(fleet, watcher, step.action, step.device, step.payload, step.topic)
            t_done = time.monotonic()
            if on_progress is not None:
                on_progress(f"{len(scenario.steps)} steps played in {t_done - t_start:.1f} s")
            outcomes = evaluate(
                scenario,
                community.site,
                watcher.seen,
                t_start=t_start,
                t_steps_done=t_done,
                now=time.monotonic(),
                features=watcher.features,
                patience=patience,
            )
            while check and any(o.status == "pending" for o in outcomes):
                await watcher.wait_changed(0.25)
                outcomes = evaluate(
                    scenario,
                    community.site,
                    watcher.seen,
                    t_start=t_start,
                    t_steps_done=t_done,
                    now=time.monotonic(),
                    features=watcher.features,
                    patience=patience,
                )
    finally:
        watcher.stop()
    return ScenarioReport(
        scenario.name,
        outcomes,
        watcher.features,
        passed(outcomes) if check else True,
        list(watcher.seen),
        t_start,
        t_done,
    )


async def run_community(
    community: Community,
    *,
    host: str,
    port: int,
    secrets: dict[str, str],
    start: float,
    speed: float,
    duration: float,
    seed: int,
    on_progress: Callable[[str], None] | None = None,
) -> int:
    """Run every device of the community with the behaviour model for ``duration`` simulated seconds.

    Returns the number of actions played.
    """
    model = BehaviourModel(community, seed)
    clock = SimClock(start, speed)
    ids = [d.id for d in community.devices]
    played = 0
    async with running_devices(community, ids, host=host, port=port, secrets=secrets, clock=clock) as fleet:
        clock = SimClock(start, speed)
        for c in fleet.clients.values():
            c.clock = clock
        for action in model.actions(start, start + duration):
            await asyncio.sleep(clock.until(action.ts))
            fleet.clients[action.device_id].stimulate(action.suffix, action.payload)
            played += 1
            if on_progress is not None and played % 500 == 0:
                on_progress(f"sim time {time.strftime('%H:%M', time.localtime(clock.now()))}: {played} actions")
    return played
