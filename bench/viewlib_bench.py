"""Police view library: how fast captures go into the outbox and out to a server over loopback.

Two figures, each the median of several runs, for captures with a JPEG of ``--kib`` KiB:

- ``store``: captures per second the uploader's ``on_event`` writes to the outbox (GA/T 1400
  object built, AES-GCM encrypted, one SQLite insert each) — the cost on its dispatch queue;
- ``drain``: captures per second the uploader's ``step`` uploads from the outbox (decrypt, JSON,
  HTTP over loopback to a server that accepts everything, delete) in batches of ``--batch``.

Run from the repo root: ``python -m bench.viewlib_bench [--captures N] [--runs N] [--kib N]
[--out FILE]``; writes ``bench/results/viewlib.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from anfang.config import ViewLibSettings
from anfang.http_server import ApiServer
from bench.common import RESULTS, machine
from community.crypto import FieldCipher
from registry.db import open_database
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent
from viewlib.client import ViewLibClient
from viewlib.store import ViewLibOutbox
from viewlib.uploader import ViewLibUploader

OUT = RESULTS / "viewlib.json"
PLATFORM, CAMERA = "31010400001180000001", "31010400001190000011"


def accepting_server() -> FastAPI:
    """Answers every GA/T 1400 request with success (no authentication: this measures our side)."""
    app = FastAPI()

    @app.post("/VIID/System/{what}")
    async def system(what: str) -> JSONResponse:
        return JSONResponse({"ResponseStatusObject": {"Id": PLATFORM, "StatusCode": 0, "StatusString": "OK"}})

    @app.post("/VIID/Faces")
    async def faces(request: Request) -> JSONResponse:
        objects = (await request.json())["FaceListObject"]["FaceObject"]
        statuses = [{"Id": o["FaceID"], "StatusCode": 0, "StatusString": "OK"} for o in objects]
        return JSONResponse({"ResponseStatusListObject": {"ResponseStatusObject": statuses}})

    return app


def image_of(kib: int) -> bytes:
    """A JPEG-looking payload of ``kib`` KiB (the uploader never decodes the pixels)."""
    body = np.random.default_rng(1).integers(0, 256, kib * 1024, dtype=np.uint8).tobytes()
    return b"\xff\xd8" + body + b"\xff\xd9"


async def one_run(captures: int, kib: int, batch: int) -> dict[str, float]:
    image = base64.b64encode(image_of(kib)).decode()
    async with ApiServer(accepting_server(), "127.0.0.1:0") as server:
        with tempfile.TemporaryDirectory() as tmp:
            async with open_database(f"sqlite://{Path(tmp) / 'v.db'}") as conn:
                settings = ViewLibSettings(
                    enabled=True,
                    url=f"http://127.0.0.1:{server.port}",
                    device_id=PLATFORM,
                    password="x",
                    devices={"door-1": CAMERA},
                    batch=batch,
                )
                client = ViewLibClient(settings.url or "", PLATFORM, PLATFORM, "x")
                uploader = ViewLibUploader(settings, ViewLibOutbox(conn, "bench", FieldCipher(b"b" * 32)), client)
                acts = RecordingActions(clock=time.time())
                events = [
                    DeviceEvent(
                        "bench",
                        "door-1",
                        "door_lock",
                        "face_captured",
                        uuid.uuid4().hex,
                        time.time(),
                        {"image_jpeg_b64": image},
                    )
                    for _ in range(captures)
                ]
                t0 = time.perf_counter()
                for event in events:
                    await uploader.on_event(event, acts)
                stored = time.perf_counter() - t0
                t0 = time.perf_counter()
                while uploader.delivered < captures:
                    await uploader.step()
                drained = time.perf_counter() - t0
                await client.aclose()
    return {"store_per_s": captures / stored, "drain_per_s": captures / drained}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=int, default=300)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--kib", type=int, default=100, help="image size")
    ap.add_argument("--batch", type=int, default=20, help="objects per upload request")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    runs = [asyncio.run(one_run(args.captures, args.kib, args.batch)) for _ in range(args.runs)]
    doc: dict[str, Any] = {
        "machine": machine(),
        "captures": args.captures,
        "image_kib": args.kib,
        "batch": args.batch,
        "store_per_s": statistics.median(r["store_per_s"] for r in runs),
        "drain_per_s": statistics.median(r["drain_per_s"] for r in runs),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2))
    print(f"view library, {args.kib} KiB images: store {doc['store_per_s']:,.0f} captures/s, "
          f"drain {doc['drain_per_s']:,.0f} captures/s over loopback (batches of {args.batch})")  # fmt: skip


if __name__ == "__main__":
    main()
