"""Gallery file persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vision.gallery import FaceGallery
from vision.store import GalleryFileError, gallery_path, load_gallery, save_gallery


def test_roundtrip_keeps_templates_and_threshold(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    g = FaceGallery(threshold=0.4)
    t = rng.standard_normal((3, 128)).astype(np.float32)
    g.add_many(["张三", "li", "wang"], t)
    written = save_gallery(g, tmp_path / "data")
    assert written == tmp_path / "data" / "gallery.json"
    back = load_gallery(tmp_path / "data")
    assert back.threshold == 0.4 and back.subjects == g.subjects
    assert back.best_match(t[0]).subject == "张三"
    assert load_gallery(tmp_path / "data", threshold=0.9).threshold == 0.9
    assert len(load_gallery(tmp_path / "nowhere")) == 0
    assert gallery_path(tmp_path / "x.json") == tmp_path / "x.json"


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", json.dumps({"version": 1, "templates": {"a": {"template": "AAAA"}}})],
)
def test_corrupt_files_are_reported(tmp_path: Path, content: str) -> None:
    f = tmp_path / "g.json"
    f.write_text(content)
    with pytest.raises(GalleryFileError) as info:
        load_gallery(f)
    assert info.value.path == f
