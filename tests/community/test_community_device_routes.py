"""The staff's device routes (``/devices``): staff only, each change cuts the device off and is audited.

The broker side (a disabled or re-keyed device really loses its connection) is in
tests/core/test_core_broker_security.py; here the cut is recorded by a fake.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from community_testkit import NOW, SITE, Community, community_fixture  # noqa: F401 (pytest fixtures)

import anfang.devices_api
from anfang.app import MODELS
from anfang.lifecycle import DeviceLifecycle
from community.api import CommunityServices, create_app
from community.models import AuditRow
from registry.db import open_database
from registry.models import Device
from registry.store import Registry, TwinStore
from twins.document import TwinDocument, apply_reported
from twins.history import HistoryEntry


@dataclass
class Cuts:
    done: list[tuple[str, str, bool]] = field(default_factory=list)

    async def cut_off(self, site: str, device_id: str, *, forget: bool = False) -> None:
        self.done.append((site, device_id, forget))


@dataclass
class Api:
    client: httpx.AsyncClient
    cuts: Cuts
    registry: Registry
    tokens: dict[str, str]

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Path]:
    """The platform's whole schema (the device registry and the community's), as ``anfang run`` opens it."""
    path = tmp_path / "t.db"
    async with open_database(f"sqlite://{path}", MODELS):
        yield path


@pytest.fixture
async def api(community: Community) -> AsyncIterator[Api]:
    registry = Registry(hash_iterations=1000)
    await registry.add_device(SITE, "door-z", "door_lock")
    await registry.add_device("elsewhere", "door-o", "door_lock")
    cuts = Cuts()
    app = create_app(CommunityServices(community.store, community.records, clock=lambda: NOW))
    anfang.devices_api.install(app, DeviceLifecycle(SITE, registry, lambda: cuts))
    tokens = {p: await community.records.create_token(p, label="t", now=NOW) for p in ("p-staff", "p-owner")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        yield Api(client, cuts, registry, tokens)


async def test_residents_are_refused(api: Api) -> None:
    for method, path in (("GET", "/devices"), ("POST", "/devices/door-z/disable"), ("DELETE", "/devices/door-z")):
        r = await api.client.request(method, path, headers=api.h("p-owner"))
        assert r.status_code == 403, (method, path)
    assert api.cuts.done == [] and not (await api.registry.get_device("door-z")).disabled  # type: ignore[union-attr]


async def test_staff_disable_enable_rotate_delete(api: Api) -> None:
    r = await api.client.get("/devices", headers=api.h("p-staff"))
    assert [d["id"] for d in r.json()] == ["door-z"]  # another site's device is not listed
    r = await api.client.post("/devices/door-z/disable", headers=api.h("p-staff"))
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert await api.registry.authenticate("door-z", "anything") is None
    r = await api.client.post("/devices/door-z/enable", headers=api.h("p-staff"))
    assert r.json()["disabled"] is False
    r = await api.client.post("/devices/door-z/secret", headers=api.h("p-staff"))
    body = r.json()
    assert body["cut_off"] is True and await api.registry.authenticate("door-z", body["secret"]) is not None
    assert (await api.client.delete("/devices/door-z", headers=api.h("p-staff"))).status_code == 204
    assert await api.registry.get_device("door-z") is None
    assert api.cuts.done == [(SITE, "door-z", False), (SITE, "door-z", False), (SITE, "door-z", True)]
    assert (await api.client.post("/devices/door-o/disable", headers=api.h("p-staff"))).status_code == 404
    actions = sorted(a.action for a in await AuditRow.filter(target="door-z"))
    assert actions == ["device_delete", "device_disable", "device_enable", "device_rotate_secret"]


async def test_staff_read_a_twins_history_and_reading_a_tags_is_audited(api: Api) -> None:
    await api.registry.add_device(SITE, "tag-e1", "rfid_tag")
    store = TwinStore(Device._meta.db, postgres=False)
    door = TwinDocument(device_id="door-z", kind="door_lock", site=SITE)
    entries = []
    for version, lock in enumerate(("locked", "unlocked", "locked"), start=1):
        door = apply_reported(door, {"lock": lock}, now=NOW + version, seq=version).document
        entries.append(HistoryEntry("door-z", version, NOW + version, "reported", "device", {"lock": lock}))
    tag = apply_reported(TwinDocument(device_id="tag-e1", kind="rfid_tag", site=SITE), {"position": {"x": 1, "y": 2}},
                         now=NOW).document  # fmt: skip
    entries.append(HistoryEntry("tag-e1", 1, NOW, "reported", "platform", {"position": {"x": 1, "y": 2}}))
    await store.commit([door, tag], history=entries)

    r = await api.client.get("/devices/door-z/history", params={"limit": 2}, headers=api.h("p-staff"))
    assert r.status_code == 200
    assert r.json() == [
        {"version": 3, "ts": NOW + 3, "source": "reported", "actor": "device", "changed": {"lock": "locked"}},
        {"version": 2, "ts": NOW + 2, "source": "reported", "actor": "device", "changed": {"lock": "unlocked"}},
    ]
    assert (await api.client.get("/devices/door-z/history", headers=api.h("p-owner"))).status_code == 403
    assert (await api.client.get("/devices/door-o/history", headers=api.h("p-staff"))).status_code == 404
    assert await AuditRow.filter(action="view_tag_history").count() == 0  # a door's history is no one's track
    r = await api.client.get("/devices/tag-e1/history", headers=api.h("p-staff"))
    assert r.json()[0]["changed"] == {"position": {"x": 1, "y": 2}}
    assert [a.target for a in await AuditRow.filter(action="view_tag_history")] == ["tag-e1"]
