"""Issue 15, must-show 1: after the pilot community's day in the simulator, nothing the platform wrote to
disk holds a credential, an ID number, a phone number or an image in the clear.

The full platform (rules, access control, vision, telemetry into its disk spool) runs against a real
Mosquitto with the pilot community provisioned. The simulator plays a whole day (faces, cards, plates,
tags, MAC sightings, telemetry); on top of it the day's residents get PINs and visitor passes that are
used at the doors, strangers and a watchlisted face are captured with JPEG and PNG images, and
``visitor-qr`` is played. Then the raw SQLite file (+ WAL), every file under
the data directory and the platform's log (DEBUG for the project's own loggers) are scanned for every PIN,
card number, QR payload, ID number and phone number of the day and for JPEG/PNG magic bytes.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from sim_e2e_kit import FullPlatform, full_platform
from testkit import free_port

from anfang.config import Settings
from firmware_sim.clock import SimClock
from firmware_sim.identity import face_embedding
from firmware_sim.runner import run_community, running_devices
from firmware_sim.scenarios import ScenarioParams
from firmware_sim.scenarios.library import visitor_pass_request

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DAY = 86400.0
SPEED = 1800.0  # the day in 48 s
MAGIC = {
    "JPEG": b"\xff\xd8\xff",
    "PNG": b"\x89PNG\r\n\x1a\n",
    "base64 JPEG": b"/9j/4AAQSkZJRg",  # JFIF, as a capture carries it in image_jpeg_b64
    "base64 PNG": b"iVBORw0KGgo",
}
WRONG_PIN = "55501234"  # typed at the door, nobody holds it
PROJECT_LOGGERS = ("anfang", "community", "privacy", "registry", "rules", "telemetry", "vision", "viewlib", "twins")


def _b64(ext: str, seed: int) -> str:
    """A small real JPEG or PNG (noise), base64 as a capture carries it."""
    noise = np.random.default_rng(seed).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, noise)
    assert ok
    return base64.b64encode(bytes(buf)).decode()


def _configure(data: Path) -> object:
    def configure(settings: Settings) -> None:
        # nothing listens there: every point goes to the disk spool in the data directory (the same line
        # protocol a telemetry file would hold)
        settings.telemetry.influx_url = f"http://127.0.0.1:{free_port()}"
        settings.telemetry.influx_api = "v2"
        settings.telemetry.influx_token = "test-token"

    return configure


@contextmanager
def _platform_log(path: Path) -> Iterator[None]:
    """Everything the platform logs, as ``anfang demo`` writes it to ``data/platform.log`` (DEBUG for ours)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in PROJECT_LOGGERS}
    root.addHandler(handler)
    for name in PROJECT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def _door_events(fp: FullPlatform, door: str, events: list[tuple[str, dict[str, object]]]) -> None:
    """``door``'s simulated firmware reads ``events`` (and answers the platform's ``open``); waits for the
    platform's decision on each."""
    clock = SimClock(time.time(), 1.0)
    async with running_devices(
        fp.community, [door], host=fp.stack.host, port=fp.stack.port, secrets=fp.secrets, clock=clock
    ) as fleet:
        while not fp.observed.decisions.empty():  # decisions of the day just played
            fp.observed.decisions.get_nowait()
        for name, data in events:
            fleet.clients[door].stimulate(f"events/{name}", data)
            await fp.observed.decision(door, timeout=30)


async def _issue_the_day(fp: FullPlatform) -> tuple[list[str], list[str], list[str]]:
    """PINs, visitor passes (QR payloads with visitor phones) and their use at the doors; returns
    (pins, qr payloads, visitor phones)."""
    store = fp.observed.store
    now = time.time()
    host, door = visitor_pass_request(fp.community)
    residents = [p for p in fp.community.people if p.role in ("owner", "family") and p.household][:4]
    pins = ["73064829", "84174732", "95284635", "06394538"]
    for person, pin in zip(residents, pins, strict=True):
        await store.credentials.add_credential(person.id, "pin", pin, now=now)
    phones = ["13912345678", "15887654321"]
    payloads = []
    for n, phone in enumerate(phones):
        _row, payload = await store.passes.issue_pass(
            host, valid_from=now - 60, valid_until=now + 3600, doors=[door], max_uses=2, now=now,
            visitor_name=f"访客{n}", visitor_phone=phone, plate=None,
        )  # fmt: skip
        payloads.append(payload)
    watched = fp.community.watchlist[0].id
    stranger = {"liveness": 0.95, "embedding": face_embedding("stranger-1"), "image_jpeg_b64": _b64(".jpg", 1)}
    wanted = {"liveness": 0.95, "embedding": face_embedding(watched), "image_jpeg_b64": _b64(".png", 2)}
    events: list[tuple[str, dict[str, object]]] = [("pin_entered", {"pin": pin}) for pin in [*pins, WRONG_PIN]]
    events += [("qr_scanned", {"payload": p}) for p in payloads]
    events += [("card_presented", {"card": "C9999"}), ("face_captured", stranger), ("face_captured", wanted)]
    await _door_events(fp, door, events)
    return [*pins, WRONG_PIN], payloads, phones


def _needles(fp: FullPlatform, pins: list[str], payloads: list[str], phones: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for p in fp.community.people:
        found[p.phone] = f"phone of {p.id}"
        found[p.id_number] = f"ID number of {p.id}"
        if p.card:
            found[p.card] = f"card of {p.id}"
    for w in fp.community.watchlist:
        found[w.id_number] = f"ID number of watchlist {w.id}"
    found["C9999"] = "an unknown card"
    found.update({pin: "a PIN" for pin in pins})
    found.update({phone: "a visitor's phone" for phone in phones})
    for payload in payloads:
        found[payload] = "a visitor QR payload"
        found[payload.rsplit(".", 1)[-1]] = "a visitor QR payload's signature"
    return found


def _alnum(byte: int) -> bool:
    return chr(byte).isascii() and chr(byte).isalnum()


def _occurrences(blob: bytes, needle: bytes) -> list[int]:
    """Where ``needle`` stands as a value of its own: not inside a longer run of letters and digits (a
    timestamp's digits, a base64 ciphertext or hex hash can hold a short number by chance; a value written
    in the clear is delimited by quotes, spaces, commas or the record's bytes)."""
    found, at = [], blob.find(needle)
    while at >= 0:
        before = blob[at - 1] if at > 0 else 0
        end = at + len(needle)
        after = blob[end] if end < len(blob) else 0
        if not (_alnum(before) and _alnum(needle[0])) and not (_alnum(after) and _alnum(needle[-1])):
            found.append(at)
        at = blob.find(needle, at + 1)
    return found


def _hits(files: list[Path], needles: dict[str, str]) -> list[str]:
    out = []
    for path in files:
        blob = path.read_bytes()
        for needle, what in needles.items():
            for encoded in {needle.encode(), needle.encode("utf-16-le")}:
                for at in _occurrences(blob, encoded)[:1]:
                    out.append(f"{what} in {path.name} at {at}: {blob[max(0, at - 60) : at + 60]!r}")
        for kind, magic in MAGIC.items():
            at = blob.find(magic)
            if at >= 0:
                out.append(f"{kind} magic in {path.name} at {at}: {blob[max(0, at - 60) : at + 60]!r}")
    return out


async def test_a_pilot_day_leaves_no_credential_identity_or_image_on_disk(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    log_file = data / "platform.log"
    with _platform_log(log_file):
        async with full_platform(tmp_path, "mosquitto", _configure(data)) as fp:
            now = time.localtime()
            start = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, 6, 0, 0, 0, 0, -1))
            played = await run_community(
                fp.community, host=fp.stack.host, port=fp.stack.port, secrets=fp.secrets,
                start=start, speed=SPEED, duration=DAY, seed=15,
            )  # fmt: skip
            assert played > 10_000
            pins, payloads, phones = await _issue_the_day(fp)
            host, _door = visitor_pass_request(fp.community)
            _row, single = await fp.observed.store.passes.issue_pass(
                host, valid_from=time.time() - 60, valid_until=time.time() + 3600, doors=None, max_uses=1,
                now=time.time(),
            )  # fmt: skip
            payloads.append(single)
            report = await fp.play("visitor-qr", ScenarioParams(visitor_pass=single))
            assert report.ok, report.text()
            # a normal day fires no rule (issue 17): an incident whose rule audits writes the file the scan covers
            forced = await fp.play("child-leaves-kindergarten")
            assert forced.ok, forced.text()
    files = sorted(p for p in data.rglob("*") if p.is_file())
    names = {p.name for p in files}
    # (rule-audit.jsonl exists only once a rule audits something: the pilot's normal day raises nothing)
    assert {"anfang.db", "platform.log"} <= names, names
    assert any("spool" in str(p) for p in files), names
    assert log_file.stat().st_size > 0
    needles = _needles(fp, pins, payloads, phones)
    planted = tmp_path / "planted"
    planted.write_bytes(b'{"pin": "' + pins[0].encode() + b'", "p": "' + payloads[0].encode() + b'"}' + MAGIC["PNG"])
    planted_by_chance = tmp_path / "by-chance"
    planted_by_chance.write_bytes(b"v1:u59q+gXruC0422egW33Wb 1796" + pins[0].encode() + b"592.8775885")
    assert len(_hits([planted], needles)) == 4, "the scan finds what it looks for"
    assert _hits([planted_by_chance], needles) == [], "and not a value's characters inside a longer token"
    hits = _hits(files, needles)
    with sqlite3.connect(data / "anfang.db") as conn:
        refs = conn.execute("SELECT credential_kind, credential_ref FROM access_decisions").fetchall()
    kinds = {kind for kind, _ref in refs}
    assert {"card", "pin", "qr", "face", "plate"} <= kinds, kinds
    assert all(ref.startswith("card:") for kind, ref in refs if kind == "card"), "cards only as keyed references"
    assert all(ref in (None, "****") for kind, ref in refs if kind == "pin")
    assert not hits, "\n".join(hits[:40]) + f"\n... {len(hits)} hits in all"
