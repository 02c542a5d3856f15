"""Memory and start time with a large registry: RSS per registered twin, time to ready, RSS once twins are loaded.

Each run, against a private Mosquitto:

* **empty** — ``anfang run`` on a registry with no devices: time from spawn to the retained
  ``_platform/features`` message (published once the platform is ready), then its RSS;
* **registered** — the same with ``--twins`` devices and stored twin documents bulk-inserted into
  the ``devices`` and ``twins`` tables (the platform loads twins lazily, so this is the idle cost);
* **loaded** — then a fleet of ``--loaded`` devices (``anfang sim fleet``) each reports once, which
  pulls their twins into the platform's cache, in two waves of half the devices each: RSS after
  each wave. The cost per cached twin is given twice: over both waves against the idle RSS (the
  same-run baseline; this includes the one-off high-water mark of processing a burst of reports),
  and the **marginal** cost, wave 2 against wave 1 (the burst's buffers are already there, so this
  is what each further cached twin adds); the total for all ``--twins`` is extrapolated from it
  (labelled as extrapolated when ``--loaded`` < ``--twins``).

The **cached objects** alone: a fresh interpreter builds ``--objects`` camera twins from one report
each through the ingest path (``process_batch``) and holds them as a worker does (twin and device
record per device); its RSS growth per twin, with no burst, broker or services around it.

``--platform bare`` runs the platform without services (``bench/bare_platform.py``) instead, to
tell the twin core's memory from the services'. Figures are medians over ``--runs``.
``python -m bench.memory_bench --help``; JSON to ``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import ANFANG, BARE, RESULTS, ROOT, Watcher, machine, median, platform_env
from firmware_sim.fleet import raise_fd_limit
from firmware_sim.mosquitto import Mosquitto
from twins.document import Stamps, TwinDocument

SITE = "fleet"
WAVE2 = "fleetb"  # device id prefix of the loaded phase's second wave
FEATURES = f"anfang/{SITE}/_platform/features"
HEALTH = f"anfang/{SITE}/_platform/health"


async def _migrate(data_dir: Path) -> None:
    from anfang.app import open_registry
    from anfang.config import Settings

    settings = Settings(site=SITE, data_dir=data_dir)
    async with open_registry(settings) as (registry, _):
        await registry.ensure_site(SITE)


def _ids(twins: int, wave2: int) -> list[str]:
    ids = [f"fleet-{i:05d}" if i < 100_000 else f"fleet-{i}" for i in range(twins)]
    return ids + [f"{WAVE2}-{i:05d}" for i in range(wave2)]


def make_registry(data_dir: Path, twins: int, wave2: int = 0) -> float:
    """A migrated registry with ``twins`` cameras (and ``wave2`` more for the loaded phase's second
    wave) and their stored twins; returns the seconds it took."""
    t0 = time.perf_counter()
    asyncio.run(_migrate(data_dir))
    now = time.time()
    devices, docs = [], []
    for i, dev in enumerate(_ids(twins, wave2)):
        doc = TwinDocument(
            device_id=dev,
            kind="camera",
            site=SITE,
            desired={"fps": 25},
            reported={"recording": True, "fps": 25},
            version=2,
            last_seq=1,
            metadata=Stamps({"fps": now}, {"recording": now, "fps": now}),
        )
        devices.append((dev, SITE, "camera", dev, float(i % 300), float(i // 300), None, now, now))
        docs.append((dev, 2, json.dumps(doc.to_json(), separators=(",", ":")), now))
    with sqlite3.connect(data_dir / "anfang.db") as db:
        db.executemany(
            "INSERT INTO devices(id, site_id, kind, name, x, y, secret_hash, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            devices,
        )
        db.executemany("INSERT INTO twins(device_id, version, doc, updated_at) VALUES (?, ?, ?, ?)", docs)
    return time.perf_counter() - t0


async def _health_after(watch: Watcher, t: float, timeout: float = 60) -> dict[str, Any]:
    await watch.wait(lambda latest: HEALTH in latest and latest[HEALTH][0] > t, timeout)
    health: dict[str, Any] = watch.latest[HEALTH][1]
    return health


# the full platform is `anfang run`'s serve() with a SIGUSR1 hook for trimmed RSS (bench/memory_platform.py)
COMMANDS = {"full": [sys.executable, "-m", "bench.memory_platform"], "bare": BARE}


async def _mark(proc: asyncio.subprocess.Process, marks: Path, n: int, timeout: float = 300) -> dict[str, Any]:
    """SIGUSR1 to the platform: it collects garbage, trims the heap (and snapshots); its ``mark-n.json``."""
    proc.send_signal(signal.SIGUSR1)
    path = marks / f"mark-{n}.json"
    deadline = time.monotonic() + timeout
    while not path.exists():  # written by the platform's signal handler
        if time.monotonic() > deadline or proc.returncode is not None:
            raise TimeoutError(f"no {path.name} from the platform")
        await asyncio.sleep(0.1)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


async def _fleet(port: int, devices: int, prefix: str, fleet_json: Path) -> int:
    """``devices`` fleet devices named ``prefix-NNNNN`` report once; how many reports the broker acked."""
    await asyncio.to_thread(
        subprocess.run,
        [
            ANFANG,
            "sim",
            "fleet",
            "--devices",
            str(devices),
            "--rate",
            str(devices),
            "--duration",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--site",
            SITE,
            "--prefix",
            prefix,
            "--json",
            str(fleet_json),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    return int(json.loads(await asyncio.to_thread(fleet_json.read_text))["acked"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _all_accepted(t: float, n: int, latest: dict[str, tuple[float, Any]]) -> bool:
    return HEALTH in latest and latest[HEALTH][0] > t and latest[HEALTH][1]["accepted"] >= n


def _drained(t: float, latest: dict[str, tuple[float, Any]]) -> bool:
    """The intake and the services' queue are empty: what is left is what the platform keeps."""
    if HEALTH not in latest or latest[HEALTH][0] <= t:
        return False
    health = latest[HEALTH][1]
    return bool(health.get("inbox_depth", 0) == 0 and health.get("dispatch_depth", 0) == 0)


async def measure(data_dir: Path, loaded: int, label: str, command: list[str], trace: int = 0) -> dict[str, Any]:
    """Start the platform on ``data_dir``; time to ready, RSS idle, and (``loaded`` > 0) RSS after reports.

    With the full platform each RSS is taken twice: as it is (``rss_*``), and after ``gc.collect()`` and
    ``malloc_trim(0)`` in the platform (``trimmed_*``), which is what it holds rather than the allocator's
    high-water mark. ``trace`` > 0: tracemalloc snapshots at each mark (``snapshots``).
    """
    out: dict[str, Any] = {}
    marks = data_dir.parent / f"{label}-marks"
    if command == COMMANDS["full"]:
        command = [*command, "--marks", str(marks), *(["--trace", str(trace)] if trace else [])]
    else:
        marks = Path()
    with Mosquitto(fleet=True, extra_config=["max_queued_messages 10000000"]) as broker:
        config = data_dir.parent / f"{label}.yaml"
        # the API on a free port: a process holding 8080 on a shared machine must not stop the platform
        config.write_text(f"api_bind: 127.0.0.1:{_free_port()}\nlimits:\n  health_interval_s: 0.5\n")
        env = platform_env(data_dir, SITE, broker.port, config)
        async with Watcher(broker.port, [FEATURES, HEALTH], f"memwatch-{label}") as watch:
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            snapshots: list[str] = []

            async def trimmed(key: str, n: int) -> None:
                if marks != Path():
                    doc = await _mark(proc, marks, n)
                    out[f"trimmed_{key}_mib"] = round(doc["rss"] / 2**20, 1)
                    if doc.get("snapshot"):
                        snapshots.append(doc["snapshot"])

            try:
                await watch.wait(lambda latest: FEATURES in latest, 600)
                out["start_s"] = round(watch.latest[FEATURES][0] - t0, 3)
                ready = watch.latest[FEATURES][0]
                # two health reports after ready: the services' start-up tasks have run
                await _health_after(watch, ready)
                await _health_after(watch, watch.latest[HEALTH][0])
                ps = psutil.Process(proc.pid)
                out["rss_idle_mib"] = round(ps.memory_info().rss / 2**20, 1)
                await trimmed("idle", 0)
                if loaded:
                    acked = 0
                    for wave, (prefix, devices) in enumerate((("fleet", loaded // 2), (WAVE2, loaded - loaded // 2))):
                        acked += await _fleet(broker.port, devices, prefix, data_dir.parent / f"{label}-{wave}.json")
                        t_sent = time.monotonic()
                        await watch.wait(functools.partial(_all_accepted, t_sent, acked), 600)
                        out[f"rss_wave{wave + 1}_mib"] = round(ps.memory_info().rss / 2**20, 1)
                        try:
                            await watch.wait(functools.partial(_drained, time.monotonic()), 600)
                        except TimeoutError:  # still marked, and said: the queues' contents are in it
                            out[f"wave{wave + 1}_not_drained"] = True
                        await trimmed(f"wave{wave + 1}", wave + 1)
                    out["loaded_reports_accepted"] = watch.latest[HEALTH][1]["accepted"]
                    out["loaded_devices"] = loaded
                    out["rss_loaded_mib"] = out["rss_wave2_mib"]
                if snapshots:
                    out["snapshots"] = snapshots
            finally:
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 30)
    return out


async def one_run(empty: Path, full: Path, loaded: int, run: int, command: list[str], trace: int = 0) -> dict[str, Any]:
    """Empty registry, then the full one (with the loaded phase)."""
    return {
        "run": run,
        "empty": await measure(empty, 0, f"empty-{run}", command),
        "registered": await measure(full, loaded, f"full-{run}", command, trace),
    }


def summarise(runs: list[dict[str, Any]], twins: int, loaded: int) -> dict[str, Any]:
    """Medians and the per-twin figures the targets are stated in."""

    def med(path: tuple[str, str]) -> float | None:
        value = median([r[path[0]].get(path[1]) for r in runs])
        return None if value is None else round(value, 3)

    empty_rss, full_rss = med(("empty", "rss_idle_mib")), med(("registered", "rss_idle_mib"))
    out: dict[str, Any] = {
        "twins": twins,
        "start_empty_s": med(("empty", "start_s")),
        "start_registered_s": med(("registered", "start_s")),
        "rss_empty_mib": empty_rss,
        "rss_registered_idle_mib": full_rss,
    }
    if empty_rss is not None and full_rss is not None:
        out["idle_bytes_per_twin"] = round((full_rss - empty_rss) * 2**20 / twins, 1)
    loaded_rss = med(("registered", "rss_loaded_mib"))
    if loaded and loaded_rss is not None and full_rss is not None:
        per = (loaded_rss - full_rss) * 2**20 / loaded
        wave1 = med(("registered", "rss_wave1_mib"))
        marginal = None if wave1 is None else (loaded_rss - wave1) * 2**20 / (loaded - loaded // 2)
        out.update(
            {
                "loaded_devices": loaded,
                "rss_wave1_mib": wave1,
                "rss_loaded_mib": loaded_rss,
                "loaded_bytes_per_twin": round(per, 1),
                "marginal_bytes_per_twin": None if marginal is None else round(marginal, 1),
                "rss_all_loaded_mib": round(loaded_rss + (marginal or per) * (twins - loaded) / 2**20, 1),
                "rss_all_loaded_is_extrapolated": loaded < twins,
            }
        )
    slopes = [trimmed_slope(r["registered"], loaded) for r in runs]
    present = [v for v in slopes if v is not None]
    if present:
        out["trimmed_idle_mib"] = med(("registered", "trimmed_idle_mib"))
        out["trimmed_wave1_mib"] = med(("registered", "trimmed_wave1_mib"))
        out["trimmed_wave2_mib"] = med(("registered", "trimmed_wave2_mib"))
        out["trimmed_bytes_per_twin_runs"] = [round(v) for v in present]
        out["trimmed_bytes_per_twin"] = round(statistics.median(present), 1)
    return out


def trimmed_slope(run: dict[str, Any], loaded: int) -> float | None:
    """Bytes of RSS per cached twin after gc + malloc_trim: wave 2 against wave 1 (the slope between
    ``loaded // 2`` and ``loaded`` devices that reported)."""
    w1, w2 = run.get("trimmed_wave1_mib"), run.get("trimmed_wave2_mib")
    if w1 is None or w2 is None:
        return None
    return float((w2 - w1) * 2**20 / (loaded - loaded // 2))


def _own(filename: str) -> bool:
    return filename.startswith(str(ROOT)) and ".venv" not in filename


def snapshot_diff(older: str, newer: str, per: int, top: int = 25) -> list[dict[str, Any]]:
    """What grew between two tracemalloc snapshots, by traceback (the innermost frames of the
    project's own code first), in bytes per twin for ``per`` twins."""
    import tracemalloc

    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    old = tracemalloc.Snapshot.load(older).filter_traces(keep)
    new = tracemalloc.Snapshot.load(newer).filter_traces(keep)
    stats = new.compare_to(old, "traceback")
    out = []
    for stat in stats[:top]:
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback]
        own = [
            f
            for f, fr in zip(frames, stat.traceback, strict=True)
            if str(ROOT) in fr.filename and ".venv" not in fr.filename
        ]
        out.append(
            {
                "bytes_per_twin": round(stat.size_diff / per, 1),
                "blocks_per_twin": round(stat.count_diff / per, 2),
                "where": (own or frames)[-4:],
                "innermost": frames[-1] if frames else "",
            }
        )
    return out


def objects_per_twin(count: int) -> float:
    """RSS bytes per cached twin as the ingest path builds and a worker holds them (twin document and
    device record); run in a fresh interpreter (:func:`_objects_in_child`)."""
    import gc
    import sys as _sys

    from anfang.ingest import Inbound, process_batch
    from twins import topics
    from twins.document import Limits
    from twins.site import DeviceInfo

    def build(prefix: str, n: int) -> tuple[dict[str, DeviceInfo], dict[str, TwinDocument]]:
        devices: dict[str, DeviceInfo] = {}
        twins: dict[str, TwinDocument] = {}
        kind, site = _sys.intern("camera"), _sys.intern(SITE)
        for i in range(n):
            device = _sys.intern(f"{prefix}-{i:06d}")
            devices[device] = DeviceInfo(device, kind, name=device, site=site)
        for start in range(0, n, 500):
            batch = []
            for i in range(start, min(start + 500, n)):
                topic = f"anfang/{SITE}/{prefix}-{i:06d}/twin/reported"
                payload = b'{"seq":1,"ts":%.3f,"state":{"recording":true,"fps":25}}' % time.time()
                batch.append(Inbound(topic, topics.parse(topic), payload))
            process_batch(batch, devices, twins, set(), now=time.time(), limits=Limits())
        return devices, twins

    build("warm", 1000)  # caches and interned names of the path itself
    gc.collect()
    rss0 = psutil.Process().memory_info().rss
    held = build("fleet", count)
    gc.collect()
    per: float = (psutil.Process().memory_info().rss - rss0) / count
    assert len(held[1]) == count
    return per


def _objects_in_child(count: int) -> float:
    code = f"from bench.memory_bench import objects_per_twin; print(objects_per_twin({count}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=str(ROOT), capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twins", type=int, default=100_000, help="registered devices with stored twins")
    ap.add_argument(
        "--loaded", type=int, default=20_000, help="devices that report once, in two waves of half (0: skip)"
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--platform", choices=list(COMMANDS), default="full", help="anfang run, or no services")
    ap.add_argument("--objects", type=int, default=50_000, help="twins for the cached-objects figure (0: skip)")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    ap.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="FRAMES",
        help="tracemalloc in the platform (this many frames); prints what grew from wave 1 to wave 2 by traceback",
    )
    args = ap.parse_args(argv)
    raise_fd_limit(args.loaded * 2 + 4096)
    runs = []
    with tempfile.TemporaryDirectory(prefix="anfang-mem-") as tmp_s:
        tmp = Path(tmp_s)
        make_registry(tmp / "empty", 0)
        build_s = make_registry(tmp / "full", args.twins, args.loaded - args.loaded // 2)
        print(f"registry with {args.twins} twins built in {build_s:.1f} s", file=sys.stderr, flush=True)
        for i in range(args.runs):
            run = asyncio.run(one_run(tmp / "empty", tmp / "full", args.loaded, i, COMMANDS[args.platform], args.trace))
            snaps = run["registered"].pop("snapshots", [])
            if len(snaps) == 3:
                half = args.loaded - args.loaded // 2
                run["grew_wave1_to_wave2"] = snapshot_diff(snaps[1], snaps[2], half)
                run["grew_idle_to_wave2"] = snapshot_diff(snaps[0], snaps[2], args.loaded)
            runs.append(run)
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    summary = {"platform": args.platform, **summarise(runs, args.twins, args.loaded)}
    if args.loaded:
        half = args.loaded - args.loaded // 2
        per_run = [(r["registered"]["rss_wave2_mib"] - r["registered"]["rss_wave1_mib"]) * 2**20 / half for r in runs]
        summary["marginal_bytes_per_twin_per_run"] = [round(v) for v in per_run]
        summary["marginal_bytes_per_twin_median_of_runs"] = round(statistics.median(per_run), 1)
    if args.objects:
        objects = [_objects_in_child(args.objects) for _ in range(args.runs)]
        summary["cached_objects_bytes_per_twin"] = round(statistics.median(objects), 1)
        summary["cached_objects_bytes_per_twin_runs"] = [round(v) for v in objects]
    for key, value in summary.items():
        print(f"{key:32} {value!s:>12}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"args": {**vars(args), "out": str(args.out)}, "machine": machine(), "runs": runs, "summary": summary},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
