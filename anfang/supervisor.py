"""``anfang run --workers N``: N worker processes for one site on this machine, kept running.

Each child is a plain ``anfang run`` told its number through ``ANFANG_WORKER_INDEX``; they share the
external broker and PostgreSQL and split the site's device partitions between them (anfang.workers).
A child that dies is restarted after a pause; meanwhile the others take over its partitions.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger(__name__)

RESTART_PAUSE_S = 2.0
CONFIG_ERROR = 2  # what ``anfang run`` exits with on a bad setting: restarting would not help


def without_workers_option(argv: Sequence[str]) -> list[str]:
    """The ``anfang run`` arguments for a child: the parent's, minus ``--workers``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            out.append(arg)
    return out


def worker_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "anfang", "run", *args]


def supervise(workers: int, partitions: int, args: Sequence[str]) -> int:
    """Run ``workers`` children until SIGINT/SIGTERM; returns the exit status."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "ANFANG_WORKERS": str(workers),
            "ANFANG_WORKER_INDEX": str(index),
            "ANFANG_PARTITIONS": str(partitions),
        }
        child = subprocess.Popen(worker_command(args), env=env)
        log.info("started worker %d of %d (pid %d)", index, workers, child.pid)
        return child

    children = {i: spawn(i) for i in range(workers)}
    while not stopping:
        for index, child in list(children.items()):
            code = child.poll()
            if code == CONFIG_ERROR:
                log.error("worker %d stopped on a configuration error; stopping all workers", index)
                stopping = True
            elif code is not None and not stopping:
                log.error(
                    "worker %d (pid %d) exited with %d; restarting in %.0fs", index, child.pid, code, RESTART_PAUSE_S
                )
                time.sleep(RESTART_PAUSE_S)
                children[index] = spawn(index)
        time.sleep(0.2)  # polling the children; signal handlers set ``stopping``
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    status = CONFIG_ERROR if any(c.poll() == CONFIG_ERROR for c in children.values()) else 0
    for child in children.values():
        try:
            status = max(status, abs(child.wait(20)))
        except subprocess.TimeoutExpired:
            child.kill()
            status = 1
    return status
