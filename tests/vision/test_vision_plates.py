"""Plate reading on rendered gate-camera scenes (blur, noise, perspective, low light)."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_cjk_font,
    fixture_plate_reader,
)

from vision.plate_synth import SceneParams, random_plate, render_plate, render_scene
from vision.plate_text import CONFIDENT_CHAR, match_plate, match_read_plate, normalize_plate
from vision.plates import PlateReader, choose_plate


def _twenty_plates() -> list[str]:
    rng = random.Random(6)
    plates = ["赣G12345"]
    plates += [random_plate(rng, green=(i % 4 == 3)) for i in range(1, 20)]
    return plates


def test_reads_19_of_20_plates_at_gate_distance(plate_reader: PlateReader, cjk_font: Path) -> None:
    rng = random.Random(2026)
    plates = _twenty_plates()
    assert sum(len(p) == 8 for p in plates) == 5  # blue and green new-energy plates
    misses = []
    for plate in plates:
        frame = render_scene(plate, rng, SceneParams(), cjk_font)
        reading = plate_reader.read(frame)
        if reading is None or reading.plate != plate:
            misses.append((plate, reading))
    assert len(misses) <= 1, misses


def test_plate_zero_reads_with_colour(plate_reader: PlateReader, cjk_font: Path) -> None:
    frame = render_scene("赣G·12345", random.Random(0), SceneParams(brightness=(0.9, 1.0)), cjk_font)
    reading = plate_reader.read(frame)
    assert reading is not None and reading.plate == "赣G12345" and reading.color == "blue"
    assert reading.box is not None and len(reading.box) == 4
    green = render_scene("粤B·D12345", random.Random(1), SceneParams(brightness=(0.9, 1.0)), cjk_font)
    reading = plate_reader.read(green)
    assert reading is not None and reading.plate == "粤BD12345" and reading.color == "green"


def test_another_provinces_car_read_surely_never_opens_for_the_registered_one(
    plate_reader: PlateReader, cjk_font: Path
) -> None:
    registered = ["赣G12345", "赣G12346", "粤B54321", "京A12345", "沪GD12345"]
    # A car from 粤 with the same tail as a registered 赣 car: the reader is sure of every character.
    frame = render_scene("粤G12345", random.Random(3), SceneParams(brightness=(0.8, 1.0)), cjk_font)
    reading = plate_reader.read(frame)
    assert reading is not None and reading.text == "粤G12345"
    assert reading.char_scores is not None and len(reading.char_scores) == len(reading.text)
    assert reading.char_scores[0] >= CONFIDENT_CHAR
    assert match_read_plate(reading.text, registered, reading.char_scores, reading.score) is None
    # Had it been unsure of the province only, the registered car would be the one (and reviewed).
    unsure = (0.4, *reading.char_scores[1:])
    found = match_read_plate(reading.text, registered, unsure, reading.score)
    assert found is not None and (found.plate, found.tolerant) == ("赣G12345", True)
    # ... unless a second registered car shares the rest of the plate: refusing is the only safe answer.
    assert match_read_plate(reading.text, [*registered, "湘G12345"], unsure, reading.score) is None
    # A car that is not registered at all never matches a registered one.
    other = render_scene("粤G12354", random.Random(4), SceneParams(brightness=(0.8, 1.0)), cjk_font)
    other_reading = plate_reader.read(other)
    assert other_reading is not None
    assert match_read_plate(other_reading.text, registered, other_reading.char_scores, other_reading.score) is None


def test_tight_crop_from_smart_camera(plate_reader: PlateReader, cjk_font: Path) -> None:
    crop = np.asarray(cv2.resize(render_plate("浙AD8F21Q", cjk_font), (240, 70)), np.uint8)
    reading = plate_reader.read(crop)
    assert reading is not None and reading.plate == normalize_plate("浙A·D8F21Q")
    assert reading.box is None  # read whole, without the detector


def test_no_plate_in_empty_scene(plate_reader: PlateReader) -> None:
    assert plate_reader.read(np.full((480, 640, 3), 90, np.uint8)) is None


def test_choose_plate_prefers_valid_then_plate_like() -> None:
    lines = [("出口", 0.99, None), ("G·12345", 0.95, None), ("赣G·12345", 0.9, None)]
    best = choose_plate(lines)
    assert best is not None and best.plate == "赣G12345"
    partial = choose_plate([("出口", 0.99, None), ("?G·12345", 0.9, None)])
    assert partial is not None and partial.plate is None and partial.text == "?G12345"
    assert match_plate(partial.text, ["赣G12345"]) == "赣G12345"
    assert choose_plate([("WELCOME", 0.9, None)]) is None
