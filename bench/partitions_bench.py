"""One site on 1, 2 and 4 partitions on PostgreSQL while rules and access decisions run (issue 21).

Per run and per partition count ``P`` (``--partitions 1,2,4``), on one private Mosquitto and a fresh
PostgreSQL database each:

* **baseline** — the same fleet into a subscriber that does nothing but acknowledge (this run's
  broker ceiling);
* **site** — ``P`` worker processes (``anfang run`` with ``workers.partitions: P``, one per partition
  once the assignment settles) serve a site of ``--devices`` cameras and the synthetic ~560-resident
  community of ``bench/access_bench.py``. The fleet sends at full speed; every report changes the twin
  (``--changing``: ``fps`` cycles 15..25) and ``--events`` of the messages are ``motion`` events, so
  every message is a rule input: a threshold rule per camera (fires once per camera, ``cooldown``) and
  a count rule on motion (never reaches its count), beside the shipped rules. Meanwhile the doors and
  gates send captures at ``--captures`` per second (faces and plates, 20 % unknown) and time the
  ``cmd/open`` they get back.

Printed per ``P``: reports accepted per second (and against the baseline), **rule inputs per second
per worker process** (``anfang_rule_inputs_total`` on each process's ``/metrics``, over the same
window), the platform CPU cores, access opens with their p50/p99 and which process answered them.
``python -m bench.partitions_bench --help``; JSON to ``bench/results/partitions.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.access_bench import synthetic_community
from bench.access_mqtt_bench import Devices, plan
from bench.common import ANFANG, RESULTS, ROOT, machine, pct, platform_env
from bench.ingest_bench import PG_ADMIN, _Counter
from firmware_sim.mosquitto import Mosquitto, free_port

SITE = "bench"
BUILTIN = ROOT / "rules" / "builtin"
BENCH_RULES = """
rules:
  - id: camera-fps-low
    description: A camera's frame rate fell below 16 fps (evaluated on every report; once per camera an hour).
    when:
      - threshold: {field: fps, kind: camera, below: 16, hysteresis: 2}
    cooldown: 1h
    then:
      - raise_alarm: {kind: camera_fps_low, severity: low, subject: "{{ device.id }}", message: "fps low"}
  - id: camera-motion-storm
    description: A camera reports motion 10,000 times within a minute (evaluated on every motion event).
    when:
      - event: {type: motion, kind: camera, count: 10000, within: 1m}
    then:
      - raise_alarm: {kind: motion_storm, severity: low, subject: "{{ device.id }}", message: "motion storm"}
"""


@dataclass
class Worker:
    index: int
    api_port: int
    proc: asyncio.subprocess.Process


async def provision(data_dir: Path, url: str, cameras: int, data: dict[str, Any]) -> None:
    """The community's doors, gates and people, and ``cameras`` fleet cameras, in the site's database."""
    from anfang.app import open_registry
    from anfang.config import Settings
    from community.crypto import FieldCipher, load_master_key
    from community.importer import import_community
    from community.store import CommunityStore

    settings = Settings(site=SITE, data_dir=data_dir, database_url=url)
    settings.broker.hash_iterations = 1000
    async with open_registry(settings) as (registry, _):
        await registry.ensure_site(SITE)
        for d in data["devices"]:
            await registry.add_device(SITE, d["id"], d["kind"])
        for i in range(cameras):
            await registry.add_device(SITE, f"fleet-{i:05d}", "camera")
        store = CommunityStore(FieldCipher(load_master_key(None, data_dir)), SITE)
        await import_community(data, store, now=time.time(), alternative_pins=False)


def fleet(port: int, args: argparse.Namespace, rate: float, out: Path, changing: bool) -> dict[str, Any]:
    cmd = [ANFANG, "sim", "fleet", "--devices", str(args.devices), "--rate", str(rate)]
    cmd += ["--duration", str(args.duration), "--port", str(port), "--site", SITE, "--json", str(out)]
    cmd += ["--events", str(args.events), *(["--changing"] if changing else [])]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=args.duration + 300)
    return dict(json.loads(out.read_text()))


async def counters(client: httpx.AsyncClient, port: int) -> tuple[float, float]:
    """The process's rule inputs and access decisions so far (all the partitions it serves)."""
    text = (await client.get(f"http://127.0.0.1:{port}/metrics", timeout=10)).text
    found = {"anfang_rule_inputs": 0.0, "anfang_access_decisions": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name in found:
            found[family.name] += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return found["anfang_rule_inputs"], found["anfang_access_decisions"]


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


async def settled(conn: asyncpg.Connection, parts: int, devices: int, timeout: float) -> dict[int, str]:
    """Wait until each partition has a holder, ``parts`` distinct workers hold them (one each) and every
    device is subscribed to; the holder of each partition."""
    async with asyncio.timeout(timeout):
        while True:
            rows = await conn.fetch("SELECT part, holder FROM partition_owners WHERE site = $1", SITE)
            holders = {int(r["part"]): r["holder"] for r in rows if r["holder"]}
            served = await conn.fetchval("SELECT COUNT(*) FROM served_devices WHERE site = $1", SITE)
            if len(holders) == parts and len(set(holders.values())) == parts and served >= devices:
                return {p: str(h) for p, h in holders.items()}
            await asyncio.sleep(0.5)  # polling the workers' assignment in the database


async def site_phase(args: argparse.Namespace, parts: int, port: int, tmp: Path, run: int) -> dict[str, Any]:
    rng = np.random.default_rng(7 + run)
    random.seed(7 + run)
    data = synthetic_community(rng)
    data["site"] = SITE
    name = f"anfang_parts_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    workers: list[Worker] = []
    logs = []
    try:
        await provision(tmp / "data", url, args.devices, data)
        rules = tmp / "rules"
        shutil.copytree(BUILTIN, rules, ignore=shutil.ignore_patterns("tests"))
        (rules / "bench.yaml").write_text(BENCH_RULES)
        (tmp / "anfang.yaml").write_text("limits:\n  health_interval_s: 0.25\n")
        for i in range(parts):
            api = free_port()
            env = platform_env(tmp / "data", SITE, port, tmp / "anfang.yaml")
            env.update(ANFANG_DATABASE_URL=url, ANFANG_PARTITIONS=str(parts), ANFANG_WORKER_INDEX=str(i))
            env.update(ANFANG_API_BIND=f"127.0.0.1:{api}", ANFANG_RULES_DIR=str(rules))
            log = (RESULTS / f"partitions-p{parts}-w{i}.log").open("w")
            logs.append(log)
            proc = await asyncio.create_subprocess_exec(
                ANFANG, "run", env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=log
            )
            workers.append(Worker(i, api, proc))
        if parts == 1:  # one worker, not partitioned: it serves every device by wildcard
            holders = {0: f"single-0-{workers[0].proc.pid}-0"}
        else:
            conn = await asyncpg.connect(url)
            try:
                holders = await settled(conn, parts, args.devices + len(data["devices"]), 300)
            finally:
                await conn.close()
        by_name = await _names(workers)
        return await _measure(args, parts, port, tmp, workers, holders, by_name, data, rng, run)
    finally:
        for w in workers:
            if w.proc.returncode is None:
                w.proc.terminate()
        for w in workers:
            await asyncio.wait_for(w.proc.wait(), 60)
        for log in logs:
            log.close()
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _names(workers: list[Worker]) -> dict[str, int]:
    """Which worker name (``partition_owners.holder``) is which process: the name ends in ``-<pid>-xxxx``."""
    return {str(w.proc.pid): w.index for w in workers}


def _holder_index(holder: str, by_pid: dict[str, int]) -> int:
    pid = holder.rsplit("-", 2)[-2]
    return by_pid.get(pid, -1)


async def _measure(
    args: argparse.Namespace,
    parts: int,
    port: int,
    tmp: Path,
    workers: list[Worker],
    holders: dict[int, str],
    by_pid: dict[str, int],
    data: dict[str, Any],
    rng: np.random.Generator,
    run: int,
) -> dict[str, Any]:
    from anfang.partitions import partition_of
    from registry.records import DeviceInfo

    async with (
        httpx.AsyncClient() as http,
        _Counter(port, f"anfang/{SITE}/_platform/health/#", f"watch-{parts}-{run}", since=time.time()) as watch,
        Devices(port, [d["id"] for d in data["devices"]]) as doors,
    ):
        await watch.wait_health(lambda h: True, 120)
        before = [await counters(http, w.api_port) for w in workers]
        cpu0, t0 = [cpu_seconds(w.proc.pid) for w in workers], time.time()
        sending = asyncio.create_task(asyncio.to_thread(fleet, port, args, args.rate, tmp / "f.json", True))
        captures = plan(data, rng, int(args.captures * args.duration))
        per_capture_device: list[str] = []
        start = time.monotonic()
        for i, (dev, type_, payload, subject) in enumerate(captures):
            delay = start + i / args.captures - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the capture schedule, not synchronisation
            doors.capture(dev, type_, payload, subject)
            if subject is not None:
                per_capture_device.append(dev)
        sent = (await sending)["acked"]
        expected_opens = len(per_capture_device)
        await doors.wait_opened(expected_opens, 60)
        try:
            done = await watch.wait_health(lambda h: h["accepted"] >= sent, args.drain_s)
            complete = True
        except TimeoutError:  # the rate up to now still tells; the row says it did not catch up
            done, complete = watch.health[-1], False
        t1 = time.time()
        after = [await counters(http, w.api_port) for w in workers]
        cpu1 = [cpu_seconds(w.proc.pid) for w in workers]
        accepted = watch.accepted.rate(watch.accepted.growth_start(), float(done["ts"]))
    window = max(t1 - t0, 1e-6)
    owner_of_part = {p: _holder_index(h, by_pid) for p, h in holders.items()}
    doors_by_owner: dict[int, int] = {}  # captures (with an expected open) at doors of each worker's partitions
    for dev in per_capture_device:
        part = partition_of(DeviceInfo(dev, "door_lock", name=dev, site=SITE), parts)
        idx = owner_of_part.get(part, -1)
        doors_by_owner[idx] = doors_by_owner.get(idx, 0) + 1
    lat = list(doors.latencies)
    return {
        "partitions": parts,
        "holders": {str(p): owner_of_part[p] for p in sorted(owner_of_part)},
        "sent": sent,
        "caught_up": complete,
        "accepted_rate": round(accepted, 1),
        "window_s": round(window, 1),
        "rule_inputs_per_s_by_worker": [round((b[0] - a[0]) / window, 1) for a, b in zip(before, after, strict=True)],
        "access_decisions_by_worker": [int(b[1] - a[1]) for a, b in zip(before, after, strict=True)],
        "cores_by_worker": [round((b - a) / window, 2) for a, b in zip(cpu0, cpu1, strict=True)],
        "captures": len(captures),
        "expected_opens": expected_opens,
        "opened": len(lat),
        "open_p50_ms": round(pct(lat, 0.5), 2) if lat else None,
        "open_p99_ms": round(pct(lat, 0.99), 2) if lat else None,
        "captures_by_device_owner_worker": doors_by_owner,
    }


async def one_run(args: argparse.Namespace, run: int) -> dict[str, Any]:
    out: dict[str, Any] = {"run": run, "load_before": os.getloadavg()[0]}
    with (
        tempfile.TemporaryDirectory(prefix="anfang-parts-") as tmp_s,
        Mosquitto(fleet=True, extra_config=["max_queued_messages 10000000"]) as broker,
    ):
        tmp = Path(tmp_s)
        async with _Counter(broker.port, f"anfang/{SITE}/+/twin/reported", f"baseline-{run}") as base:
            await asyncio.to_thread(fleet, broker.port, args, args.baseline_rate, tmp / "b.json", True)
        out["baseline_rate"] = round(base.rate(), 1)
        for parts in args.partitions:
            print(f"  run {run + 1}: {parts} partition(s) ...", file=sys.stderr, flush=True)
            sub = tmp / f"p{parts}"
            sub.mkdir()
            result = await site_phase(args, parts, broker.port, sub, run)
            result["ratio_to_baseline"] = round(result["accepted_rate"] / out["baseline_rate"], 2)
            out[f"p{parts}"] = result
            print(f"  {json.dumps(result)}", file=sys.stderr, flush=True)
    out["load_after"] = os.getloadavg()[0]
    return out


def summarise(runs: list[dict[str, Any]], partitions: list[int]) -> list[dict[str, Any]]:
    rows = []
    for parts in partitions:
        results = [r[f"p{parts}"] for r in runs]

        def med(key: str, results: list[dict[str, Any]] = results) -> float:
            return round(float(statistics.median(float(x[key]) for x in results if x[key] is not None)), 2)

        per_worker = [sorted(r["rule_inputs_per_s_by_worker"], reverse=True) for r in results]
        rows.append(
            {
                "partitions": parts,
                "accepted_rate": med("accepted_rate"),
                "ratio_to_baseline": med("ratio_to_baseline"),
                "rule_inputs_per_s_by_worker_sorted": [
                    round(statistics.median(w[i] for w in per_worker), 1) for i in range(parts)
                ],
                "rule_inputs_per_s_total": round(statistics.median(sum(w) for w in per_worker), 1),
                "cores_total": round(statistics.median(sum(r["cores_by_worker"]) for r in results), 2),
                "open_p50_ms": med("open_p50_ms"),
                "open_p99_ms": med("open_p99_ms"),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", default="1,2,4", help="comma list of partition counts")
    ap.add_argument("--devices", type=int, default=1000, help="fleet cameras (besides the community's doors)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds the fleet sends")
    ap.add_argument("--rate", type=float, default=4000, help="fleet msg/s (above what the site takes here)")
    ap.add_argument("--drain-s", type=float, default=240.0, help="how long the site may take to catch up afterwards")
    ap.add_argument("--baseline-rate", type=float, default=100_000)
    ap.add_argument("--events", type=float, default=0.2, help="share of the fleet's messages that are events")
    ap.add_argument("--captures", type=float, default=20.0, help="access captures per second at doors and gates")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "partitions.json")
    args = ap.parse_args(argv)
    args.partitions = [int(p) for p in str(args.partitions).split(",")]
    RESULTS.mkdir(exist_ok=True)
    runs = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs} (load {os.getloadavg()[0]:.1f}) ...", file=sys.stderr, flush=True)
        runs.append(asyncio.run(one_run(args, i)))
    rows = summarise(runs, args.partitions)
    base = statistics.median(r["baseline_rate"] for r in runs)
    print(f"baseline (broker + do-nothing subscriber): {base:,.0f} msg/s (median of {len(runs)} runs)")
    print(f"{'P':>2} {'accepted/s':>11} {'x base':>7} {'rule inputs/s per worker':>34} {'total':>8} {'cores':>6} "
          f"{'open p50':>9} {'p99':>7}")  # fmt: skip
    for row in rows:
        per = " / ".join(f"{v:,.0f}" for v in row["rule_inputs_per_s_by_worker_sorted"])
        print(f"{row['partitions']:>2} {row['accepted_rate']:>11,.0f} {row['ratio_to_baseline']:>7.2f} {per:>34} "
              f"{row['rule_inputs_per_s_total']:>8,.0f} {row['cores_total']:>6.2f} {row['open_p50_ms']:>9.1f} "
              f"{row['open_p99_ms']:>7.1f}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    doc = {"args": {**vars(args), "out": str(args.out)}, "machine": machine(), "runs": runs, "summary": rows}
    args.out.write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
