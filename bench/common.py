"""Shared pieces of the benchmarks: the platform as a process, a watcher of its retained topics, machine facts."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gmqtt

RESULTS = Path(__file__).resolve().parent / "results"
ANFANG = str(Path(sys.executable).parent / "anfang")
# the platform with no services (bare twins), for the ingest bench's "bare" variant
BARE = [sys.executable, "-m", "bench.bare_platform"]
ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that are not ``None`` (``None`` if there are none)."""
    present = [float(v) for v in values if v is not None]
    return float(statistics.median(present)) if present else None


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN if empty."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def platform_env(data_dir: Path, site: str, port: int, config: Path | None = None) -> dict[str, str]:
    """Environment for ``anfang run`` against an external broker on 127.0.0.1:``port``."""
    env = {
        **os.environ,
        "ANFANG_DATA_DIR": str(data_dir),
        "ANFANG_SITE": site,
        "ANFANG_EMBEDDED_BROKER": "false",
        "ANFANG_MQTT_HOST": "127.0.0.1",
        "ANFANG_MQTT_PORT": str(port),
        "ANFANG_LOG_LEVEL": "WARNING",
    }
    if config is not None:
        env["ANFANG_CONFIG"] = str(config)
    return env


class Watcher:
    """A plain MQTT client that keeps the latest message per topic and wakes waiters on each message."""

    def __init__(self, port: int, topics: Sequence[str], client_id: str) -> None:
        self.port, self.topics = port, list(topics)
        self.client = gmqtt.Client(client_id, clean_session=True)
        self.latest: dict[str, tuple[float, Any]] = {}
        self.on_message: Callable[[str, bytes, float], None] | None = None
        self._changed = asyncio.Event()
        self.client.on_message = self._on_message

    def _on_message(self, client: Any, topic: str, payload: bytes, qos: int, props: Any) -> int:
        now = time.monotonic()
        if self.on_message is not None:
            self.on_message(topic, payload, now)
        try:
            self.latest[topic] = (now, json.loads(payload))
        except ValueError:
            self.latest[topic] = (now, payload.decode(errors="replace"))
        self._changed.set()
        return 0

    async def __aenter__(self) -> Watcher:
        await self.client.connect("127.0.0.1", self.port, version=gmqtt.constants.MQTTv311)
        for topic in self.topics:
            self.client.subscribe(topic, qos=1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def wait(self, predicate: Callable[[dict[str, tuple[float, Any]]], bool], timeout: float) -> None:
        """Wait until ``predicate(latest)`` holds (checked after every message)."""
        async with asyncio.timeout(timeout):
            while not predicate(self.latest):
                self._changed.clear()
                await self._changed.wait()
