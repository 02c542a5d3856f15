"""Key handling (issue 15): key files must be private, the database file is created 0600."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from community.crypto import CryptoError, load_master_key
from registry.migrate import apply_migrations

ANFANG = str(Path(sys.executable).parent / "anfang")


def _key_file(path: Path, mode: int) -> Path:
    path.write_text(base64.b64encode(b"m" * 32).decode() + "\n")
    os.chmod(path, mode)
    return path


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    private = _key_file(tmp_path / "private.key", 0o600)
    assert load_master_key(None, tmp_path / "data", private) == b"m" * 32
    assert not (tmp_path / "data" / "secret.key").exists(), "a configured key file is not copied beside the data"
    shared = _key_file(tmp_path / "shared.key", 0o644)
    with pytest.raises(CryptoError, match="readable by others"):
        load_master_key(None, tmp_path / "data", shared)
    with pytest.raises(CryptoError, match="does not exist"):
        load_master_key(None, tmp_path / "data", tmp_path / "missing.key")
    (tmp_path / "data").mkdir()
    _key_file(tmp_path / "data" / "secret.key", 0o644)
    with pytest.raises(CryptoError, match="readable by others"):
        load_master_key(None, tmp_path / "data")


async def test_the_database_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "data" / "anfang.db"
    await apply_migrations(f"sqlite://{db}")
    for path in db.parent.glob("anfang.db*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path.name}: {path.stat().st_mode & 0o777:o}"
    os.chmod(db, 0o644)
    await apply_migrations(f"sqlite://{db}")
    assert db.stat().st_mode & 0o777 == 0o600, "an existing file others could read is made private"


def test_anfang_run_refuses_to_start_with_a_shared_key_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_SECRET_KEY_FILE": str(_key_file(tmp_path / "shared.key", 0o644)),
            "ANFANG_BROKER_BIND": "127.0.0.1:0",
            "ANFANG_API_BIND": "off",
        }
    )
    done = subprocess.run([ANFANG, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "readable by others" in done.stderr and "chmod 600" in done.stderr
