"""Access-control latency benchmark: capture → ``open`` command at a steady capture rate (central mode).

Runs in-process: a synthetic ~560-resident community in a temporary SQLite database, the real
:class:`community.handler.AccessHandler`, and :class:`twins.hooks.RecordingActions` timing the
``open`` command. Captures (plates at gates, faces and cards at unit doors, 20 % unknown) arrive on
a fixed schedule; latency is measured from the scheduled arrival to the command (and to the decision
being recorded). Usage: ``python -m bench.access_bench [--rate 200] [--seconds 10]``; JSON results go
to ``bench/results/access.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tortoise import Tortoise

from community.crypto import FieldCipher
from community.db import init_db
from community.handler import AccessConfig, AccessHandler
from community.idcard import check_char
from community.importer import import_community
from community.records import AccessRecords
from community.store import CommunityStore
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from rules.recording import RecordingActions
from twins.hooks import CommandResult, DeviceEvent
from vision.plate_text import PROVINCES

SITE = "bench"
RESULTS = Path(__file__).resolve().parent / "results" / "access.json"
_current: contextvars.ContextVar[str] = contextvars.ContextVar("capture_id")


def _template(rng: np.random.Generator) -> list[float]:
    v = rng.normal(size=128)
    return [float(x) for x in v / np.linalg.norm(v)]


def synthetic_community(rng: np.random.Generator, buildings: int = 8, per_building: int = 70) -> dict[str, Any]:
    """A community-file dict: ``buildings`` × ``per_building`` residents, doors, two gates, cars."""
    data: dict[str, Any] = {
        "site": SITE,
        "buildings": [],
        "households": [],
        "people": [],
        "vehicles": [],
        "devices": [{"id": "gate-north", "kind": "vehicle_gate"}, {"id": "gate-south", "kind": "vehicle_gate"}],
    }
    n = 0
    for b in range(1, buildings + 1):
        data["buildings"].append({"id": f"b{b}", "units": 1})
        data["devices"].append({"id": f"door-b{b}-u1", "kind": "door_lock", "building": f"b{b}", "unit": 1})
        for h in range(per_building // 2):
            hid = f"h-b{b}-{h}"
            data["households"].append({"id": hid, "building": f"b{b}", "unit": 1, "room": f"{h:03d}"})
            for _ in range(2):
                n += 1
                body = f"36040219{80 + n % 20:02d}0101{n % 1000:03d}"
                data["people"].append(
                    {
                        "id": f"p{n:04d}",
                        "household": hid,
                        "role": "owner",
                        "phone": f"138{n:08d}",
                        "id_number": body + check_char(body),
                        "face_consent": n % 10 != 0,
                        "card": f"C{n:05d}",
                        "face_template": _template(rng),
                    }
                )
                if n % 3 == 0:
                    data["vehicles"].append({"plate": f"赣G{n:05d}", "owner": f"p{n:04d}"})
    return data


class TimingActions(RecordingActions):
    """Records when each capture's open command was sent."""

    def __init__(self) -> None:
        super().__init__(clock=time.time(), command_results={"open": {"opened": True}})
        self.sent_at: dict[str, float] = {}

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        self.sent_at[_current.get()] = time.perf_counter()
        return await super().send_command(device_id, name, args, timeout)


def _captures(data: dict[str, Any], rng: np.random.Generator, count: int) -> list[DeviceEvent]:
    people = data["people"]
    events = []
    for _ in range(count):
        r = rng.random()
        unknown = rng.random() < 0.2
        if r < 0.4:
            plate = (
                random.choice(PROVINCES) + f"A{rng.integers(0, 99999):05d}"
                if unknown
                else data["vehicles"][rng.integers(len(data["vehicles"]))]["plate"]
            )
            ev = ("gate-north", "vehicle_gate", "plate_captured", {"plate": plate, "camera": "cam-1"})
        else:
            p = people[rng.integers(len(people))]
            door = f"door-{p['household'].split('-')[1]}-u1"
            if r < 0.8:
                emb = _template(rng) if unknown else p["face_template"]
                ev = (door, "door_lock", "face_captured", {"liveness": 0.95, "embedding": emb})
            else:
                ev = (door, "door_lock", "card_presented", {"card": "X" if unknown else p["card"]})
        events.append(DeviceEvent(SITE, ev[0], ev[1], ev[2], uuid.uuid4().hex, 0.0, ev[3]))
    return events


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


async def run(rate: float, seconds: float, workers: int) -> dict[str, Any]:
    """Run the benchmark; returns the result document."""
    rng = np.random.default_rng(7)
    random.seed(7)
    with tempfile.TemporaryDirectory() as tmp:
        await init_db(f"sqlite://{tmp}/bench.db?synchronous=NORMAL")
        try:
            store = CommunityStore(FieldCipher(bytes(32)), SITE)
            data = synthetic_community(rng)
            t0 = time.perf_counter()
            await import_community(data, store, now=time.time(), alternative_pins=False)
            import_s = time.perf_counter() - t0
            alarms = AlarmManager(SITE, DatabaseAlarmStore(Tortoise.get_connection("default"), SITE))
            handler = AccessHandler(store, AccessRecords(SITE), AccessConfig(site=SITE), alarms=alarms)
            await handler.snapshot()
            actions = TimingActions()
            events = _captures(data, rng, int(rate * seconds))
            queue: asyncio.Queue[tuple[DeviceEvent, float]] = asyncio.Queue(maxsize=1000)
            arrived: dict[str, float] = {}
            done_at: dict[str, float] = {}

            async def produce() -> None:
                start = time.perf_counter()
                for i, ev in enumerate(events):
                    due = start + i / rate
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    arrived[ev.id] = due
                    await queue.put((ev, due))
                for _ in range(workers):
                    await queue.put((DeviceEvent("", "", "", "stop", "", 0.0, {}), 0.0))

            async def consume() -> None:
                while True:
                    ev, _ = await queue.get()
                    if ev.type == "stop":
                        return
                    _current.set(ev.id)
                    await handler.on_event(ev, actions)
                    done_at[ev.id] = time.perf_counter()

            t_start = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(produce())
                for _ in range(workers):
                    tg.create_task(consume())
            wall = time.perf_counter() - t_start
        finally:
            await Tortoise.close_connections()
    to_open = [(actions.sent_at[k] - arrived[k]) * 1000 for k in actions.sent_at]
    to_done = [(done_at[k] - arrived[k]) * 1000 for k in done_at]
    return {
        "benchmark": "access_capture_to_open",
        "mode": "central",
        "transport": "in-process RecordingActions",
        "database": "sqlite (tempfile)",
        "people": len(data["people"]),
        "vehicles": len(data["vehicles"]),
        "target_rate_per_s": rate,
        "captures": len(events),
        "achieved_rate_per_s": round(len(events) / wall, 1),
        "opened": len(to_open),
        "refused": len(events) - len(to_open),
        "workers": workers,
        "capture_to_open_ms": {
            "p50": round(_pct(to_open, 0.5), 2),
            "p99": round(_pct(to_open, 0.99), 2),
            "max": round(max(to_open), 2),
            "mean": round(statistics.fmean(to_open), 2),
        },
        "capture_to_recorded_ms": {"p50": round(_pct(to_done, 0.5), 2), "p99": round(_pct(to_done, 0.99), 2)},
        "import_seconds": round(import_s, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }


def main() -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    result = asyncio.run(run(args.rate, args.seconds, args.workers))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
