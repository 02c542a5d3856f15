"""``anfang run`` (the same ``serve`` with every service) with a hook for the memory bench.

On SIGUSR1 the process collects garbage and returns the allocator's free memory to the system
(``gc.collect()`` then glibc's ``malloc_trim(0)``), so that its RSS is what it holds rather than the
high-water mark of the last burst; with ``--trace`` it also dumps a tracemalloc snapshot. Each time,
``<dir>/mark-N.json`` is written (N counts from 0) with the RSS after the trim: the bench waits for it.

``python -m bench.memory_platform --marks DIR [--trace FRAMES]``; settings from ``ANFANG_*`` /
``ANFANG_CONFIG`` as for ``anfang run``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import gc
import json
import signal
import tracemalloc
from pathlib import Path

import psutil


def trim() -> int:
    """Collect garbage and hand free heap memory back to the system; the RSS after it (bytes)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: no malloc_trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    rss: int = psutil.Process().memory_info().rss
    return rss


async def _main(marks: Path, frames: int) -> None:
    from anfang import logs
    from anfang.app import serve
    from anfang.config import load_settings
    from anfang.services import open_services

    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format, settings.site)
    count = 0

    def mark() -> None:
        nonlocal count
        rss = trim()
        snapshot = None
        if frames:
            snapshot = marks / f"snapshot-{count}.pickle"
            tracemalloc.take_snapshot().dump(str(snapshot))
            rss = trim()
        doc = {"rss": rss, "snapshot": None if snapshot is None else str(snapshot)}
        tmp = marks / f"mark-{count}.tmp"
        tmp.write_text(json.dumps(doc))
        tmp.replace(marks / f"mark-{count}.json")  # whole or not at all for the bench that waits on it
        count += 1

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, mark)
    await serve(settings, open_services)


def main() -> None:
    """Run until terminated."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--marks", type=Path, required=True, help="where mark-N.json (and snapshots) are written")
    ap.add_argument("--trace", type=int, default=0, metavar="FRAMES", help="tracemalloc with this many frames")
    args = ap.parse_args()
    args.marks.mkdir(parents=True, exist_ok=True)
    if args.trace:
        tracemalloc.start(args.trace)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.marks, args.trace))


if __name__ == "__main__":
    main()
