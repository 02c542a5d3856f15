"""``anfang vision``: enrol faces, identify faces and read plates from image files.

Every command prints one JSON document on stdout. Exit codes: 0 done, 1 refused (enrolment
refused, no face/plate found), 2 unusable input (unreadable image or gallery file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vision.enroll import check_identity, pick_enrolment_face
from vision.face import FaceError, FacePipeline, FloatArray
from vision.gallery import DEFAULT_THRESHOLD
from vision.images import BgrImage, ImageError, decode_image
from vision.plate_text import match_plate
from vision.plates import PlateReader
from vision.store import GalleryFileError, gallery_path, load_gallery, save_gallery

app = typer.Typer(help="Face enrolment/identification and licence-plate reading.", no_args_is_help=True)

GalleryOpt = Annotated[Path, typer.Option("--gallery", help="Gallery file (or data directory holding gallery.json).")]
ThresholdOpt = Annotated[
    float | None, typer.Option("--threshold", help=f"Cosine match threshold (default {DEFAULT_THRESHOLD}).")
]


def _emit(doc: dict[str, Any]) -> None:
    typer.echo(json.dumps(doc, ensure_ascii=False))


def _fail(code: int, error: str, **extra: Any) -> typer.Exit:
    _emit({"ok": False, "error": error, **extra})
    return typer.Exit(code)


def _load_image(path: Path) -> BgrImage:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _fail(2, f"cannot read {path}: {exc.strerror}") from exc
    try:
        return decode_image(data, max_bytes=64 * 1024 * 1024)
    except ImageError as exc:
        raise _fail(2, f"{path}: {exc}") from exc


def _template(pipeline: FacePipeline, image: BgrImage, what: str) -> FloatArray:
    det = pick_enrolment_face(pipeline.detect(image))
    if det is None:
        raise _fail(1, f"no face found in the {what}")
    return pipeline.embed_detection(image, det)


@app.command()
def enroll(
    person: Annotated[str, typer.Argument(help="Subject id to enrol.")],
    photo: Annotated[Path, typer.Argument(help="Photo of the person (JPEG/PNG).")],
    id_photo: Annotated[Path, typer.Option("--id-photo", help="ID-card photo to check the photo against.")],
    gallery: GalleryOpt = Path("data"),
    threshold: ThresholdOpt = None,
) -> None:
    """Compute PERSON's face template from PHOTO, check it against the ID-card photo, and save it."""
    try:
        store = load_gallery(gallery, threshold)
    except GalleryFileError as exc:
        raise _fail(2, str(exc)) from exc
    pipeline = FacePipeline()
    try:
        live = _template(pipeline, _load_image(photo), "photo")
        card = _template(pipeline, _load_image(id_photo), "ID-card photo")
        enrolment = check_identity(person, live, card, store.threshold)
    except FaceError as exc:
        raise _fail(1, str(exc), subject=person) from exc
    store.add(person, enrolment.template)
    written = save_gallery(store, gallery)
    _emit({"ok": True, **enrolment.to_json(), "gallery": str(written), "enrolled": len(store)})


@app.command()
def identify(
    photo: Annotated[Path, typer.Argument(help="Photo to identify (JPEG/PNG).")],
    gallery: GalleryOpt = Path("data"),
    threshold: ThresholdOpt = None,
    max_faces: Annotated[int, typer.Option(help="Faces to report, largest first.")] = 10,
) -> None:
    """Identify every face in PHOTO against the enrolled gallery (subject null = unknown)."""
    try:
        store = load_gallery(gallery, threshold)
    except GalleryFileError as exc:
        raise _fail(2, str(exc)) from exc
    faces = FacePipeline().faces(_load_image(photo), max_faces=max_faces)
    if not faces:
        raise _fail(1, "no face found", faces=[])
    out = []
    for f in faces:
        m = store.best_match(f.embedding)
        out.append(
            {
                "subject": m.subject,
                "score": round(m.score, 4),
                "box": [round(v, 1) for v in f.detection.box],
                "detector_score": round(f.detection.score, 3),
            }
        )
    _emit({"ok": True, "gallery": str(gallery_path(gallery)), "threshold": store.threshold, "faces": out})


@app.command()
def plate(
    photo: Annotated[Path, typer.Argument(help="Gate-camera frame or plate crop (JPEG/PNG).")],
    registered: Annotated[
        list[str] | None, typer.Option("--registered", "-r", help="Registered plate to match (repeatable).")
    ] = None,
) -> None:
    """Read the licence plate in PHOTO and match it tolerantly against --registered plates."""
    reading = PlateReader().read(_load_image(photo))
    if reading is None:
        raise _fail(1, "no plate found")
    regs = registered or []
    _emit(
        {
            "ok": True,
            "text": reading.text,
            "plate": reading.plate,
            "color": reading.color,
            "score": round(reading.score, 4),
            "box": None if reading.box is None else [list(p) for p in reading.box],
            "matched": match_plate(reading.text, regs) if regs else None,
        }
    )
