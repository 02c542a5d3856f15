"""Loading people into the registry: the community file importer and the simulator's PeopleRegistrar."""

from __future__ import annotations

import uuid

from community_testkit import NOW, SITE, community_fixture, db_fixture, template  # noqa: F401 (pytest fixtures)

from community.crypto import FieldCipher
from community.importer import StorePeopleRegistrar
from community.models import CredentialRow, HouseholdRow, PersonRow, VehicleRow
from community.store import CommunityStore
from rules.recording import RecordingActions
from twins.hooks import DeviceEvent


async def test_people_registrar_is_idempotent_and_updates(db: object) -> None:
    store = CommunityStore(FieldCipher(bytes(32)), SITE)
    places = {
        "buildings": [{"id": "b1"}],
        "devices": [{"id": "door-b1-u1", "kind": "door_lock", "building": "b1", "unit": 1}],
    }
    reg = StorePeopleRegistrar(store, lambda: NOW, places=places)
    person: dict[str, object] = {
        "id": "p0001",
        "household": "h-b1-u1-101",
        "role": "owner",
        "phone": "13800000001",
        "id_number": "11010519491231002X",
        "face_consent": True,
        "card": "C0001",
        "face_template": template(1),
        "lease": None,
    }
    for _ in range(2):
        await reg.ensure_person(SITE, person)
        await reg.ensure_vehicle(SITE, "赣G12345", "p0001")
    assert await PersonRow.all().count() == 1 and await VehicleRow.all().count() == 1
    assert (await HouseholdRow.get(id="h-b1-u1-101")).building_id == "b1"
    assert await CredentialRow.filter(person_id="p0001").count() == 2  # card + face
    await reg.ensure_person(SITE, dict(person, role="tenant", lease={"start": "2026-01-01", "end": "2026-06-30"}))
    row = await PersonRow.get(id="p0001")
    assert row.role == "tenant" and row.lease_end is not None
    from community.handler import AccessConfig, AccessHandler
    from community.records import AccessRecords
    from registry.alarms import AlarmManager, InMemoryAlarmStore

    alarms = AlarmManager(SITE, InMemoryAlarmStore())
    handler = AccessHandler(store, AccessRecords(SITE), AccessConfig(site=SITE), alarms=alarms)
    actions = RecordingActions(clock=NOW, command_results={"open": {}})
    await handler.on_event(
        DeviceEvent(SITE, "door-b1-u1", "door_lock", "card_presented", uuid.uuid4().hex, NOW, {"card": "C0001"}),
        actions,
    )
    assert actions.commands == [], "the lease set by the update ended before NOW"
