"""Ingest benchmark: accepted twin reports per second and publish->stored latency, against Mosquitto.

Each run measures, on the same machine and broker, with the same simulator fleet
(``anfang sim fleet``, one process, QoS 1):

* **baseline** — the fleet publishing to a subscriber that does nothing but acknowledge, at a target
  rate (``--baseline-rate``) well above what the platform takes, so it shows the broker+subscriber's
  maximum rather than the fleet's cap;
* **platform** — the fleet publishing to the platform (schema check, merge, dispatch,
  group-committed to SQLite or PostgreSQL; PUBACK only after commit), per ``--variants``:
  ``full`` is ``anfang run`` as shipped (rules, access control, vision and telemetry wired in),
  ``bare`` is the same platform with no services (``bench/bare_platform.py``), ``pg`` is
  ``anfang run`` on PostgreSQL, ``workers2`` is ``anfang run --workers 2`` (two active workers
  splitting the devices; PostgreSQL, so ``pg`` is the one-worker figure to compare it with),
  ``events`` is ``anfang run`` with half of the fleet's messages events (``motion``, each a new id,
  checked against the stored events and stored) instead of reports, ``bare_events`` the same on the
  platform with no services (the twin core and the store alone);
* **latency** — the fleet at a fixed rate; the platform's own p50/p99 of device timestamp -> commit;
* **backlog** — the platform stopped, the fleet sends for ``--backlog-duration`` into its persistent
  session(s), then the platform starts and drains that backlog with no fleet running: its rate and
  the CPU cores its processes use (this is where ``workers2`` can use more than one core).

Figures are medians over ``--runs``. ``python -m bench.ingest_bench --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
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

COMMANDS = {
    "full": [ANFANG, "run"],
    "bare": BARE,
    "pg": [ANFANG, "run"],
    "workers2": [ANFANG, "run", "--workers", "2"],
    "events": [ANFANG, "run"],
    "bare_events": BARE,
}
EVENT_SHARE = {
    "events": 0.5,
    "bare_events": 0.5,
}  # the share of the fleet's messages that are events (new ids), per variant
NEEDS_POSTGRES = {"pg", "workers2"}
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


def _fleet(port: int, devices: int, rate: float, duration: float, out: Path, events: float) -> dict[str, Any]:
    duration = max(duration, 1.0)
    subprocess.run(
        [
            ANFANG,
            "sim",
            "fleet",
            "--devices",
            str(devices),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--site",
            "fleet",
            "--json",
            str(out),
            "--events",
            str(events),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=duration + 300,
    )
    return dict(json.loads(out.read_text()))


class _Accepted:
    """What the platform accepted over its own clock, one series per health topic (one per active
    partition: ``health``, ``health/p1``, ...), interpolated between reports so that partitions
    reporting at different moments add up."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[float, int]]] = {}

    def add(self, topic: str, ts: float, accepted: int) -> None:
        points = self.series.setdefault(topic, [])
        if not points or ts > points[-1][0]:
            points.append((ts, accepted))

    def at(self, t: float) -> float:
        total = 0.0
        for points in self.series.values():
            i = bisect.bisect_right(points, (t, float("inf")))
            if i == 0:
                total += points[0][1]
            elif i == len(points):
                total += points[-1][1]
            else:
                (t0, a0), (t1, a1) = points[i - 1], points[i]
                total += a0 + (a1 - a0) * (t - t0) / (t1 - t0)
        return total

    def rate(self, start: float, end: float) -> float:
        return (self.at(end) - self.at(start)) / max(end - start, 1e-6)

    def growth_start(self) -> float:
        """The last moment at which no partition had yet accepted more than in its first report."""
        starts = []
        for points in self.series.values():
            before = [t for t, a in points if a == points[0][1]]
            starts.append(before[-1])
        return min(starts) if starts else 0.0


class _Counter:
    """A subscriber that counts and acknowledges: the baseline, or a watcher of platform health."""

    def __init__(self, port: int, topic: str, client_id: str, since: float = 0.0) -> None:
        self.port, self.topic = port, topic
        self.since = since  # health reports made before this (retained from an earlier phase) are skipped
        self.client = gmqtt.Client(client_id, clean_session=True)
        self.count = 0
        self.first = self.last = 0.0
        self.health: list[dict[str, Any]] = []
        self.accepted = _Accepted()
        self._by_partition: dict[str, dict[str, Any]] = {}
        self._health_seen = asyncio.Event()
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        if "/_platform/health" in topic:
            report = json.loads(payload)
            if float(report["ts"]) < self.since:
                return 0
            # the platform's own clock, not the arrival time: under load the broker delays these reports
            self.accepted.add(topic, float(report["ts"]), int(report["accepted"]))
            self._by_partition[topic] = report
            parts = list(self._by_partition.values())
            combined = {**parts[0], "accepted": sum(h["accepted"] for h in parts), "ts": max(h["ts"] for h in parts)}
            for key in ("ingest_latency_ms_p50", "ingest_latency_ms_p99"):
                values = [h[key] for h in parts if h.get(key) is not None]
                combined[key] = max(values) if values else None
            self.health.append(combined)
            self._health_seen.set()
            return 0
        now = time.monotonic()
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


async def _run_fleet(
    port: int, args: argparse.Namespace, rate: float, out: Path, duration: float | None = None, variant: str = ""
) -> dict[str, Any]:
    return await asyncio.to_thread(
        _fleet, port, args.devices, rate, duration or args.duration, out, EVENT_SHARE.get(variant, 0.0)
    )


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """One baseline phase, then each variant's throughput and latency phases, all on one broker."""
    with (
        tempfile.TemporaryDirectory(prefix="anfang-bench-") as tmp_s,
        Mosquitto(fleet=True, extra_config=["max_queued_messages 10000000"]) as broker,
    ):
        tmp = Path(tmp_s)
        # baseline: the same fleet into a subscriber that does nothing
        async with _Counter(broker.port, "anfang/+/+/twin/reported", "baseline") as base:
            fleet_base = await _run_fleet(
                broker.port, args, args.baseline_rate, tmp / "f1.json", args.baseline_duration
            )
        result: dict[str, Any] = {
            "run": run,
            "baseline_fleet_rate": fleet_base["sustained_rate"],
            "baseline_subscriber_rate": round(base.rate(), 1),
        }
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


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by the platform and, with ``--workers``, its workers."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


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
    env = {
        **os.environ,
        "ANFANG_DATA_DIR": str(tmp / "data"),
        "ANFANG_SITE": "fleet",
        "ANFANG_EMBEDDED_BROKER": "false",
        "ANFANG_MQTT_PORT": str(port),
        "ANFANG_LOG_LEVEL": "WARNING",
        "ANFANG_CONFIG": str(tmp / "anfang.yaml"),
    }
    if database_url:
        env["ANFANG_DATABASE_URL"] = database_url
    (tmp / "anfang.yaml").write_text("limits:\n  health_interval_s: 0.25\n")
    RESULTS.mkdir(exist_ok=True)
    log = (RESULTS / f"ingest-platform-{variant}.log").open("w")

    async def start() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *COMMANDS[variant], env=env, stdout=subprocess.DEVNULL, stderr=log, cwd=str(ROOT)
        )

    try:
        result = await _stream_phases(args, run, variant, port, tmp, start)
        # the broker queues a backlog for the stopped platform, which then drains it with no fleet running
        backlog = await _run_fleet(port, args, args.rate, tmp / "f4.json", args.backlog_duration, variant)
        result.update(await _drain_backlog(run, variant, port, start, backlog["acked"]))
    finally:
        log.close()
    return result


async def _stop(platform: asyncio.subprocess.Process) -> None:
    platform.terminate()
    await asyncio.wait_for(platform.wait(), 20)


async def _stream_phases(
    args: argparse.Namespace, run: int, variant: str, port: int, tmp: Path, start: Any
) -> dict[str, Any]:
    """The fleet at full speed into the running platform until all is accepted, then the latency phase."""
    started = time.time()
    platform = await start()
    peak = [0.0]
    sampler = asyncio.create_task(_peak_rss(platform.pid, peak))
    try:
        async with _Counter(port, "anfang/fleet/_platform/health/#", f"watch-{variant}-{run}", since=started) as watch:
            await watch.wait_health(lambda h: True, 60)
            sending_from = time.time()
            cpu_from = _cpu_seconds(platform.pid)
            fleet_platform = await _run_fleet(port, args, args.rate, tmp / "f2.json", variant=variant)
            sending_until = time.time()
            sent = fleet_platform["acked"]
            try:  # let the platform drain what the broker queued
                done = await watch.wait_health(lambda h: h["accepted"] >= sent, max(180.0, sent / 5000))
            except TimeoutError:
                raise SystemExit(f"{variant}: platform accepted {watch.health[-1]} of {sent}") from None
            cpu_us_per_report = (_cpu_seconds(platform.pid) - cpu_from) / max(sent, 1) * 1e6
            done_at = float(done["ts"])
            while_sending = watch.accepted.rate(sending_from, sending_until)
            accepted_rate = watch.accepted.rate(watch.accepted.growth_start(), done_at)
            watch.health.clear()
            fleet_lat = await _run_fleet(port, args, args.latency_rate, tmp / "f3.json", args.latency_duration, variant)
            # as the drain above: a platform slowed by a busy machine takes longer than a minute to catch up
            latency = await watch.wait_health(
                lambda h: h["accepted"] >= sent + fleet_lat["acked"], max(120.0, fleet_lat["acked"] / 500)
            )
    finally:
        sampler.cancel()
        await _stop(platform)
    return {
        "peak_rss_mib": round(peak[0], 1),
        "platform_fleet_rate": fleet_platform["sustained_rate"],
        "platform_accepted_rate": round(accepted_rate, 1),
        "platform_accepted_rate_while_sending": round(while_sending, 1),
        "platform_cpu_us_per_report": round(cpu_us_per_report, 1),
        "latency_rate": fleet_lat["sustained_rate"],
        "latency_p50_ms": latency.get("ingest_latency_ms_p50"),
        "latency_p99_ms": latency.get("ingest_latency_ms_p99"),
        "rejected": latency.get("rejected"),
    }


async def _drain_backlog(run: int, variant: str, port: int, start: Any, queued: int) -> dict[str, Any]:
    """Start the platform on a backlog the broker holds for it; its rate and the CPU cores its processes
    use from the first accepted report to the last (start-up excluded)."""
    started = time.time()
    platform = await start()
    try:
        async with _Counter(port, "anfang/fleet/_platform/health/#", f"drain-{variant}-{run}", since=started) as watch:
            await watch.wait_health(lambda h: h["accepted"] > 0, 120)
            cpu_from, wall_from = _cpu_seconds(platform.pid), time.time()
            try:
                done = await watch.wait_health(lambda h: h["accepted"] >= queued, max(180.0, queued / 5000))
            except TimeoutError:
                raise SystemExit(f"{variant}: drained {watch.health[-1]} of {queued}") from None
            cores = (_cpu_seconds(platform.pid) - cpu_from) / max(time.time() - wall_from, 1e-6)
            rate = watch.accepted.rate(watch.accepted.growth_start(), float(done["ts"]))
    finally:
        await _stop(platform)
    return {"backlog": queued, "backlog_drain_rate": round(rate, 1), "backlog_drain_cores": round(cores, 2)}


def summarise(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Medians over the runs: the baseline, and per variant its rate, ratio to the baseline and latency."""

    def med(values: list[Any]) -> float:
        return round(float(statistics.median(v for v in values if v is not None)), 1)

    base = med([r["baseline_subscriber_rate"] for r in runs])
    out: dict[str, Any] = {
        "baseline_subscriber_rate": base,
        "baseline_fleet_rate": med([r["baseline_fleet_rate"] for r in runs]),
    }
    for variant in variants:
        rows = [r[variant] for r in runs]
        accepted = med([r["platform_accepted_rate"] for r in rows])
        out[variant] = {
            "platform_accepted_rate": accepted,
            "ratio_to_baseline": round(accepted / base, 2) if base else None,
            # the ratio within each run (same broker, same minute), then the median of those
            "ratio_to_baseline_per_run_median": round(
                float(
                    statistics.median(
                        r[variant]["platform_accepted_rate"] / r["baseline_subscriber_rate"] for r in runs
                    )
                ),
                2,
            ),
            "platform_accepted_rate_while_sending": med([r.get("platform_accepted_rate_while_sending") for r in rows]),
            "ratio_to_baseline_while_sending": round(
                med([r.get("platform_accepted_rate_while_sending") for r in rows]) / base, 2
            )
            if base
            else None,
            "backlog": med([r.get("backlog") for r in rows]),
            "backlog_drain_rate": med([r.get("backlog_drain_rate") for r in rows]),
            "backlog_drain_cores": med([r.get("backlog_drain_cores") for r in rows]),
            "platform_cpu_us_per_report": med([r.get("platform_cpu_us_per_report") for r in rows]),
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
    parser.add_argument(
        "--rate",
        type=float,
        default=100_000,
        help="fleet target rate for the platform phase (default: as fast as the fleet goes, as in the baseline)",
    )
    parser.add_argument(
        "--baseline-rate",
        type=float,
        default=100_000,
        help="fleet target rate for the baseline phase (above what broker+subscriber take)",
    )
    parser.add_argument("--baseline-duration", type=float, default=None, help="seconds (default: --duration)")
    parser.add_argument(
        "--backlog-duration",
        type=float,
        default=20.0,
        help="seconds the fleet sends while the platform is stopped, for the backlog phase",
    )
    parser.add_argument("--latency-rate", type=float, default=5000)
    parser.add_argument("--latency-duration", type=float, default=None, help="seconds (default: --duration)")
    parser.add_argument(
        "--variants",
        default="full,bare",
        help="comma list of full (anfang run), bare, pg (anfang run on PostgreSQL), workers2 "
        "(anfang run --workers 2, PostgreSQL), events (anfang run, half the messages events) and bare_events",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help=f"every variant on a fresh PostgreSQL database (made through {PG_ADMIN}); workers2 always is",
    )
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
        for sub, val in value.items() if isinstance(value, dict) else [("", value)]:
            name = f"{key}.{sub}" if sub else key
            print(f"{name:38} {val!s:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": runs,
        "summary": summary,
    }
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
