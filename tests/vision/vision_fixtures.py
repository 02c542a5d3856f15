"""Shared fixtures for the vision tests (imported by name: a conftest.py would collide with other areas').

Real face photos fetched at set-up time, a CJK font, models loaded once per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.face import FacePipeline
from vision.plate_synth import FontNotFoundError, find_cjk_font
from vision.plates import PlateReader

REPO = Path(__file__).resolve().parents[2]
FACE_DIR = REPO / ".cache" / "testdata" / "faces"
FETCH = "bash scripts/fetch-vision-testdata.sh"


@pytest.fixture(scope="session", name="face_dir")
def fixture_face_dir() -> Path:
    """Directory of the fetched face photos (skips, naming the set-up step, when absent)."""
    if not (FACE_DIR / "obama.jpg").is_file() or not (FACE_DIR / "t1.jpg").is_file():
        pytest.skip(f"face test photos missing: run `{FETCH}` first")
    return FACE_DIR


@pytest.fixture(scope="session", name="load_face")
def fixture_load_face(face_dir: Path) -> Callable[[str], np.ndarray]:
    """Loads a fetched face photo as a BGR array."""

    def load(name: str) -> np.ndarray:
        img = cv2.imread(str(face_dir / name), cv2.IMREAD_COLOR)
        assert img is not None, name
        return img

    return load


@pytest.fixture(scope="session", name="cjk_font")
def fixture_cjk_font() -> Path:
    """An installed CJK font for rendering plates."""
    try:
        return find_cjk_font()
    except FontNotFoundError:
        pytest.skip(f"no CJK font: apt-get install fonts-wqy-microhei (or run `{FETCH}` as root)")


@pytest.fixture(scope="session", name="face_pipeline")
def fixture_face_pipeline() -> Iterator[FacePipeline]:
    pipeline = FacePipeline()
    pipeline.warm_up()
    yield pipeline


@pytest.fixture(scope="session", name="plate_reader")
def fixture_plate_reader() -> Iterator[PlateReader]:
    reader = PlateReader()
    reader.warm_up()
    yield reader
