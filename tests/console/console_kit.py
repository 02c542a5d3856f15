"""The console in-process over the community test database (httpx ASGITransport), for fast tests.

Imported by name (``from console_kit import ...``); not a conftest.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from community_testkit import NOW, SITE, Community
from tortoise import Tortoise

from anfang.alarm_dispatch import PlatformAlarmDesk
from anfang.config import ConsoleSettings
from anfang.console import ConsoleServices, ConsoleStore
from anfang.web import create_platform_app
from community.api import CommunityServices
from registry.sql import Sql

PASSWORDS = {"staff": "staff-pass-1", "police": "police-pass-1"}


@dataclass
class Console:
    """The app, a clock the test moves, the services; ``client()`` makes a fresh browser-like client."""

    app: object
    services: ConsoleServices
    community: Community
    clock: list[float] = field(default_factory=lambda: [NOW])

    def client(self) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
        return httpx.AsyncClient(transport=transport, base_url="http://console.test", follow_redirects=False)

    async def signed_in(self, role: str) -> tuple[httpx.AsyncClient, str]:
        """A client signed in as ``p-staff`` or ``p-police``; with the CSRF token of its session."""
        client = self.client()
        r = await client.post("/console/login", data={"username": role, "password": PASSWORDS[role]})
        assert r.status_code == 303, r.text
        page = await client.get("/console/alarms")
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert found
        return client, found.group(1)


@pytest.fixture(name="console")
async def console_fixture(community: Community) -> AsyncIterator[Console]:
    clock = [NOW]
    settings = ConsoleSettings(idle_timeout_s=600, session_max_age_s=3600)
    store = ConsoleStore(
        Sql(Tortoise.get_connection("default")),
        SITE,
        idle_s=settings.idle_timeout_s,
        max_age_s=settings.session_max_age_s,
        link_ttl_s=settings.link_ttl_s,
    )
    services = CommunityServices(community.store, community.records, clock=lambda: clock[0])
    desk = PlatformAlarmDesk(community.alarms, lambda: None)
    console_services = ConsoleServices(store, services, desk, settings, clock=lambda: clock[0])
    for role, password in PASSWORDS.items():
        await store.add_user(role, f"p-{role}", password, now=NOW)
    app = create_platform_app(services, alarm_desk=desk, console=console_services)
    yield Console(app, console_services, community, clock)
