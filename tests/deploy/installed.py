"""anfang installed as shipped: the wheel built from this checkout, installed into a fresh virtualenv
outside the checkout, as ``deploy/Dockerfile`` does (build stage ``pip wheel``, runtime ``pip install``).

Offline-capable: dependencies come from a wheelhouse (``.cache/wheels``, never committed) with
``pip install --no-index``; only when it lacks something is it filled once with ``pip download``
from the package registry. With neither the wheelhouse nor the registry the tests are skipped with
that reason — a packaging fault (a file missing from the wheel) always fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WHEELHOUSE = REPO / ".cache" / "wheels"
PIP = [sys.executable, "-m", "pip"]
# what a source copy leaves out, as deploy/Dockerfile.dockerignore does
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".cache",
    "data",
    "build",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    "bench",
)


@dataclass(frozen=True)
class Installed:
    """A virtualenv holding anfang from its wheel; ``home`` is a working folder outside the checkout."""

    venv: Path
    wheel: Path
    home: Path

    @property
    def anfang(self) -> str:
        return str(self.venv / "bin" / "anfang")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def env(self, **extra: str) -> dict[str, str]:
        """This machine's environment without project settings or paths into the checkout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANFANG_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))}
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env.update(extra)
        return env


def _pip(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PIP, *args], capture_output=True, text=True, timeout=timeout)


def _fill_wheelhouse(*requirements: str) -> None:
    WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    for stale in WHEELHOUSE.glob("anfang-*.whl"):  # pip would read an older build's dependencies from it
        stale.unlink()
    out = _pip("download", "-q", "-d", str(WHEELHOUSE), *requirements)
    for built in WHEELHOUSE.glob("anfang-*.whl"):  # only dependencies are kept there
        built.unlink()
    if out.returncode != 0:
        pytest.skip(f"wheelhouse {WHEELHOUSE} incomplete and the package registry unreachable: {out.stderr[-500:]}")


def build_wheel(out: Path) -> Path:
    """``pip wheel`` of a clean copy of the source (the checkout itself stays untouched)."""
    source = out / "src"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    args = ["wheel", "-q", "--no-deps", "--no-index", "--find-links", str(WHEELHOUSE), "-w", str(out), str(source)]
    built = _pip(*args)
    if built.returncode != 0:  # the build backend (setuptools) is not in the wheelhouse yet
        _fill_wheelhouse("setuptools>=68", "wheel")
        built = _pip(*args)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = out.glob("anfang-*.whl")
    return wheel


def install(wheel: Path, target: Path) -> Path:
    """A fresh virtualenv at ``target`` with the wheel and its dependencies (no index)."""
    venv.EnvBuilder(with_pip=False).create(target)
    args = [
        "--python",
        str(target / "bin" / "python"),
        "install",
        "-q",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(WHEELHOUSE),
        str(wheel),
    ]
    done = _pip(*args)
    if done.returncode != 0 and "No matching distribution" in done.stderr:
        _fill_wheelhouse(str(wheel))
        done = _pip(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    return target


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Built and installed once per test session (about 30 s with a filled wheelhouse)."""
    root = tmp_path_factory.mktemp("shipped")
    wheel = build_wheel(root / "dist")
    home = root / "home"
    home.mkdir()
    return Installed(install(wheel, root / "venv"), wheel, home)
