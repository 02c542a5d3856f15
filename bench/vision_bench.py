"""Vision benchmark: per-frame latency of the face and plate pipelines, and throughput under load.

Run from the repo root after ``bash scripts/fetch-vision-testdata.sh``::

    python -m bench.vision_bench [--quick] [--out bench/results/vision.json]

Measures
  * face: detect + align + embed + match against galleries of 1,000 and 100,000 templates (p50/p99);
  * gallery match alone at both sizes;
  * plates: whole 640x480 gate frame (detect + read) and tight plate crop (read only), and accuracy;
  * load: frames/s through :class:`vision.service.VisionService` (default worker pool) while the
    asyncio loop keeps running a stream of small tasks standing in for twin updates; loop lag p99 under
    load vs idle;
  * platform: the real platform in this process (``anfang.services.open_services``, embedded amqtt
    broker, SQLite): a door/gate sends face/plate images over MQTT (a fixed number in flight), access
    control decides; meanwhile another door reports its twin at a steady rate. Decisions/s, and the
    platform's own twin-report latency (device ``ts`` -> committed) p50/p99 under load vs idle.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import itertools
import json
import os
import platform
import random
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from anfang.app import Services, build_platform
from anfang.config import Settings
from anfang.service import Platform
from anfang.services import AccessFeed, open_services
from bench.vision_before import RapidOcrPlateReader, detector_passes_read
from registry.store import Registry
from twins.hooks import DeviceEvent
from vision.face import FAST_DETECT_SIDE, FAST_MIN_FACE, FacePipeline, FloatArray
from vision.gallery import FaceGallery
from vision.images import BgrImage, encode_jpeg
from vision.plate_synth import SceneParams, random_plate, render_plate, render_scene
from vision.plates import PlateReader
from vision.service import VisionService, default_workers

FACE_DIR = Path(".cache/testdata/faces")
FACE_FILES = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "t1.jpg", "obama_partial_face.jpg"]
#: The photos of the face accuracy test (tests/vision/test_vision_faces.py), for :func:`face_pairs`.
PAIR_FILES = [
    "obama.jpg",
    "obama2.jpg",
    "obama3.jpg",
    "obama_partial_face.jpg",
    "obama_partial_face2.jpg",
    "biden.jpg",
    "Tom_Hanks_54745.png",
]


def pct(values: list[float], q: float) -> float:
    """q-th percentile (0-100) in milliseconds of values given in seconds."""
    return float(np.percentile(np.asarray(values), q) * 1000.0)


def summary(values: list[float]) -> dict[str, float]:
    """p50/p99/mean in ms."""
    return {
        "p50_ms": round(pct(values, 50), 2),
        "p99_ms": round(pct(values, 99), 2),
        "mean_ms": round(statistics.fmean(values) * 1000.0, 2),
        "n": len(values),
    }


def load_faces() -> list[BgrImage]:
    """Face frames at gate-camera size (longest side 640)."""
    frames = []
    for name in FACE_FILES:
        img = cv2.imread(str(FACE_DIR / name), cv2.IMREAD_COLOR)
        if img is None:
            sys.exit(f"missing {FACE_DIR / name}: run `bash scripts/fetch-vision-testdata.sh` first")
        s = 640 / max(img.shape[:2])
        frames.append(np.asarray(cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8))
    return frames


def random_gallery(size: int, rng: np.random.Generator) -> FaceGallery:
    """A gallery of ``size`` random templates."""
    g = FaceGallery(capacity=size)
    g.add_many([f"p{i}" for i in range(size)], rng.standard_normal((size, 128)).astype(np.float32))
    return g


def bench_faces(frames: list[BgrImage], rounds: int) -> dict[str, Any]:
    """Face latency (single thread) for 1k and 100k galleries."""
    pipeline = FacePipeline()
    pipeline.warm_up()
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for size in (1_000, 100_000):
        gallery = random_gallery(size, rng)
        gallery.add("obama", pipeline.largest_face(frames[0]).embedding)
        total: list[float] = []
        match_only: list[float] = []
        hits = 0
        for i in range(rounds):
            frame = frames[i % len(frames)]
            t0 = time.perf_counter()
            face = pipeline.largest_face(frame)
            t1 = time.perf_counter()
            m = gallery.best_match(face.embedding)
            t2 = time.perf_counter()
            total.append(t2 - t0)
            match_only.append(t2 - t1)
            hits += m.subject == "obama"
        out[f"gallery_{size}"] = {"frame": summary(total), "match_only": summary(match_only)}
    return out


def bench_plates(rounds: int) -> dict[str, Any]:
    """Plate latency and accuracy on rendered 640x480 gate frames and tight crops."""
    reader = PlateReader()
    reader.warm_up()
    rng = random.Random(11)
    plates = ["赣G12345"] + [random_plate(rng, green=(i % 4 == 3)) for i in range(1, rounds)]
    frame_t: list[float] = []
    crop_t: list[float] = []
    exact_frames = exact_crops = 0
    for plate in plates:
        frame = render_scene(plate, rng, SceneParams())
        t0 = time.perf_counter()
        r = reader.read(frame)
        frame_t.append(time.perf_counter() - t0)
        exact_frames += r is not None and r.plate == plate
        crop = np.asarray(cv2.resize(render_plate(plate), (220, 70), interpolation=cv2.INTER_AREA), np.uint8)
        t0 = time.perf_counter()
        r = reader.read(crop)
        crop_t.append(time.perf_counter() - t0)
        exact_crops += r is not None and r.plate == plate
    return {
        "frame_640x480": {**summary(frame_t), "exact": exact_frames, "total": len(plates)},
        "crop_220x70": {**summary(crop_t), "exact": exact_crops, "total": len(plates)},
    }


def _interleaved(variants: dict[str, Callable[[Any], Any]], inputs: list[Any], rounds: int) -> dict[str, Any]:
    """Wall and CPU time per call of each variant, taking turns on the same input (the machine's noise
    then hits every variant alike); medians in ms."""
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(rounds):
        item = inputs[i % len(inputs)]
        for name, fn in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(item)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {
        name: {
            "wall_p50_ms": round(pct(wall[name], 50), 2),
            "cpu_p50_ms": round(pct(cpu[name], 50), 2),
            "wall_p90_ms": round(pct(wall[name], 90), 2),
            "wall_p99_ms": round(pct(wall[name], 99), 2),
            "n": rounds,
        }
        for name in variants
    }


def dec02_largest_face(pipe: FacePipeline, frame: BgrImage) -> FloatArray:
    """The door path of 2026-12-02: a face too small at 320 px sent the whole frame through at 640."""
    dets = pipe.detect(frame, FAST_DETECT_SIDE)
    scale = min(1.0, FAST_DETECT_SIDE / max(frame.shape[:2]))
    if not dets or dets[0].box[2] * scale < FAST_MIN_FACE:
        dets = pipe.detect(frame)
    return pipe.embed_detection(frame, dets[0])


def face_pairs(pipe: FacePipeline, door: Callable[[BgrImage], FloatArray]) -> dict[str, float]:
    """Accuracy of a door path on the test photos (as tests/vision/test_vision_faces.py): every pair of
    door templates of the same person (genuine) and of different people (impostor); cosine figures."""
    people = {"biden.jpg": "biden", "Tom_Hanks_54745.png": "hanks"}
    templates = [(people.get(name, "obama"), door(_photo(name))) for name in PAIR_FILES]
    templates += [(f"t1-{i}", f.embedding) for i, f in enumerate(pipe.faces(_photo("t1.jpg")))]
    genuine: list[float] = []
    impostor: list[float] = []
    for (pa, ta), (pb, tb) in itertools.combinations(templates, 2):
        (genuine if pa == pb else impostor).append(float(ta @ tb))
    return {
        "genuine_min": round(min(genuine), 4),
        "genuine_mean": round(statistics.fmean(genuine), 4),
        "impostor_max": round(max(impostor), 4),
        "pairs": len(genuine) + len(impostor),
    }


def _photo(name: str) -> BgrImage:
    img = cv2.imread(str(FACE_DIR / name), cv2.IMREAD_COLOR)
    if img is None:
        sys.exit(f"missing {FACE_DIR / name}: run `bash scripts/fetch-vision-testdata.sh` first")
    return np.asarray(img, np.uint8)


def bench_speedups(frames: list[BgrImage], rounds: int, plate_rounds: int) -> dict[str, Any]:
    """Each throughput change of issue 21.5 against the pipeline before it, in one run, one thread.

    face: ``before`` = detect at 640 px + SFace in onnxruntime (the pipeline until 2026-12-02);
    ``dec02`` = detect at 320 px, the whole frame again at 640 px when the face is small there, SFace
    in OpenCV (until 2026-12-03); ``after`` = :meth:`FacePipeline.largest_face` (a small face is
    looked for again only in its region). plate: ``before`` = one PP-OCR
    pass at up to 960 px (until 2026-12-02); ``rapidocr`` = the shrunk detection first, through
    RapidOCR's engine (:mod:`bench.vision_before`, until the second round of 2026-12-03);
    ``detector`` = the same passes, detector in OpenCV, recogniser lines 224 wide
    (:func:`bench.vision_before.detector_passes_read`, until the third round); ``detector_now`` = the
    same with the detector in the runtime timed fastest at load (:mod:`vision.backends`); ``after`` =
    :meth:`PlateReader.read` (colour/edge-located regions read by the recogniser alone first).
    CPU is the process's CPU time (every thread), so OpenCV's own worker threads count too.
    """
    ort_pipe = FacePipeline(backend="onnxruntime")
    new_pipe = FacePipeline()
    ort_pipe.warm_up()
    new_pipe.warm_up()

    def full_detect(pipe: FacePipeline) -> Callable[[BgrImage], Any]:
        def run(frame: BgrImage) -> Any:
            det = pipe.detect(frame)[0]
            return pipe.embed_detection(frame, det)

        return run

    def whole_frame_again(frame: BgrImage) -> Any:
        return dec02_largest_face(new_pipe, frame)

    faces = _interleaved(
        {
            "before": full_detect(ort_pipe),
            "dec02": whole_frame_again,
            "after": new_pipe.largest_face,
        },
        frames,
        rounds,
    )
    faces["backend_after"] = new_pipe.backend
    faces["pairs_dec02"] = face_pairs(new_pipe, lambda f: dec02_largest_face(new_pipe, f))
    faces["pairs_after"] = face_pairs(new_pipe, lambda f: new_pipe.largest_face(f).embedding)
    agree = [float(ort_pipe.largest_face(f).embedding @ new_pipe.largest_face(f).embedding) for f in frames]
    faces["template_cosine_before_vs_after_min"] = round(min(agree), 4)

    reader = PlateReader()
    reader.warm_up()
    dec03 = PlateReader()
    dec03._det_opencv = True  # the second round ran the detector in OpenCV on every machine where it agreed
    dec03.warm_up()
    old = RapidOcrPlateReader()
    old.warm_up()
    rng = random.Random(2026)
    prng = random.Random(6)
    plates = ["赣G12345"] + [random_plate(prng, green=(i % 4 == 3)) for i in range(1, plate_rounds)]
    scenes = [(p, render_scene(p, rng, SceneParams())) for p in plates]
    exact = {"before": 0, "rapidocr": 0, "detector": 0, "detector_now": 0, "after": 0}

    def checked(name: str, fn: Callable[[BgrImage], Any]) -> Callable[[tuple[str, BgrImage]], Any]:
        def run(item: tuple[str, BgrImage]) -> Any:
            reading = fn(item[1])
            exact[name] += reading is not None and reading.plate == item[0]
            return reading

        return run

    plate = _interleaved(
        {
            "before": checked("before", old.read_full),
            "rapidocr": checked("rapidocr", old.read),
            "detector": checked("detector", lambda image: detector_passes_read(dec03, image)),
            "detector_now": checked("detector_now", lambda image: detector_passes_read(reader, image)),
            "after": checked("after", reader.read),
        },
        scenes,
        len(scenes),
    )
    plate["detector_after"] = reader.detector_backend
    plate["detector_before"] = dec03.detector_backend
    # how many frames the located pass settles alone (the rest pay for it and then the detector passes)
    plate["after"]["located"] = sum(reader.read_located(image) is not None for _, image in scenes)
    for name in exact:
        plate[name]["exact"] = exact[name]
        plate[name]["total"] = len(scenes)
    # pipelines of one thread each; OpenCV's pool (cv2.getNumThreads) is as the platform leaves it
    return {
        "face": faces,
        "plate": plate,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "opencv_threads": cv2.getNumThreads(),
    }


async def _loop_lag(stop: asyncio.Event, interval: float = 0.002) -> list[float]:
    """Run a stream of small tasks (tiny JSON twin patches) and record how late each one starts."""
    lags: list[float] = []
    doc = json.dumps({"seq": 1, "state": {"lock": "locked", "door": "closed"}})
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(interval)
        lags.append(max(0.0, time.perf_counter() - t0 - interval))
        json.loads(doc)
    return lags


async def _feed(fn: Any, jpegs: list[bytes], start: int, step: int, deadline: float) -> int:
    """Submit frames back to back until ``deadline``; returns how many were recognised."""
    done = 0
    i = start
    while time.perf_counter() < deadline:
        await fn(jpegs[i % len(jpegs)])
        done += 1
        i += step
    return done


async def bench_load(face_jpegs: list[bytes], plate_jpegs: list[bytes], seconds: float, workers: int) -> dict[str, Any]:
    """Frames/s through a pool of ``workers`` threads and loop lag under load vs idle."""
    idle_stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        idle_task = tg.create_task(_loop_lag(idle_stop))
        await asyncio.sleep(min(3.0, seconds / 2))
        idle_stop.set()
    idle = idle_task.result()

    results: dict[str, Any] = {"workers": workers}
    async with VisionService(workers=workers) as svc:
        await svc.warm_up()
        kinds: list[tuple[str, list[bytes], Any]] = [
            ("face", face_jpegs, svc.identify_face),
            ("plate", plate_jpegs, svc.read_plate),
        ]
        for label, jpegs, fn in kinds:
            stop = asyncio.Event()
            deadline = time.perf_counter() + seconds
            feeders_n = svc.workers * 2
            t0 = time.perf_counter()
            async with asyncio.TaskGroup() as tg:
                lag_task = tg.create_task(_loop_lag(stop))
                feeders = [tg.create_task(_feed(fn, jpegs, k, feeders_n, deadline)) for k in range(feeders_n)]
                done = sum(await asyncio.gather(*feeders))
                stop.set()
            elapsed = time.perf_counter() - t0
            loaded = lag_task.result()
            results[label] = {
                "frames_per_s": round(done / elapsed, 2),
                "frames": done,
                "loop_lag_p99_ms_loaded": round(pct(loaded, 99), 3),
                "loop_lag_p99_ms_idle": round(pct(idle, 99), 3),
                "lag_ratio_p99_loaded_vs_idle": round(pct(loaded, 99) / max(pct(idle, 99), 1e-3), 2),
            }
    return results


# --- through the real platform --------------------------------------------------------------------


class _Client:
    """A paho device connected to the embedded broker (QoS 1 publishes; the loop runs in paho's thread)."""

    def __init__(self, port: int, site: str, device_id: str, secret: str) -> None:
        self.site, self.device_id = site, device_id
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id)
        self.client.username_pw_set(device_id, secret)
        self._connected = threading.Event()
        self.client.on_connect = lambda *_: self._connected.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    async def ready(self) -> None:
        if not await asyncio.to_thread(self._connected.wait, 10):
            raise TimeoutError(f"{self.device_id} could not connect")

    def publish(self, suffix: str, payload: dict[str, Any]) -> None:
        self.client.publish(f"anfang/{self.site}/{self.device_id}/{suffix}", json.dumps(payload), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class _Decisions:
    """``open_services`` as shipped, with a tap on the access decisions (their only sink is in-process)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DeviceEvent] = asyncio.Queue()
        self.vision: VisionService | None = None

    @asynccontextmanager
    async def factory(self, settings: Settings, registry: Registry) -> AsyncIterator[Services]:
        async with open_services(settings, registry) as services:
            feed = next(h for h in services.handlers if isinstance(h, AccessFeed))
            self.vision = feed.vision
            services.platform_event_taps.append(
                lambda event: self.queue.put_nowait(event) if event.type == "access_decided" else None
            )
            yield services


async def _twin_reports(door: _Client, rate: float, stop: asyncio.Event, seq: int) -> int:
    """Report the door's lock state at ``rate`` per second after ``seq`` (alternating, so every report
    changes the twin); returns the last ``seq`` sent."""
    sent, start = 0, time.perf_counter()
    while not stop.is_set():
        sent += 1
        door.publish(
            "twin/reported",
            {"seq": seq + sent, "ts": time.time(), "state": {"lock": "locked" if sent % 2 else "unlocked"}},
        )
        await asyncio.sleep(max(0.0, start + sent / rate - time.perf_counter()))
    return seq + sent


async def _captures(
    device: _Client, event_type: str, payloads: list[dict[str, Any]], decisions: _Decisions, window: int, seconds: float
) -> int:
    """Keep ``window`` captures in flight for ``seconds``; returns how many were decided."""

    def send(i: int) -> None:
        device.publish(
            f"events/{event_type}", {"id": uuid.uuid4().hex, "ts": time.time(), "data": payloads[i % len(payloads)]}
        )

    for i in range(window):
        send(i)
    sent, done, deadline = window, 0, time.perf_counter() + seconds
    async with asyncio.timeout(seconds + 60):
        while done < sent:
            await decisions.queue.get()
            done += 1
            if time.perf_counter() < deadline:
                send(sent)
                sent += 1
    return done


def _twin_latency(platform: Platform) -> dict[str, float]:
    lat = list(platform.counters.latencies_ms)
    platform.counters.latencies_ms.clear()
    if not lat:
        return {"twin_latency_p50_ms": float("nan"), "twin_latency_p99_ms": float("nan"), "twin_reports": 0}
    return {
        "twin_latency_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "twin_latency_p99_ms": round(float(np.percentile(lat, 99)), 2),
        "twin_reports": len(lat),
    }


def _applied(device_id: str, seq: int) -> Callable[[Platform], bool]:
    """Predicate: the platform has committed ``device_id``'s report ``seq``."""

    def check(p: Platform) -> bool:
        twin = p.cached_twin(device_id)
        return twin is not None and twin.last_seq == seq

    return check


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def bench_platform(
    face_jpegs: list[bytes], plate_jpegs: list[bytes], seconds: float, twin_rate: float = 50.0, window: int = 4
) -> dict[str, Any]:
    """Decisions/s for image captures through the full platform while twin reports keep flowing."""
    decisions = _Decisions()
    with tempfile.TemporaryDirectory(prefix="vision-bench-") as tmp:
        settings = Settings(site="youzheng", data_dir=Path(tmp) / "data")
        port = _free_port()
        settings.broker.bind = f"127.0.0.1:{port}"
        settings.broker.hash_iterations = 1000
        async with build_platform(settings, decisions.factory) as platform:
            run = asyncio.create_task(platform.run(), name="platform")
            await asyncio.wait_for(platform.ready.wait(), 30)
            clients: dict[str, _Client] = {}
            for device_id, kind in (
                ("door-b1-u1", "door_lock"),
                ("gate-north", "vehicle_gate"),
                ("door-b1-u2", "door_lock"),
            ):
                secret = await platform.registry.add_device(settings.site, device_id, kind, device_id, None)
                clients[device_id] = _Client(port, settings.site, device_id, secret or "")
                await clients[device_id].ready()
            faces = [{"liveness": 0.97, "image_jpeg_b64": base64.b64encode(j).decode()} for j in face_jpegs]
            plates = [{"camera": "cam-north-1", "image_jpeg_b64": base64.b64encode(j).decode()} for j in plate_jpegs]
            # open_services does not warm its VisionService up: load the models in every worker thread now
            assert decisions.vision is not None
            await decisions.vision.warm_up()
            results: dict[str, Any] = {"twin_rate_per_s": twin_rate, "in_flight": window}
            phases: list[tuple[str, str, str, list[dict[str, Any]]]] = [
                ("idle", "", "", []),
                ("face", "door-b1-u1", "face_captured", faces),
                ("plate", "gate-north", "plate_captured", plates),
            ]
            seq = 0
            try:
                for label, device_id, event_type, payloads in phases:
                    stop = asyncio.Event()
                    reporter = asyncio.create_task(_twin_reports(clients["door-b1-u2"], twin_rate, stop, seq))
                    _twin_latency(platform)
                    t0 = time.perf_counter()
                    done = 0
                    if payloads:
                        done = await _captures(clients[device_id], event_type, payloads, decisions, window, seconds)
                    else:
                        await asyncio.sleep(seconds)  # idle phase: twin reports only, for as long as a load phase
                    elapsed = time.perf_counter() - t0
                    stop.set()
                    seq = await reporter
                    await platform.wait_until(_applied("door-b1-u2", seq), 10)
                    results[label] = {
                        **({"decisions_per_s": round(done / elapsed, 2), "decisions": done} if payloads else {}),
                        **_twin_latency(platform),
                    }
                idle_p99 = results["idle"]["twin_latency_p99_ms"]
                for label in ("face", "plate"):
                    results[label]["twin_p99_ratio_loaded_vs_idle"] = round(
                        results[label]["twin_latency_p99_ms"] / max(idle_p99, 1e-3), 2
                    )
                results["handler_errors"] = platform.counters.handler_errors
                results["rejected"] = sum(platform.counters.rejected.values())
            finally:
                for c in clients.values():
                    c.close()
                run.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run
    return results


def print_speedups(sp: dict[str, Any]) -> None:
    """The before/after table."""
    print(
        f"speed-ups, one thread, interleaved (load {sp['load_average_1m']}, OpenCV threads {sp['opencv_threads']}); "
        f"SFace after: {sp['face']['backend_after']}, its templates vs onnxruntime's cos >= "
        f"{sp['face']['template_cosine_before_vs_after_min']}; plate detector in the 2nd round / now: "
        f"{sp['plate']['detector_before']} / {sp['plate']['detector_after']}"
    )
    for name in ("dec02", "after"):
        x = sp["face"][f"pairs_{name}"]
        print(
            f"face {name} on the test photos ({x['pairs']} pairs): genuine cos min {x['genuine_min']}, "
            f"mean {x['genuine_mean']}; impostor max {x['impostor_max']}"
        )
    print(f"{'variant':22} {'wall p50':>9} {'cpu p50':>9} {'wall p90':>9} {'wall p99':>9}  note")
    for kind in ("face", "plate"):
        for name, x in sp[kind].items():
            if not isinstance(x, dict) or name.startswith("pairs_"):
                continue
            note = f"{x['exact']}/{x['total']} exact" if "exact" in x else ""
            if "located" in x:
                note += f", {x['located']} settled by the located pass"
            label = f"{kind} {name}"
            print(
                f"{label:22} {x['wall_p50_ms']:9.2f} {x['cpu_p50_ms']:9.2f} {x['wall_p90_ms']:9.2f} "
                f"{x['wall_p99_ms']:9.2f}  {note}"
            )


def print_run_medians(runs: list[dict[str, Any]]) -> None:
    """Median over runs of each variant's per-run figures (the numbers quoted in bench/RESULTS.md)."""
    loads = ", ".join(str(r["load_average_1m"]) for r in runs)
    print(f"medians of {len(runs)} runs (load averages {loads})")
    print(f"{'variant':22} {'wall p50':>9} {'cpu p50':>9} {'wall p99':>9}  cpu p50 per run")
    for kind in ("face", "plate"):
        for name, x in runs[0][kind].items():
            if not isinstance(x, dict) or name.startswith("pairs_"):
                continue
            per = [r[kind][name] for r in runs]
            med = {k: statistics.median(p[k] for p in per) for k in ("wall_p50_ms", "cpu_p50_ms", "wall_p99_ms")}
            cpus = " / ".join(f"{p['cpu_p50_ms']:.1f}" for p in per)
            label = f"{kind} {name}"
            print(f"{label:22} {med['wall_p50_ms']:9.2f} {med['cpu_p50_ms']:9.2f} {med['wall_p99_ms']:9.2f}  {cpus}")


def print_table(res: dict[str, Any]) -> None:
    """Human-readable summary."""
    print_speedups(res["speedups"])
    print()
    rows = []
    for size in ("1000", "100000"):
        g = res["face"][f"gallery_{size}"]
        rows.append((f"face frame, gallery {int(size):,}", g["frame"]["p50_ms"], g["frame"]["p99_ms"], ""))
        m = g["match_only"]
        rows.append((f"  match only, {int(size):,}", m["p50_ms"], m["p99_ms"], ""))
    for key, label in (("frame_640x480", "plate 640x480 frame"), ("crop_220x70", "plate crop 220x70")):
        p = res["plate"][key]
        rows.append((label, p["p50_ms"], p["p99_ms"], f"{p['exact']}/{p['total']} exact"))
    print(f"{'measure':34} {'p50 ms':>9} {'p99 ms':>9}  note")
    for name, p50, p99, note in rows:
        print(f"{name:34} {p50:9.2f} {p99:9.2f}  {note}")
    print(f"\nload (worker pool on {os.cpu_count()} cores; default {default_workers()} threads)")
    print(f"{'load':18} {'frames/s':>9} {'lag p99 idle':>13} {'lag p99 load':>13} {'ratio':>7}")
    for load in res["load"]:
        for label in ("face", "plate"):
            x = load[label]
            name = f"{label}, {load['workers']} worker(s)"
            print(
                f"{name:18} {x['frames_per_s']:9.2f} {x['loop_lag_p99_ms_idle']:11.3f}ms "
                f"{x['loop_lag_p99_ms_loaded']:11.3f}ms {x['lag_ratio_p99_loaded_vs_idle']:7.2f}"
            )
    if "platform" in res:
        p = res["platform"]
        print(
            f"\nthrough the platform ({p['in_flight']} captures in flight, twin reports at {p['twin_rate_per_s']:g}/s)"
        )
        print(f"{'phase':10} {'decisions/s':>12} {'twin p50':>10} {'twin p99':>10} {'p99 ratio':>10}")
        for label in ("idle", "face", "plate"):
            x = p[label]
            rate = f"{x['decisions_per_s']:12.2f}" if "decisions_per_s" in x else f"{'-':>12}"
            ratio = f"{x['twin_p99_ratio_loaded_vs_idle']:10.2f}" if label != "idle" else f"{'-':>10}"
            print(f"{label:10} {rate} {x['twin_latency_p50_ms']:8.2f}ms {x['twin_latency_p99_ms']:8.2f}ms {ratio}")


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds, shorter load phase")
    ap.add_argument("--out", type=Path, default=Path("bench/results/vision.json"))
    ap.add_argument("--no-platform", action="store_true", help="skip the run through the real platform")
    ap.add_argument("--speedups-only", action="store_true", help="only the before/after table of the speed-ups")
    ap.add_argument("--runs", type=int, default=1, help="with --speedups-only: repeat the table this many times")
    ap.add_argument("--opencv-threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's own)")
    args = ap.parse_args(argv)
    rounds, plate_rounds, seconds = (20, 10, 4.0) if args.quick else (100, 40, 10.0)
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)

    frames = load_faces()
    res: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        },
        "speedups": bench_speedups(frames, 2 * rounds, plate_rounds),
    }
    if args.speedups_only:
        runs = [res["speedups"]]
        print_speedups(runs[0])
        for _ in range(args.runs - 1):
            print()
            runs.append(bench_speedups(frames, 2 * rounds, plate_rounds))
            print_speedups(runs[-1])
        if len(runs) > 1:
            print()
            print_run_medians(runs)
        return 0
    res["face"] = bench_faces(frames, rounds)
    res["plate"] = bench_plates(plate_rounds)
    face_jpegs = [encode_jpeg(f) for f in frames]
    prng = random.Random(5)
    plate_jpegs = [encode_jpeg(render_scene(random_plate(prng), prng)) for _ in range(8)]
    pools = sorted({default_workers(), 1}, reverse=True)
    res["load"] = [asyncio.run(bench_load(face_jpegs, plate_jpegs, seconds, w)) for w in pools]
    if not args.no_platform:
        res["platform"] = asyncio.run(bench_platform(face_jpegs, plate_jpegs, seconds))
    # other work on the machine skews every figure here: record how busy it was
    res["machine"]["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    print_table(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
