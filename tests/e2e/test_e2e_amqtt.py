"""The scenarios that matter most for a single community, against the full platform on the embedded amqtt
broker (``broker.embedded: true``, the default deployment), ``power-cut`` included (it once failed
because amqtt 0.12 sent every reconnecting client the retained messages of all subscriptions;
``broker/embedded.py`` now limits that to the client's own).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sim_e2e_kit import FullPlatform, full_platform

from firmware_sim.scenarios import ScenarioParams
from firmware_sim.scenarios.library import SCENARIOS, visitor_pass_request

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def full(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FullPlatform]:
    async with full_platform(tmp_path_factory.mktemp("e2e-amqtt"), "amqtt") as fp:
        yield fp


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario_passes_on_the_embedded_broker(full: FullPlatform, name: str) -> None:
    params = None
    if name == "visitor-qr":
        host, door = visitor_pass_request(full.community)
        now = time.time()
        _, payload = await full.observed.store.passes.issue_pass(
            host, valid_from=now - 60, valid_until=now + 3600, doors=[door], max_uses=1, now=now
        )
        params = ScenarioParams(visitor_pass=payload)
    report = await full.play(name, params)
    assert report.ok, report.text()
    assert all(o.status == "met" for o in report.outcomes), report.text()
