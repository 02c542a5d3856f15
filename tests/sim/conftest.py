"""Fixtures for the simulator tests: a private Mosquitto per module, on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_sim.community import Community, load_community
from firmware_sim.mosquitto import Mosquitto

YOUZHENG = Path(__file__).resolve().parents[2] / "firmware_sim" / "communities" / "youzheng.yaml"


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    """A Mosquitto with ``allow_anonymous true`` on a free port (never the system 1883)."""
    with Mosquitto() as b:
        yield b


@pytest.fixture(scope="session")
def youzheng() -> Community:
    """The committed pilot community."""
    return load_community(YOUZHENG)
