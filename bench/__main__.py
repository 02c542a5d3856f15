"""The benchmark suite: ``python -m bench [--quick] [--only NAME ...] [--results DIR]``.

Runs each benchmark as its own process (``python -m bench.<module>``; each writes its JSON into
``--results``), then prints one table — every figure a median of several runs, each throughput
beside a baseline measured in the same run, every target with PASS/FAIL — and writes it to
``summary.json`` (and ``summary.md``) in the same folder. ``--quick`` runs each benchmark briefly,
for a smoke test: its figures are not comparable with the targets.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import RESULTS, ROOT, machine
from bench.suite import BENCHES, Row, format_table


def _run_one(name: str, quick: bool, results: Path) -> dict[str, Any]:
    bench = BENCHES[name]
    out = results / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", bench.module, *(bench.quick if quick else bench.full), "--out", str(out)]
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    print(f"[{dt.datetime.now():%H:%M:%S}] {name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    with (results / f"{name}.log").open("w") as log:
        try:
            proc = subprocess.run(
                cmd,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=bench.timeout_quick if quick else bench.timeout,
            )
            rc: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
    entry: dict[str, Any] = {
        "command": "python " + " ".join(cmd[1:]),
        "exit": rc,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - t0, 1),
        "load_average_before": load_before,
    }
    try:
        doc = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        entry["rows"] = [Row(name, "benchmark failed", None, "", target=f"see {name}.log", verdict="ERROR").as_dict()]
        entry["error"] = f"no result ({exc}); exit {rc}"
        return entry
    entry["rows"] = [r.as_dict() for r in bench.rows(doc, quick)]
    return entry


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; exit 0 when every one produced results (PASS or FAIL), else 1."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short smoke run of every benchmark")
    ap.add_argument(
        "--only",
        action="append",
        choices=list(BENCHES),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHES)}",
    )
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder for the JSON results")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the other benchmarks of an earlier summary.json in --results (re-run a few)",
    )
    args = ap.parse_args(argv)
    names = args.only or list(BENCHES)
    results = args.results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    benches: dict[str, Any] = {}
    if args.merge and (results / "summary.json").exists():
        earlier = json.loads((results / "summary.json").read_text())
        if earlier.get("quick") != args.quick:
            ap.error("--merge: the earlier summary was made in the other mode (--quick or not)")
        benches = {n: b for n, b in earlier["benchmarks"].items() if n not in names}
        started = dt.datetime.fromisoformat(earlier["started"])
    for name in names:
        benches[name] = _run_one(name, args.quick, results)
    benches = {n: benches[n] for n in BENCHES if n in benches}
    rows = [Row.from_dict(r) for b in benches.values() for r in b["rows"]]
    table = format_table(rows)
    print(table)
    summary = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": "python -m bench " + " ".join(argv or sys.argv[1:]),
        "machine": machine(),
        "benchmarks": benches,
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (results / "summary.md").write_text(format_table(rows, markdown=True) + "\n")
    print(f"wrote {results / 'summary.json'}", file=sys.stderr)
    return 0 if all("error" not in b for b in benches.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
