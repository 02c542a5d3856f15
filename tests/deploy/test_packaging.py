"""pyproject lists its packages by hand (two are mapped from top-level folders): none may be forgotten."""

from __future__ import annotations

import tomllib

from installed import REPO
from setuptools import find_namespace_packages


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    tops = {name.split(".")[0] for name in listed}
    found = {
        name
        for name in find_namespace_packages(str(REPO), include=[f"{top}*" for top in tops])
        if "__pycache__" not in name
    }
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    mapped = config["package-dir"]
    assert {mapped[name] for name in listed - found} == {"migrations", "dashboards"}
