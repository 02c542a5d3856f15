"""The full platform (rules, access, vision, telemetry) with the pilot community provisioned, for the
simulator's end-to-end tests (``tests/e2e``).

Imported by name (``from sim_e2e_kit import ...``); not a conftest.py.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from platform_kit import ObservedServices, Stack, make_settings, running_platform
from sim_registrars import people_registrars
from testkit import free_port

from anfang.config import Settings
from anfang.services import BUILTIN_RULES
from anfang.wiring import Registrar
from firmware_sim.community import Community, bundled_community_path, load_community
from firmware_sim.provision import provision
from firmware_sim.runner import ScenarioReport, run_scenario
from firmware_sim.scenarios import ScenarioParams
from firmware_sim.scenarios.library import build

#: The rules' ``for:`` windows in the tests (the built-in 60 s and 10 s would make the suite slow).
SHORT_FOR = {"elderly-left-fence": 3.0, "child-left-kindergarten": 2.0}
SCENARIO_SPEED = 600.0


def short_rules(folder: Path) -> Path:
    """A copy of the built-in rules whose ``for:`` windows are :data:`SHORT_FOR` (nothing else changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in sorted(BUILTIN_RULES.glob("*.yaml")):
        text = src.read_text(encoding="utf-8")
        for rule_id, seconds in SHORT_FOR.items():
            text = re.sub(
                rf"(- id: {re.escape(rule_id)}\n(?:(?!  - id:).*\n)*?    for: )\S+", rf"\g<1>{seconds:g}s", text
            )
        (folder / src.name).write_text(text, encoding="utf-8")
    return folder


Observed = ObservedServices


class _BatchRegistrar(Registrar):
    """Registers devices without reloading Mosquitto per device; :func:`full_platform` syncs once after."""


@dataclass
class FullPlatform:
    """The running platform, its broker, the provisioned pilot community and the device secrets."""

    stack: Stack
    observed: Observed
    community: Community
    secrets: dict[str, str]

    async def play(
        self, name: str, params: ScenarioParams | None = None, speed: float = SCENARIO_SPEED
    ) -> ScenarioReport:
        """``anfang sim run --scenario NAME --check`` against this platform (the function the CLI calls)."""
        return await run_scenario(
            build(name, self.community, params),
            self.community,
            host=self.stack.host,
            port=self.stack.port,
            secrets=self.secrets,
            operator=self.stack.operator_credentials,
            speed=speed,
            check=True,
        )


@asynccontextmanager
async def full_platform(
    tmp: Path, broker: str, configure: Callable[[Settings], None] | None = None
) -> AsyncIterator[FullPlatform]:
    """The platform with ``open_services`` on ``broker`` ('mosquitto' or 'amqtt'), the pilot provisioned:
    every device (secrets synced to the broker), people with cards and faces, vehicles, the watchlist.
    ``configure`` may change the settings first (e.g. where telemetry goes)."""
    community = load_community(bundled_community_path("youzheng"))
    settings = make_settings(tmp, embedded=broker == "amqtt", port=free_port())
    settings.rules_dir = short_rules(tmp / "rules")
    # scenarios are stamped with their own simulated day (2026-11-25): rules judge them on it (the
    # child leaving at 14:10 is outside the pick-up window whatever the time of the test run)
    settings.rules_event_skew_s = 1e10
    if configure is not None:
        configure(settings)
    observed = Observed()
    async with running_platform(tmp, broker, services_factory=observed.factory, settings=settings) as stack:
        if broker == "amqtt":
            # running_platform reports its own free port for amqtt even when the settings bind another
            stack.port = int(settings.broker.bind.rsplit(":", 1)[1])
        people, watch = people_registrars(community, observed.store, time.time)
        secrets = await provision(community, _BatchRegistrar(stack.platform.registry), people, watch)
        if stack.mosquitto is not None:  # the embedded broker checks the registry itself
            await stack.sync_broker()
            last = community.devices[-1].id
            await stack._wait_credentials(last, secrets[last])
        yield FullPlatform(stack, observed, community, secrets)
