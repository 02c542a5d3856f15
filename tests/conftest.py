"""Shared fixtures: the platform running in-process against a real broker (embedded amqtt or Mosquitto)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from platform_kit import Stack, running_platform

# Property tests judge behaviour, never speed: on a busy CI machine a slow example or slow input
# generation is the scheduler's doing, not a failure.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


@pytest.fixture(params=["amqtt", "mosquitto"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def platform_stack(tmp_path: Path, broker_kind: str) -> AsyncIterator[Stack]:
    async with running_platform(tmp_path, broker_kind) as stack:
        yield stack


@pytest.fixture(autouse=True)
def _api_on_a_port_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """``anfang run`` serves its HTTP API on 127.0.0.1:8080 by default; in tests every platform (and every
    ``anfang`` process a test starts) takes a free port instead, so parallel runs never share one."""
    monkeypatch.setenv("ANFANG_API_BIND", "127.0.0.1:0")
