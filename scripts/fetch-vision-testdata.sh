#!/usr/bin/env bash
# Fetch the real face photos used by tests/vision from packages on PyPI (nothing is committed).
#   face_recognition==1.3.0 sdist : tests/test_images/{obama*.jpg,biden.jpg}
#   insightface==2.1 wheel        : insightface/data/images/{t1.jpg,Tom_Hanks_54745.png}
# Images land in .cache/testdata/faces/ (git-ignored). Idempotent: skips when already there.
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

if [ -f "$DEST/obama.jpg" ] && [ -f "$DEST/biden.jpg" ] && [ -f "$DEST/t1.jpg" ] && [ -f "$DEST/Tom_Hanks_54745.png" ]; then
    echo "vision test data already in $DEST"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
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
