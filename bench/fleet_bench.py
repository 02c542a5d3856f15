"""Fleet benchmark: 10,000 simulated devices from one process against a private Mosquitto.

Run from the repository root: ``python -m bench.fleet_bench [--devices N] [--rate R] [--duration S]``.
Writes ``bench/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

from firmware_sim.fleet import FleetConfig, raise_fd_limit, run_fleet
from firmware_sim.mosquitto import Mosquitto

RESULTS = Path(__file__).parent / "results" / "fleet.json"


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the bench, print and store the result."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="target messages/s for the whole fleet")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of sending")
    ap.add_argument("--qos", type=int, default=1, choices=(0, 1))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    # Raised before Mosquitto starts so the broker inherits the higher limit too.
    fd_limit = raise_fd_limit(args.devices * 2 + 2048)
    with Mosquitto(fleet=True) as broker:
        cfg = FleetConfig(
            host=broker.host,
            port=broker.port,
            devices=args.devices,
            rate=args.rate,
            duration=args.duration,
            qos=args.qos,
        )

        def progress(line: str) -> None:
            sys.stderr.write("\r" + line if sys.stderr.isatty() else line + "\n")

        t0 = time.time()
        result = asyncio.run(run_fleet(cfg, progress))
    doc = {
        "bench": "fleet",
        "when": t0,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "fd_limit": fd_limit,
        "qos": args.qos,
        **result.as_dict(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(
        f"\n{result.connected}/{result.devices} devices connected in {result.connect_seconds:.1f} s; "
        f"sustained {result.sustained_rate:,.0f} msg/s QoS {args.qos} over {result.send_seconds:.0f} s "
        f"(target {args.rate:,.0f}); errors {result.errors}; simulator peak RSS {result.peak_rss_mb:.0f} MB; "
        f"wrote {args.out}"
    )
    return 0 if result.connected == result.devices and result.errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
