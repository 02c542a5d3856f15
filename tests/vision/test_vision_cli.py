"""`anfang vision` commands, run through Typer's CliRunner."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
from typer.testing import CliRunner
from vision_fixtures import (  # noqa: F401  (pytest fixtures, registered by name)
    fixture_cjk_font,
    fixture_face_dir,
)

from vision.cli import app
from vision.plate_synth import SceneParams, render_scene

runner = CliRunner()


def _json(output: str) -> dict[str, object]:
    line = [ln for ln in output.splitlines() if ln.startswith("{")][-1]
    doc: dict[str, object] = json.loads(line)
    return doc


def test_enroll_identify_roundtrip(face_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = runner.invoke(
        app,
        [
            "enroll",
            "obama",
            str(face_dir / "obama.jpg"),
            "--id-photo",
            str(face_dir / "obama2.jpg"),
            "--gallery",
            str(data),
        ],
    )
    assert r.exit_code == 0, r.output
    doc = _json(r.output)
    assert doc["ok"] is True and len(doc["template"]) == 128  # type: ignore[arg-type]
    assert (data / "gallery.json").is_file()
    assert b"JFIF" not in (data / "gallery.json").read_bytes()  # templates, never photos

    r = runner.invoke(app, ["identify", str(face_dir / "obama3.jpg"), "--gallery", str(data)])
    assert r.exit_code == 0, r.output
    faces = _json(r.output)["faces"]
    assert faces[0]["subject"] == "obama"  # type: ignore[index]

    r = runner.invoke(app, ["identify", str(face_dir / "biden.jpg"), "--gallery", str(data)])
    assert _json(r.output)["faces"][0]["subject"] is None  # type: ignore[index]


def test_enroll_refused_for_someone_else_id_card(face_dir: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "g.json"
    r = runner.invoke(
        app,
        [
            "enroll",
            "mallory",
            str(face_dir / "biden.jpg"),
            "--id-photo",
            str(face_dir / "obama.jpg"),
            "--gallery",
            str(gallery),
        ],
    )
    assert r.exit_code == 1
    doc = _json(r.output)
    assert doc["ok"] is False and "does not match the ID-card photo" in str(doc["error"])
    assert not gallery.exists()


def test_unreadable_inputs_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"hello")
    r = runner.invoke(app, ["identify", str(junk), "--gallery", str(tmp_path)])
    assert r.exit_code == 2 and "cannot decode" in r.output
    r = runner.invoke(app, ["plate", str(tmp_path / "missing.jpg")])
    assert r.exit_code == 2
    bad_gallery = tmp_path / "bad.json"
    bad_gallery.write_text("{}")
    r = runner.invoke(app, ["identify", str(junk), "--gallery", str(bad_gallery)])
    assert r.exit_code == 2 and "version-1" in r.output


def test_plate_command(cjk_font: Path, tmp_path: Path) -> None:
    frame = render_scene("赣G12345", random.Random(7), SceneParams(brightness=(0.8, 1.0)), cjk_font)
    path = tmp_path / "gate.jpg"
    cv2.imwrite(str(path), frame)
    r = runner.invoke(app, ["plate", str(path), "-r", "赣G12345", "-r", "粤B54321"])
    assert r.exit_code == 0, r.output
    doc = _json(r.output)
    assert doc["plate"] == "赣G12345" and doc["color"] == "blue" and doc["matched"] == "赣G12345"
