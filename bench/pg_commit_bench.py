"""The twin store's group commit on PostgreSQL, reports against events, this code against an older store.

Each round commits a batch of ``--batch`` twin reports (one upsert of changed documents of 1,000
camera twins) and a batch of as many new events (the id look-up, then the insert) through the
current :class:`registry.store.TwinStore` and, interleaved in alternating order so the machine's
noise hits both alike, through the ``TwinStore`` of an older ``registry/store.py`` given with
``--old`` (e.g. ``git show d01a9fd:registry/store.py > /tmp/old_store.py``), on one fresh database
(``--admin`` makes and drops it). Prints the median time per batch and per message, events against
reports for each store, and the current store against the older one. Store-level only: no MQTT, no
Python ingest path (``bench.ingest_bench`` measures the platform end to end).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from registry.db import open_database
from registry.records import StoredEvent
from registry.store import TwinStore
from twins.document import TwinDocument, apply_reported

DEVICES = 1000


def _old_store(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("old_store", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TwinStore


async def _rounds(conn: Any, stores: dict[str, Any], rounds: int, size: int) -> dict[str, list[float]]:
    docs = [TwinDocument(device_id=f"fleet-{i:05d}", kind="camera", site="fleet") for i in range(DEVICES)]
    times: dict[str, list[float]] = {f"{s}-{k}": [] for s in stores for k in ("reports", "events")}
    seq = 0
    for rnd in range(rounds):
        for name in sorted(stores, reverse=bool(rnd % 2)):
            store = stores[name]
            seq += 1
            batch = []
            for j in range(size):
                i = (seq * size + j) % DEVICES
                docs[i] = apply_reported(docs[i], {"recording": True, "fps": 20 + seq % 10}, now=time.time(), seq=seq)[
                    0
                ]
                batch.append(docs[i])
            start = time.perf_counter()
            await store.commit(batch)
            times[f"{name}-reports"].append(time.perf_counter() - start)
            now = time.time()
            events = [
                StoredEvent(f"fleet-{j % DEVICES:05d}", f"m-{name}-{seq}-{j}", "motion", now, now, {"zone": "gate"})
                for j in range(size)
            ]
            start = time.perf_counter()
            seen = await store.seen_events([(e.device_id, e.event_id) for e in events])
            await store.commit([], [e for e in events if (e.device_id, e.event_id) not in seen])
            times[f"{name}-events"].append(time.perf_counter() - start)
    return times


async def main(args: argparse.Namespace) -> None:
    name = f"anfang_commit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.admin)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = args.admin.rsplit("/", 1)[0].replace("postgresql://", "postgres://", 1) + f"/{name}"
        async with open_database(url) as conn:
            stores: dict[str, Any] = {"new": TwinStore(conn, True)}
            if args.old:
                stores["old"] = _old_store(args.old)(conn, True)
            times = await _rounds(conn, stores, args.rounds, args.batch)
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()
    med = {k: statistics.median(v[2:]) for k, v in times.items()}  # the first rounds warm caches
    for key, value in med.items():
        print(f"{key:12} {value * 1000:8.2f} ms per batch of {args.batch}  {value / args.batch * 1e6:7.1f} us/message")
    for store in stores:
        print(f"{store}: events / reports {med[f'{store}-events'] / med[f'{store}-reports']:.2f}")
    if "old" in stores:
        for kind in ("reports", "events"):
            print(f"new / old {kind}: {med[f'new-{kind}'] / med[f'old-{kind}']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=Path, help="an older registry/store.py to compare with")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--admin", default="postgresql://postgres@127.0.0.1:5432/test")
    asyncio.run(main(parser.parse_args()))
