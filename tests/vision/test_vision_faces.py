"""Face pipeline accuracy on real photos: every same-person pair matches, every other pair does not."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_face_dir,
    fixture_face_pipeline,
    fixture_load_face,
)

from vision.face import FAST_DETECT_SIDE, FAST_MIN_FACE, FacePipeline, NoFaceError, YuNetDetector, align_face
from vision.gallery import DEFAULT_THRESHOLD, FaceGallery, cosine_similarity
from vision.models import find_face_models

Loader = Callable[[str], np.ndarray]

OBAMA = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]


@pytest.fixture(scope="module")
def templates(face_pipeline: FacePipeline, load_face: Loader) -> dict[str, tuple[str, np.ndarray]]:
    """label -> (person, template) for every face in the test set."""
    out: dict[str, tuple[str, np.ndarray]] = {}
    for name in OBAMA:
        out[name] = ("obama", face_pipeline.largest_face(load_face(name)).embedding)
    dark_flipped = (cv2.flip(load_face("obama.jpg"), 1).astype(np.float32) * 0.35).astype(np.uint8)
    out["obama-dark-mirrored"] = ("obama", face_pipeline.largest_face(dark_flipped).embedding)
    small = np.asarray(
        cv2.resize(load_face("obama2.jpg"), None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA), np.uint8
    )
    out["obama2-small"] = ("obama", face_pipeline.largest_face(small).embedding)
    out["biden.jpg"] = ("biden", face_pipeline.largest_face(load_face("biden.jpg")).embedding)
    out["hanks"] = ("hanks", face_pipeline.largest_face(load_face("Tom_Hanks_54745.png")).embedding)
    group = face_pipeline.faces(load_face("t1.jpg"))
    assert len(group) == 6, "the insightface group photo shows 6 people"
    for i, f in enumerate(group):
        out[f"t1-person{i}"] = (f"t1-person{i}", f.embedding)
    return out


def test_every_same_person_pair_matches(templates: dict[str, tuple[str, np.ndarray]]) -> None:
    genuine = [
        (a, b, cosine_similarity(ta, tb))
        for (a, (pa, ta)), (b, (pb, tb)) in itertools.combinations(templates.items(), 2)
        if pa == pb
    ]
    assert len(genuine) == 21  # 7 obama images
    failures = [g for g in genuine if g[2] < DEFAULT_THRESHOLD]
    assert not failures, failures


def test_every_different_person_pair_is_rejected(templates: dict[str, tuple[str, np.ndarray]]) -> None:
    impostors = [
        (a, b, cosine_similarity(ta, tb))
        for (a, (pa, ta)), (b, (pb, tb)) in itertools.combinations(templates.items(), 2)
        if pa != pb
    ]
    assert len(impostors) == 84  # 7 obama x 8 others + 8 choose 2
    failures = [i for i in impostors if i[2] >= DEFAULT_THRESHOLD]
    assert not failures, failures


def test_gallery_identifies_enrolled_and_reports_unknown(
    templates: dict[str, tuple[str, np.ndarray]], face_pipeline: FacePipeline, load_face: Loader
) -> None:
    gallery = FaceGallery()
    gallery.add("obama", templates["obama.jpg"][1])
    gallery.add("biden", templates["biden.jpg"][1])
    gallery.add("hanks", templates["hanks"][1])
    for i in range(3):
        gallery.add(f"t1-person{i}", templates[f"t1-person{i}"][1])
    # Enrolled people in other photos are recognised.
    for name in ["obama3.jpg", "obama_partial_face2.jpg"]:
        m = gallery.best_match(face_pipeline.largest_face(load_face(name)).embedding)
        assert m.subject == "obama" and m.score > 0.5
    # People never enrolled are unknown, even in a crowd.
    for i in range(3, 6):
        m = gallery.best_match(templates[f"t1-person{i}"][1])
        assert m.subject is None and m.score < DEFAULT_THRESHOLD


def test_landmarks_land_on_the_template(face_pipeline: FacePipeline, load_face: Loader) -> None:
    img = load_face("obama.jpg")
    det = face_pipeline.detect(img)[0]
    x, y, w, h = det.box
    eyes, nose = det.landmarks[:2], det.landmarks[2]
    assert x < nose[0] < x + w and y < nose[1] < y + h
    assert eyes[0][0] < eyes[1][0]  # image-left eye first
    aligned = align_face(img, det.landmarks)
    assert aligned.shape == (112, 112, 3)
    # The aligned crop is itself a detectable face.
    border = cv2.copyMakeBorder(aligned, 56, 56, 56, 56, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    padded = np.asarray(border, np.uint8)
    assert face_pipeline.detect(padded)


def test_small_face_is_looked_for_again_only_around_itself(face_pipeline: FacePipeline, load_face: Loader) -> None:
    # obama3's face is ~39 px wide at 320 px: below FAST_MIN_FACE, so it is detected again at full
    # detail, but only in the region around it; that finds the full-frame detection's face.
    image = load_face("obama3.jpg")
    s = 640 / max(image.shape[:2])
    frame = np.asarray(cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA), np.uint8)
    detector = YuNetDetector(find_face_models()[0])
    coarse = detector.detect(frame, FAST_DETECT_SIDE)[0]
    assert coarse.box[2] * FAST_DETECT_SIDE / 640 < FAST_MIN_FACE
    full = detector.detect(frame)[0]
    near = detector.detect_near(frame, coarse.box)[0]
    assert np.allclose(near.box, full.box, atol=0.1 * full.box[2]), (near.box, full.box)
    assert np.abs(near.landmarks - full.landmarks).max() < 0.05 * full.box[2]
    door = face_pipeline.largest_face(frame).embedding
    assert cosine_similarity(door, face_pipeline.embed_detection(frame, full)) > 0.95
    # A box at the frame's edge only searches what is inside the frame; an empty region finds nothing.
    assert detector.detect_near(frame, (-50.0, -50.0, 10.0, 10.0)) == []


def test_no_face_is_an_error(face_pipeline: FacePipeline) -> None:
    blank = np.full((480, 640, 3), 127, np.uint8)
    assert face_pipeline.faces(blank) == []
    with pytest.raises(NoFaceError) as info:
        face_pipeline.largest_face(blank)
    assert (info.value.width, info.value.height) == (640, 480)


def test_door_path_stays_in_the_enrolment_template_space(face_pipeline: FacePipeline, load_face: Loader) -> None:
    # Enrolment templates are made at 640 px; the door path (faces looked for at 320 px first, SFace in
    # OpenCV when it agrees) must still match them as well as a second photo of the person would.
    reference = FacePipeline(backend="onnxruntime")
    enrolled = {}
    for name in OBAMA:
        image = load_face(name)
        det = reference.detect(image)[0]
        enrolled[name] = reference.embed_detection(image, det)
        # Same detection, other runtime: the very same template.
        assert cosine_similarity(face_pipeline.embed_detection(image, det), enrolled[name]) > 0.9999
        assert cosine_similarity(face_pipeline.largest_face(image).embedding, enrolled[name]) > 0.9, name
    for a, b in itertools.permutations(OBAMA, 2):
        door = face_pipeline.largest_face(load_face(b)).embedding
        assert cosine_similarity(enrolled[a], door) >= DEFAULT_THRESHOLD, (a, b)
    assert reference.backend == "onnxruntime" and face_pipeline.backend in {"opencv", "onnxruntime"}
    with pytest.raises(ValueError, match="backend"):
        FacePipeline(backend="tensorflow")
