"""Shared fixtures: the platform running in-process against a real broker (embedded amqtt or Mosquitto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from platform_kit import Stack, running_platform


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def platform_stack(tmp_path: Path, broker_kind: str) -> AsyncIterator[Stack]:
    async with running_platform(tmp_path, broker_kind) as stack:
        yield stack
