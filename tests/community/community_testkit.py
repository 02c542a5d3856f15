"""Shared helpers and fixtures for community tests (import the fixtures you use: ``db``, ``community``).

Not a conftest.py: a second ``conftest`` module would shadow ``tests/conftest.py`` for ``from conftest import``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tortoise import Tortoise

from community.crypto import FieldCipher
from community.db import init_db
from community.handler import AccessConfig, AccessHandler
from community.importer import ImportReport, import_community
from community.records import AccessRecords
from community.snapshot import CHINA_TZ
from community.store import CommunityStore
from registry.alarm_store import DatabaseAlarmStore
from registry.alarms import AlarmManager
from twins.hooks import DeviceEvent

SITE = "testsite"
KEY = bytes(range(32))
# 2026-11-25 10:00 China time: inside the tenant's lease.
NOW = dt.datetime(2026, 11, 25, 10, 0, tzinfo=CHINA_TZ).timestamp()
LEASE_END_DAY = dt.date(2027, 8, 31)


def template(seed: int) -> list[float]:
    """A deterministic synthetic 128-d unit face template."""
    v = np.random.default_rng(seed).normal(size=128)
    return [float(x) for x in v / np.linalg.norm(v)]


def noisy(t: list[float], seed: int, amount: float = 0.3) -> list[float]:
    """The same face captured again: the template plus noise (still well above the match threshold)."""
    v = np.asarray(t) + amount * np.random.default_rng(seed).normal(size=128) / np.sqrt(128)
    return [float(x) for x in v / np.linalg.norm(v)]


def community_data() -> dict[str, Any]:
    """A two-building community in the community-file format."""
    return {
        "site": SITE,
        "buildings": [{"id": "b1", "name": "1栋", "units": 1, "floors": 6}, {"id": "b2", "name": "2栋", "units": 1}],
        "households": [
            {"id": "h1", "building": "b1", "unit": 1, "room": "101"},
            {"id": "h2", "building": "b2", "unit": 1, "room": "201"},
            {"id": "h3", "building": "b1", "unit": 1, "room": "102"},
        ],
        "devices": [
            {"id": "gate-north", "kind": "vehicle_gate", "name": "北门道闸", "cameras": ["cam-north-1"]},
            {"id": "cam-north-1", "kind": "camera", "name": "北门抓拍1", "gate": "gate-north"},
            {"id": "gate-south", "kind": "vehicle_gate", "name": "南门道闸"},
            {"id": "door-b1-u1", "kind": "door_lock", "name": "1栋1单元门禁", "building": "b1", "unit": 1},
            {"id": "door-b2-u1", "kind": "door_lock", "name": "2栋1单元门禁", "building": "b2", "unit": 1},
            {"id": "cam-park", "kind": "camera", "name": "停车场"},
            {"id": "rfid-01", "kind": "rfid_reader"},
        ],
        "people": [
            {
                "id": "p-owner",
                "name": "张伟",
                "household": "h1",
                "role": "owner",
                "phone": "13800000001",
                "id_number": "11010519491231002X",
                "face_consent": True,
                "card": "C0001",
                "face_template": template(1),
            },
            {
                "id": "p-b2",
                "name": "李娜",
                "household": "h2",
                "role": "owner",
                "phone": "13800000002",
                "id_number": "440524188001010014",
                "face_consent": True,
                "face_template": template(2),
            },
            {
                "id": "p-tenant",
                "name": "王芳",
                "household": "h3",
                "role": "tenant",
                "phone": "13800000003",
                "face_consent": True,
                "card": "C0003",
                "face_template": template(3),
                "lease": {"start": "2026-09-01", "end": LEASE_END_DAY.isoformat()},
            },
            {
                "id": "p-noface",
                "name": "赵强",
                "household": "h1",
                "role": "family",
                "phone": "13800000004",
                "face_consent": False,
                "face_template": template(4),
            },
            {
                "id": "p-staff",
                "name": "物业",
                "household": None,
                "role": "staff",
                "phone": "13800000005",
                "face_consent": False,
                "card": "S0001",
            },
            {
                "id": "p-police",
                "name": "民警",
                "household": None,
                "role": "police",
                "phone": "13800000006",
                "face_consent": False,
                "card": "P0001",
            },
        ],
        "vehicles": [{"plate": "赣G12345", "owner": "p-owner"}, {"plate": "赣GD12345", "owner": "p-tenant"}],
    }


@dataclass
class Community:
    """A loaded test community."""

    store: CommunityStore
    records: AccessRecords
    cipher: FieldCipher
    report: ImportReport
    db_path: Path
    platform_events: list[DeviceEvent]

    @property
    def alarms(self) -> AlarmManager:
        """The site's alarm system, on the test database."""
        return AlarmManager(SITE, DatabaseAlarmStore(Tortoise.get_connection("default"), SITE))

    def handler(self, **config: Any) -> AccessHandler:
        """An AccessHandler over this community, platform events collected in ``platform_events``."""

        async def sink(ev: DeviceEvent) -> None:
            self.platform_events.append(ev)

        return AccessHandler(
            self.store, self.records, AccessConfig(site=SITE, **config), on_platform_event=sink, alarms=self.alarms
        )


@pytest.fixture(name="db")
async def db_fixture(tmp_path: Path) -> AsyncIterator[Path]:
    """A migrated, empty SQLite database; Tortoise initialised on it."""
    path = tmp_path / "t.db"
    await init_db(f"sqlite://{path}")
    yield path
    await Tortoise.close_connections()


@pytest.fixture(name="community")
async def community_fixture(db: Path) -> Community:
    """The two-building community imported into a fresh database."""
    cipher = FieldCipher(KEY)
    store = CommunityStore(cipher, SITE)
    report = await import_community(community_data(), store, now=NOW)
    return Community(store, AccessRecords(SITE), cipher, report, db, [])
