"""Ingest benchmark: accepted twin reports per second and publish->stored latency, against Mosquitto.

Each run measures, on the same machine and broker, with the same simulator fleet
(``anfang sim fleet``, one process, QoS 1):

* **baseline** — the fleet publishing to a subscriber that does nothing but acknowledge, at a target
  rate (``--baseline-rate``) well above what the platform takes, so it shows the broker+subscriber's
  maximum rather than the fleet's cap;
* **platform** — the fleet publishing to the platform (schema check, merge, dispatch,
  group-committed to SQLite or PostgreSQL; PUBACK only after commit), per ``--variants``:
  ``full`` is ``anfang run`` as shipped (rules, access control, vision and telemetry wired in),
  ``bare`` is the same platform with no services (``bench/bare_platform.py``), ``workers2`` is
  ``anfang run --workers 2`` (two active workers splitting the devices; PostgreSQL);
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
import uuid
from pathlib import Path
from typing import Any

import gmqtt
import psutil

from bench.common import ANFANG, BARE, RESULTS, ROOT
from firmware_sim.mosquitto import Mosquitto

COMMANDS = {"full": [ANFANG, "run"], "bare": BARE, "workers2": [ANFANG, "run", "--workers", "2"]}
NEEDS_POSTGRES = {"workers2"}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _register(data_dir: Path, devices: int, database_url: str | None) -> None:
    from anfang.app import open_registry
    from anfang.config import Settings

    settings = Settings(site="fleet", data_dir=data_dir, database_url=database_url)
    settings.broker.hash_iterations = 1000
    async with open_registry(settings) as (registry, _):
        await registry.ensure_site("fleet")
        for i in range(devices):
            await registry.add_device("fleet", f"fleet-{i:05d}", "camera")


def _fleet(port: int, devices: int, rate: float, duration: float, out: Path) -> dict[str, Any]:
    duration = max(duration, 1.0)
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
        self._by_partition: dict[str, dict[str, Any]] = {}
        self._health_seen = asyncio.Event()
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        now = time.monotonic()
        if "/_platform/health" in topic:
            # one report per active worker partition (health, health/p1, ...): sum what they accepted
            self._by_partition[topic] = json.loads(payload)
            parts = list(self._by_partition.values())
            combined = {**parts[0], "accepted": sum(h["accepted"] for h in parts), "ts": min(h["ts"] for h in parts)}
            for key in ("ingest_latency_ms_p50", "ingest_latency_ms_p99"):
                values = [h[key] for h in parts if h.get(key) is not None]
                combined[key] = max(values) if values else None
            self.health.append({**combined, "t": now})
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

    def rate_between(self, start: float, end: float) -> float:
        """Accepted reports per second between two health samples taken within [start, end]."""
        inside = [h for h in self.health if start <= h["t"] <= end]
        if len(inside) < 2:
            return 0.0
        span = float(max(inside[-1]["t"] - inside[0]["t"], 1e-6))
        return float(inside[-1]["accepted"] - inside[0]["accepted"]) / span

    def accepted_rate(self) -> float:
        """Accepted reports per second from health samples, over the span in which they grew."""
        grown = [h for i, h in enumerate(self.health) if i and h["accepted"] > self.health[i - 1]["accepted"]]
        if len(grown) < 2:
            return 0.0
        first = next(h for h in self.health if h["accepted"] > 0) if self.health else grown[0]
        prev = self.health[self.health.index(first) - 1] if self.health.index(first) else first
        return float(grown[-1]["accepted"] - prev["accepted"]) / float(max(grown[-1]["t"] - prev["t"], 1e-6))


async def _run_fleet(port: int, args: argparse.Namespace, rate: float, out: Path,
                     duration: float | None = None) -> dict[str, Any]:
    return await asyncio.to_thread(_fleet, port, args.devices, rate, duration or args.duration, out)


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """One baseline phase, then each variant's throughput and latency phases, all on one broker."""
    with tempfile.TemporaryDirectory(prefix="anfang-bench-") as tmp_s, \
            Mosquitto(fleet=True, extra_config=["max_queued_messages 10000000"]) as broker:
        tmp = Path(tmp_s)
        # baseline: the same fleet into a subscriber that does nothing
        async with _Counter(broker.port, "anfang/+/+/twin/reported", "baseline") as base:
            fleet_base = await _run_fleet(broker.port, args, args.baseline_rate, tmp / "f1.json",
                                          args.baseline_duration)
        result: dict[str, Any] = {"run": run, "baseline_fleet_rate": fleet_base["sustained_rate"],
                                  "baseline_subscriber_rate": round(base.rate(), 1)}
        for variant in args.variants.split(","):
            result[variant] = await _platform_phases(args, run, variant, broker.port, tmp / variant)
    return result


async def _peak_rss(pid: int, peak: list[float]) -> None:
    """Sample the platform's RSS (MiB; with ``--workers``, of all its processes) twice a second, keeping
    the peak in ``peak[0]``, until cancelled."""
    proc = psutil.Process(pid)
    while True:
        try:
            rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return
        peak[0] = max(peak[0], rss / 2**20)
        await asyncio.sleep(0.5)


async def _platform_phases(args: argparse.Namespace, run: int, variant: str, port: int, tmp: Path) -> dict[str, Any]:
    if variant in NEEDS_POSTGRES or args.postgres:
        import asyncpg

        name = f"anfang_bench_{uuid.uuid4().hex[:8]}"
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            return await _measure(args, run, variant, port, tmp, f"postgres://postgres@127.0.0.1:5432/{name}")
        finally:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            await admin.close()
    return await _measure(args, run, variant, port, tmp, None)


async def _measure(
    args: argparse.Namespace, run: int, variant: str, port: int, tmp: Path, database_url: str | None
) -> dict[str, Any]:
    os.mkdir(tmp)
    await _register(tmp / "data", args.devices, database_url)
    env = {**os.environ, "ANFANG_DATA_DIR": str(tmp / "data"), "ANFANG_SITE": "fleet",
           "ANFANG_EMBEDDED_BROKER": "false", "ANFANG_MQTT_PORT": str(port),
           "ANFANG_LOG_LEVEL": "WARNING", "ANFANG_CONFIG": str(tmp / "anfang.yaml")}
    if database_url:
        env["ANFANG_DATABASE_URL"] = database_url
    (tmp / "anfang.yaml").write_text("limits:\n  health_interval_s: 0.5\n")
    RESULTS.mkdir(exist_ok=True)
    log = (RESULTS / f"ingest-platform-{variant}.log").open("w")
    platform = await asyncio.create_subprocess_exec(*COMMANDS[variant], env=env, stdout=subprocess.DEVNULL,
                                                    stderr=log, cwd=str(ROOT))
    started = time.time()
    peak = [0.0]
    sampler = asyncio.create_task(_peak_rss(platform.pid, peak))
    try:
        async with _Counter(port, "anfang/fleet/_platform/health/#", f"watch-{variant}-{run}") as watch:
            # the broker still holds the previous variant's retained health report: skip it
            await watch.wait_health(lambda h: float(h["ts"]) >= started, 60)
            watch.health = watch.health[-1:]
            sending_from = time.monotonic()
            fleet_platform = await _run_fleet(port, args, args.rate, tmp / "f2.json")
            while_sending = watch.rate_between(sending_from, time.monotonic())
            sent = fleet_platform["acked"]
            try:  # let the platform drain what the broker queued
                await watch.wait_health(lambda h: h["accepted"] >= sent, max(180.0, sent / 5000))
            except TimeoutError:
                raise SystemExit(f"{variant}: platform accepted {watch.health[-1]} of {sent}") from None
            accepted_rate = watch.accepted_rate()
            watch.health.clear()
            fleet_lat = await _run_fleet(port, args, args.latency_rate, tmp / "f3.json", args.latency_duration)
            latency = await watch.wait_health(lambda h: h["accepted"] >= sent + fleet_lat["acked"], 60)
    finally:
        sampler.cancel()
        platform.terminate()
        await asyncio.wait_for(platform.wait(), 20)
        log.close()
    return {
        "peak_rss_mib": round(peak[0], 1),
        "platform_fleet_rate": fleet_platform["sustained_rate"],
        "platform_accepted_rate": round(accepted_rate, 1),
        "platform_accepted_rate_while_sending": round(while_sending, 1),
        "latency_rate": fleet_lat["sustained_rate"],
        "latency_p50_ms": latency.get("ingest_latency_ms_p50"),
        "latency_p99_ms": latency.get("ingest_latency_ms_p99"),
        "rejected": latency.get("rejected"),
    }


def summarise(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Medians over the runs: the baseline, and per variant its rate, ratio to the baseline and latency."""
    def med(values: list[Any]) -> float:
        return round(float(statistics.median(v for v in values if v is not None)), 1)

    base = med([r["baseline_subscriber_rate"] for r in runs])
    out: dict[str, Any] = {"baseline_subscriber_rate": base,
                           "baseline_fleet_rate": med([r["baseline_fleet_rate"] for r in runs])}
    for variant in variants:
        rows = [r[variant] for r in runs]
        accepted = med([r["platform_accepted_rate"] for r in rows])
        out[variant] = {
            "platform_accepted_rate": accepted,
            "ratio_to_baseline": round(accepted / base, 2) if base else None,
            # the ratio within each run (same broker, same minute), then the median of those
            "ratio_to_baseline_per_run_median": round(float(statistics.median(
                r[variant]["platform_accepted_rate"] / r["baseline_subscriber_rate"] for r in runs)), 2),
            "platform_accepted_rate_while_sending": med([r.get("platform_accepted_rate_while_sending") for r in rows]),
            "ratio_to_baseline_while_sending": round(
                med([r.get("platform_accepted_rate_while_sending") for r in rows]) / base, 2) if base else None,
            "platform_fleet_rate": med([r["platform_fleet_rate"] for r in rows]),
            "latency_rate": med([r["latency_rate"] for r in rows]),
            "latency_p50_ms": med([r["latency_p50_ms"] for r in rows]),
            "latency_p99_ms": med([r["latency_p99_ms"] for r in rows]),
            "peak_rss_mib": med([r.get("peak_rss_mib") for r in rows]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of sending per phase")
    parser.add_argument("--rate", type=float, default=100_000,
                        help="fleet target rate for the platform phase (default: as fast as the fleet goes, "
                             "as in the baseline)")
    parser.add_argument("--baseline-rate", type=float, default=100_000,
                        help="fleet target rate for the baseline phase (above what broker+subscriber take)")
    parser.add_argument("--baseline-duration", type=float, default=None, help="seconds (default: --duration)")
    parser.add_argument("--latency-rate", type=float, default=5000)
    parser.add_argument("--latency-duration", type=float, default=None, help="seconds (default: --duration)")
    parser.add_argument("--variants", default="full,bare",
                        help="comma list of full (anfang run), bare and workers2 (anfang run --workers 2)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true",
                        help=f"every variant on a fresh PostgreSQL database (made through {PG_ADMIN}); "
                             "workers2 always is")
    parser.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if not set(variants) <= set(COMMANDS):
        parser.error(f"--variants: choose from {', '.join(COMMANDS)}")
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} ...", file=sys.stderr, flush=True)
        runs.append(asyncio.run(one_run(args, i)))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = summarise(runs, variants)
    print(f"{'measure':38} {'median':>12}")
    for key, value in summary.items():
        for sub, val in (value.items() if isinstance(value, dict) else [("", value)]):
            name = f"{key}.{sub}" if sub else key
            print(f"{name:38} {val!s:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": runs,
           "summary": summary}
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
