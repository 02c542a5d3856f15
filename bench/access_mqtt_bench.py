"""Access decision latency through the broker: capture published → ``cmd/open`` received by the device.

Starts a private Mosquitto and ``anfang run`` (external broker, every service wired, central mode),
registers the synthetic ~560-resident community of ``bench/access_bench.py`` (devices in the
registry, people, faces and vehicles in the community store), then one MQTT client per door or gate
publishes captures at ``--rate`` per second — plate text at the gates, a face template (128 floats)
at the unit doors, 20 % of them unknown — and answers every ``open`` command it receives. Latency is
measured on the device side, from just before the capture's PUBLISH to the arrival of the
matching ``cmd/open`` (matched by device and subject). Figures are medians over ``--runs`` phases
of ``--seconds`` each, after a warm-up phase. ``python -m bench.access_mqtt_bench --help``; JSON to
``bench/results/access_mqtt.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import tempfile
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import gmqtt
import numpy as np

from bench.access_bench import _template, synthetic_community
from bench.common import ANFANG, RESULTS, ROOT, Watcher, machine, median, pct, platform_env
from firmware_sim.mosquitto import Mosquitto
from vision.plate_text import PROVINCES

SITE = "bench"


async def provision(data_dir: Path, data: dict[str, Any]) -> None:
    """Register the community's devices with the platform and its people and vehicles with access control."""
    from anfang.app import open_registry
    from anfang.config import Settings
    from community.crypto import FieldCipher, load_master_key
    from community.importer import import_community
    from community.store import CommunityStore

    settings = Settings(site=SITE, data_dir=data_dir)
    settings.broker.hash_iterations = 1000
    async with open_registry(settings) as (registry, _):
        await registry.ensure_site(SITE)
        for d in data["devices"]:
            await registry.add_device(SITE, d["id"], d["kind"])
        store = CommunityStore(FieldCipher(load_master_key(None, data_dir)), SITE)
        await import_community(data, store, now=time.time(), alternative_pins=False)


class Devices:
    """One MQTT client per door or gate: publishes captures, answers ``open``, timestamps its arrival."""

    def __init__(self, port: int, device_ids: list[str]) -> None:
        self.port = port
        self.clients = {d: gmqtt.Client(f"bench-{d}", clean_session=True) for d in device_ids}
        self.pending: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self.latencies: list[float] = []
        self.unmatched = 0
        self.arrived = asyncio.Event()
        for dev, client in self.clients.items():
            client.on_message = self._handler(dev)

    def _handler(self, dev: str) -> Any:
        def on_message(client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
            now = time.monotonic()
            cmd = json.loads(payload)
            waiting = self.pending.get((dev, str(cmd["args"].get("subject"))))
            if waiting:
                self.latencies.append((now - waiting.popleft()) * 1000)
            else:
                self.unmatched += 1
            client.publish(
                f"anfang/{SITE}/{dev}/cmd/open/result",
                json.dumps({"id": cmd["id"], "ok": True, "result": {"opened": True}, "error": None}),
                qos=1,
            )
            self.arrived.set()
            return 0

        return on_message

    async def __aenter__(self) -> Devices:
        for dev, client in self.clients.items():
            await client.connect("127.0.0.1", self.port, version=gmqtt.constants.MQTTv311)
            client.subscribe(f"anfang/{SITE}/{dev}/cmd/open", qos=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self.clients.values():
            await client.disconnect()

    def capture(self, dev: str, type_: str, data: dict[str, Any], expect_subject: str | None) -> None:
        """Publish one capture event; ``expect_subject`` is who the open command should name."""
        now = time.monotonic()
        if expect_subject is not None:
            self.pending[(dev, expect_subject)].append(now)
        payload = json.dumps({"id": uuid.uuid4().hex, "ts": time.time(), "data": data})
        self.clients[dev].publish(f"anfang/{SITE}/{dev}/events/{type_}", payload, qos=1)

    async def wait_opened(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` open commands have been timed; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.latencies) < count:
                    self.arrived.clear()
                    await self.arrived.wait()
        except TimeoutError:
            return False
        return True


Capture = tuple[str, str, dict[str, Any], str | None]  # device, event type, data, subject expected to be let in


def plan(data: dict[str, Any], rng: np.random.Generator, count: int) -> list[Capture]:
    """``count`` captures: 50 % plates at the gates, 50 % faces at the doors, 20 % of each unknown."""
    people = [p for p in data["people"] if p["face_consent"]]
    out: list[Capture] = []
    for _ in range(count):
        unknown = rng.random() < 0.2
        if rng.random() < 0.5:
            gate = "gate-north" if rng.random() < 0.5 else "gate-south"
            if unknown:
                plate = random.choice(PROVINCES) + f"A{rng.integers(0, 99999):05d}"
                out.append((gate, "plate_captured", {"plate": plate, "confidence": 0.95}, None))
            else:
                v = data["vehicles"][rng.integers(len(data["vehicles"]))]
                out.append((gate, "plate_captured", {"plate": v["plate"], "confidence": 0.95}, v["owner"]))
        else:
            p = people[rng.integers(len(people))]
            door = f"door-{p['household'].split('-')[1]}-u1"
            emb = _template(rng) if unknown else p["face_template"]
            out.append((door, "face_captured", {"liveness": 0.95, "embedding": emb}, None if unknown else p["id"]))
    return out


async def phase(
    devices: Devices, rate: float, seconds: float, rng: np.random.Generator, data: dict[str, Any]
) -> dict[str, Any]:
    """Captures at ``rate`` for ``seconds``; latency figures of the open commands they caused."""
    captures = plan(data, rng, int(rate * seconds))
    devices.latencies.clear()
    expected = sum(1 for c in captures if c[3] is not None)
    start = time.monotonic()
    for i, (dev, type_, payload, subject) in enumerate(captures):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the schedule, not synchronisation
        devices.capture(dev, type_, payload, subject)
    sent_s = time.monotonic() - start
    complete = await devices.wait_opened(expected, 30)
    lat = list(devices.latencies)
    return {
        "captures": len(captures),
        "achieved_rate": round(len(captures) / sent_s, 1),
        "expected_opens": expected,
        "opened": len(lat),
        "complete": complete,
        "unmatched": devices.unmatched,
        "p50_ms": round(pct(lat, 0.5), 2),
        "p99_ms": round(pct(lat, 0.99), 2),
        "max_ms": round(max(lat), 2) if lat else None,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Provision, start broker and platform, run the warm-up and the measured phases."""
    rng = np.random.default_rng(7)
    random.seed(7)
    data = synthetic_community(rng)
    data["site"] = SITE
    with tempfile.TemporaryDirectory(prefix="anfang-access-") as tmp_s, Mosquitto(fleet=True) as broker:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        await provision(tmp / "data", data)
        provision_s = time.perf_counter() - t0
        env = platform_env(tmp / "data", SITE, broker.port)
        features = f"anfang/{SITE}/_platform/features"
        log = (tmp / "platform.log").open("w")
        proc = await asyncio.create_subprocess_exec(
            ANFANG, "run", env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            async with Watcher(broker.port, [features], "access-watch") as watch:
                await watch.wait(lambda latest: features in latest, 120)
            async with Devices(broker.port, [d["id"] for d in data["devices"]]) as devices:
                warm = await phase(devices, args.rate, args.warmup, rng, data)
                phases = [await phase(devices, args.rate, args.seconds, rng, data) for _ in range(args.runs)]
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            log.close()
        platform_log = (tmp / "platform.log").read_text()[-4000:]
    summary = {
        "rate": args.rate,
        "p50_ms": median([p["p50_ms"] for p in phases]),
        "p99_ms": median([p["p99_ms"] for p in phases]),
        "achieved_rate": median([p["achieved_rate"] for p in phases]),
        "all_opens_arrived": all(p["complete"] for p in phases),
    }
    return {
        "benchmark": "access capture -> cmd/open through Mosquitto and anfang run",
        "mode": "central",
        "people": len(data["people"]),
        "vehicles": len(data["vehicles"]),
        "devices": len(data["devices"]),
        "provision_s": round(provision_s, 2),
        "warmup": warm,
        "phases": phases,
        "summary": summary,
        "platform_log_tail": platform_log,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="captures per second")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each measured phase")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of captures before measuring")
    ap.add_argument("--runs", type=int, default=3, help="measured phases")
    ap.add_argument("--out", type=Path, default=RESULTS / "access_mqtt.json")
    args = ap.parse_args(argv)
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({**result["summary"], "phases": result["phases"]}, indent=1))


if __name__ == "__main__":
    main()
