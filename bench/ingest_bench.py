"""Ingest benchmark: accepted twin reports per second and publish->stored latency, against Mosquitto.

Each run measures, on the same machine and broker, with the same simulator fleet
(``anfang sim fleet``, one process, QoS 1):

* **baseline** — the fleet publishing to a subscriber that does nothing but acknowledge;
* **platform** — the fleet publishing to ``anfang run`` (schema check, merge, dispatch to rules,
  group-committed to SQLite or PostgreSQL; PUBACK only after commit);
* **latency** — the fleet at a fixed rate; the platform's own p50/p99 of device timestamp -> commit.

Figures are medians over ``--runs``. ``python -m bench.ingest_bench --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gmqtt

from firmware_sim.mosquitto import Mosquitto

RESULTS = Path(__file__).resolve().parent / "results"
ANFANG = str(Path(sys.executable).parent / "anfang")


async def _register(data_dir: Path, devices: int) -> None:
    from anfang.app import open_registry
    from anfang.config import Settings

    settings = Settings(site="fleet", data_dir=data_dir)
    settings.broker.hash_iterations = 1000
    async with open_registry(settings) as (registry, _):
        await registry.ensure_site("fleet")
        for i in range(devices):
            await registry.add_device("fleet", f"fleet-{i:05d}", "camera")


def _fleet(port: int, devices: int, rate: float, duration: float, out: Path) -> dict[str, Any]:
    subprocess.run([ANFANG, "sim", "fleet", "--devices", str(devices), "--rate", str(rate), "--duration",
                    str(duration), "--host", "127.0.0.1", "--port", str(port), "--site", "fleet", "--json", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=duration + 300)
    return dict(json.loads(out.read_text()))


class _Counter:
    """A subscriber that counts and acknowledges: the baseline, or a watcher of platform health."""

    def __init__(self, port: int, topic: str, client_id: str) -> None:
        self.port, self.topic = port, topic
        self.client = gmqtt.Client(client_id, clean_session=True)
        self.count = 0
        self.first = self.last = 0.0
        self.health: list[dict[str, Any]] = []
        self._health_seen = asyncio.Event()
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        now = time.monotonic()
        if topic.endswith("/_platform/health"):
            self.health.append({**json.loads(payload), "t": now})
            self._health_seen.set()
            return 0
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        return 0

    async def __aenter__(self) -> _Counter:
        await self.client.connect("127.0.0.1", self.port, version=gmqtt.constants.MQTTv311)
        self.client.subscribe(self.topic, qos=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def wait_health(self, predicate: Any, timeout: float) -> dict[str, Any]:
        """The first health report (received from now on, or the last one) for which ``predicate`` holds."""
        async with asyncio.timeout(timeout):
            while not (self.health and predicate(self.health[-1])):
                self._health_seen.clear()
                await self._health_seen.wait()
        return self.health[-1]

    def rate(self) -> float:
        return self.count / max(self.last - self.first, 1e-6)

    def accepted_rate(self) -> float:
        """Accepted reports per second from health samples, over the span in which they grew."""
        grown = [h for i, h in enumerate(self.health) if i and h["accepted"] > self.health[i - 1]["accepted"]]
        if len(grown) < 2:
            return 0.0
        first = next(h for h in self.health if h["accepted"] > 0) if self.health else grown[0]
        prev = self.health[self.health.index(first) - 1] if self.health.index(first) else first
        return float(grown[-1]["accepted"] - prev["accepted"]) / float(max(grown[-1]["t"] - prev["t"], 1e-6))


async def _run_fleet(port: int, args: argparse.Namespace, rate: float, out: Path) -> dict[str, Any]:
    return await asyncio.to_thread(_fleet, port, args.devices, rate, args.duration, out)


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="anfang-bench-") as tmp_s, \
            Mosquitto(fleet=True, extra_config=["max_queued_messages 10000000"]) as broker:
        tmp = Path(tmp_s)
        await _register(tmp / "data", args.devices)
        # baseline: the same fleet into a subscriber that does nothing
        async with _Counter(broker.port, "anfang/+/+/twin/reported", "baseline") as base:
            fleet_base = await _run_fleet(broker.port, args, args.rate, tmp / "f1.json")
        env = {**os.environ, "ANFANG_DATA_DIR": str(tmp / "data"), "ANFANG_SITE": "fleet",
               "ANFANG_EMBEDDED_BROKER": "false", "ANFANG_MQTT_PORT": str(broker.port),
               "ANFANG_LOG_LEVEL": "WARNING", "ANFANG_CONFIG": str(tmp / "anfang.yaml")}
        if args.database_url:
            env["ANFANG_DATABASE_URL"] = args.database_url
        (tmp / "anfang.yaml").write_text("limits:\n  health_interval_s: 0.5\n")
        RESULTS.mkdir(exist_ok=True)
        log = (RESULTS / "ingest-platform.log").open("w")
        platform = await asyncio.create_subprocess_exec(ANFANG, "run", env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            async with _Counter(broker.port, "anfang/fleet/_platform/health", f"watch-{run}") as watch:
                await watch.wait_health(lambda h: True, 60)
                fleet_platform = await _run_fleet(broker.port, args, args.rate, tmp / "f2.json")
                sent = fleet_platform["acked"]
                try:  # let the platform drain what the broker queued
                    await watch.wait_health(lambda h: h["accepted"] >= sent, 120)
                except TimeoutError:
                    raise SystemExit(f"platform accepted {watch.health[-1]} of {sent}") from None
                accepted_rate = watch.accepted_rate()
                watch.health.clear()
                fleet_lat = await _run_fleet(broker.port, args, args.latency_rate, tmp / "f3.json")
                latency = await watch.wait_health(lambda h: h["accepted"] >= sent + fleet_lat["acked"], 60)
        finally:
            platform.terminate()
            await asyncio.wait_for(platform.wait(), 20)
            log.close()
    return {
        "run": run,
        "baseline_fleet_rate": fleet_base["sustained_rate"],
        "baseline_subscriber_rate": round(base.rate(), 1),
        "platform_fleet_rate": fleet_platform["sustained_rate"],
        "platform_accepted_rate": round(accepted_rate, 1),
        "latency_rate": fleet_lat["sustained_rate"],
        "latency_p50_ms": latency.get("ingest_latency_ms_p50"),
        "latency_p99_ms": latency.get("ingest_latency_ms_p99"),
        "rejected": latency.get("rejected"),
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str) -> float:
        return round(float(statistics.median(r[key] for r in runs if r[key] is not None)), 1)

    base = med("baseline_subscriber_rate")
    accepted = med("platform_accepted_rate")
    return {"baseline_subscriber_rate": base, "platform_accepted_rate": accepted,
            "ratio_to_baseline": round(accepted / base, 2) if base else None,
            "latency_rate": med("latency_rate"), "latency_p50_ms": med("latency_p50_ms"),
            "latency_p99_ms": med("latency_p99_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending per phase")
    parser.add_argument("--rate", type=float, default=20_000, help="fleet target rate for the throughput phases")
    parser.add_argument("--latency-rate", type=float, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="e.g. postgres://postgres@127.0.0.1:5432/bench")
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        runs.append(asyncio.run(one_run(args, i)))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = summarise(runs)
    print(f"{'measure':38} {'median':>12}")
    for key, value in summary.items():
        print(f"{key:38} {value!s:>12}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
