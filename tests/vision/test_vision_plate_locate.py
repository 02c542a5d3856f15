"""The colour-and-edge plate localiser and the reader's pass that uses it (no text detector)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_cjk_font,
    fixture_plate_reader,
)

from vision.images import BgrImage
from vision.ocr import RecognizedLine, TextRecognizer
from vision.plate_locate import locate_plates
from vision.plate_synth import SceneParams, render_scene
from vision.plates import PlateReader


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_locates_blue_and_green_plates_with_their_colour(cjk_font: Path) -> None:
    for plate, color in (("赣G12345", "blue"), ("粤BD12345", "green")):
        frame = render_scene(plate, random.Random(4), SceneParams(), cjk_font)
        regions = locate_plates(frame)
        assert regions, plate
        region = regions[0]
        assert region.color == color and region.plate_length == len(plate)
        _, y, w, h = region.box
        # render_scene puts the plate's top edge just below the frame's centre, centred on the car
        assert 60 <= w <= 260 and 10 <= h <= 90, region.box
        assert 140 <= y <= 400, region.box


def test_nothing_located_in_a_plain_or_tiny_frame() -> None:
    assert locate_plates(np.full((480, 640, 3), 90, np.uint8)) == []
    blue = np.zeros((480, 640, 3), np.uint8)
    blue[:] = (190, 62, 16)  # plate blue, but no characters: no edges
    assert locate_plates(blue) == []
    assert locate_plates(np.zeros((1, 1, 3), np.uint8)) == []


def test_gate_frame_read_from_the_located_region(plate_reader: PlateReader, cjk_font: Path) -> None:
    frame = render_scene("赣G·12345", random.Random(0), SceneParams(brightness=(0.9, 1.0)), cjk_font)
    reading = plate_reader.read_located(frame)
    assert reading is not None and reading.plate == "赣G12345" and reading.color == "blue"
    assert reading.box is not None and _inside(reading.box[0], locate_plates(frame)[0].box)
    assert plate_reader.read(frame) == reading  # the detector passes are not needed


def test_located_pass_gives_way_when_nothing_is_located(plate_reader: PlateReader) -> None:
    assert plate_reader.read_located(np.full((480, 640, 3), 90, np.uint8)) is None


class _FixedReading(TextRecognizer):
    """A recogniser that reads every line as ``text`` (no model)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def read(self, lines: Sequence[BgrImage]) -> list[RecognizedLine]:
        return [RecognizedLine(self.text, 0.99, (0.99,) * len(self.text)) for _ in lines]


def test_located_reading_must_fit_the_region_colour(cjk_font: Path) -> None:
    green = render_scene("粤B·D12345", random.Random(1), SceneParams(brightness=(0.9, 1.0)), cjk_font)
    assert [r.color for r in locate_plates(green)][:1] == ["green"]
    reader = PlateReader()
    # a 7-character (blue) plate read off a green region: the cut lost a character; not taken
    reader._recognizer = _FixedReading("粤BD1234")
    assert reader.read_located(green) is None
    reader._recognizer = _FixedReading("粤BD12345")
    reading = reader.read_located(green)
    assert reading is not None and reading.plate == "粤BD12345" and reading.color == "green"
