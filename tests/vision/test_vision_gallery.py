"""FaceGallery: cosine matching against enrolled templates (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from vision.gallery import FaceGallery, GalleryError, cosine_similarity


def _rand(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)


def test_best_match_known_and_unknown() -> None:
    g = FaceGallery(threshold=0.5)
    t = _rand(3)
    g.add_many(["alice", "bob", "carol"], t)
    m = g.best_match(t[1] * 3.0 + 0.01)
    assert m.subject == "bob" and m.known and m.score > 0.99
    stranger = -t.sum(axis=0)
    m2 = g.best_match(stranger)
    assert m2.subject is None and not m2.known
    assert m2.candidate in {"alice", "bob", "carol"}
    assert m2.score < 0.5


def test_empty_gallery_is_unknown() -> None:
    m = FaceGallery().best_match(_rand(1)[0])
    assert m.subject is None and m.score == -1.0


def test_remove_and_replace() -> None:
    g = FaceGallery(capacity=1)
    t = _rand(4, seed=1)
    for i, name in enumerate("abcd"):
        g.add(name, t[i])
    assert len(g) == 4
    assert g.remove("a") and not g.remove("a")
    assert len(g) == 3 and "a" not in g
    assert g.best_match(t[0]).subject != "a"
    assert g.best_match(t[3]).subject == "d"  # moved row still found
    g.add("b", t[0])  # re-enrol replaces
    assert len(g) == 3
    assert g.best_match(t[0]).subject == "b"


@pytest.mark.parametrize("bad", [np.zeros(128), np.ones(127), np.full(128, np.nan)])
def test_bad_templates_rejected(bad: np.ndarray) -> None:
    with pytest.raises(GalleryError) as info:
        FaceGallery().add("x", bad)
    assert info.value.subject == "x"


def test_threshold_validated() -> None:
    with pytest.raises(GalleryError):
        FaceGallery(threshold=1.5)


vectors = arrays(np.float32, 128, elements=st.floats(-1, 1, width=32)).filter(lambda v: float(np.linalg.norm(v)) > 1e-3)


@settings(max_examples=50, deadline=None)
@given(st.lists(vectors, min_size=1, max_size=20), vectors)
def test_best_match_agrees_with_brute_force(templates: list[np.ndarray], probe: np.ndarray) -> None:
    g = FaceGallery(threshold=0.2)
    for i, t in enumerate(templates):
        g.add(f"s{i}", t)
    sims = [cosine_similarity(t, probe) for t in templates]
    m = g.best_match(probe)
    assert m.score == pytest.approx(max(sims), abs=1e-4)
    assert (m.subject is not None) == (m.score >= 0.2)


def test_hundred_thousand_templates() -> None:
    g = FaceGallery()
    t = _rand(100_000, seed=2)
    g.add_many([f"p{i}" for i in range(100_000)], t)
    assert g.best_match(t[77_777]).subject == "p77777"
