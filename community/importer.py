"""Load a community file: its plan (``buildings``, ``devices``) as the site model, its ``households``,
``people`` and ``vehicles`` into the access registry."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from community.errors import RegistryConflict
from community.models import CredentialRow, HouseholdRow, PersonRow
from community.snapshot import lease_window
from community.store import CommunityStore
from community.store.people import NewPerson
from community.store.places import ACCESS_KINDS

__all__ = ["ImportReport", "StorePeopleRegistrar", "import_community", "import_households", "import_places"]

_HOUSEHOLD_ID = re.compile(r"^h-(?P<building>[a-z0-9]+)-u(?P<unit>\d+)-(?P<room>[A-Za-z0-9]+)$")


@dataclass
class ImportReport:
    """What an import created; ``pins`` are alternative credentials generated for people without face consent."""

    buildings: int = 0
    households: int = 0
    devices: int = 0
    people: int = 0
    vehicles: int = 0
    faces: int = 0
    pins: dict[str, str] = field(default_factory=dict)


def _date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


async def import_households(
    data: dict[str, Any], store: CommunityStore, rep: ImportReport | None = None
) -> ImportReport:
    """Register the ``households`` of a community file (idempotent); buildings and devices are the site model's."""
    rep = rep or ImportReport()
    for h in data.get("households", []):
        unit = h.get("unit")
        await store.places.add_household(h["id"], h["building"], None if unit is None else int(unit), h.get("room"))
        rep.households += 1
    return rep


async def import_places(
    data: dict[str, Any], store: CommunityStore, rep: ImportReport | None = None, *, source: str = "community import"
) -> ImportReport:
    """A community file's places: its plan (``buildings``, ``devices``) kept as the site's site model when it
    has one, and its households registered (idempotent)."""
    rep = rep or ImportReport()
    if data.get("buildings") or data.get("devices"):
        model = await store.places.store_plan(data, source)
        rep.buildings += len(model.buildings)
        rep.devices += len([d for d in model.devices if d.kind in ACCESS_KINDS])
    return await import_households(data, store, rep)


def _new_person(p: dict[str, Any]) -> NewPerson:
    lease = p.get("lease") or {}
    return NewPerson(
        id=p["id"],
        role=p["role"],
        household_id=p.get("household"),
        name=p.get("name"),
        phone=p.get("phone"),
        id_number=p.get("id_number"),
        face_consent=bool(p.get("face_consent", False)),
        lease_start=_date(lease["start"]) if lease.get("start") else None,
        lease_end=_date(lease["end"]) if lease.get("end") else None,
    )


async def _credentials(
    store: CommunityStore, p: dict[str, Any], new: NewPerson, now: float, rep: ImportReport, alternative_pins: bool
) -> None:
    for kind in ("card", "pin"):
        if p.get(kind):
            try:
                await store.credentials.add_credential(p["id"], kind, str(p[kind]), now=now)
            except RegistryConflict:
                mine = CredentialRow.filter(
                    person_id=p["id"],
                    kind=kind,
                    revoked=False,
                    value_hash=store.cipher.lookup_hash(str(p[kind]).strip(), kind),
                )
                if not await mine.exists():
                    raise
    if new.face_consent and p.get("face_template") is not None:
        await store.credentials.add_face_template(p["id"], p["face_template"], now=now)
        rep.faces += 1
    elif not new.face_consent and alternative_pins:
        pin = await store.credentials.ensure_alternative_credential(p["id"], now=now)
        if pin is not None:
            rep.pins[p["id"]] = pin


async def import_community(
    data: dict[str, Any], store: CommunityStore, *, now: float, operator: str = "import", alternative_pins: bool = True
) -> ImportReport:
    """Register a community file's contents (already parsed into a dict) into ``store``.

    People may carry ``face_template`` (128 floats, used only with ``face_consent``), ``card`` and
    ``pin``. Idempotent for places; re-importing existing people is refused by the store.
    """
    rep = await import_places(data, store)
    for p in data.get("people", []):
        new = _new_person(p)
        await store.people.add_person(new, registered_by=operator, now=now)
        rep.people += 1
        await _credentials(store, p, new, now, rep, alternative_pins)
    for v in data.get("vehicles", []):
        await store.vehicles.add_vehicle(v["plate"], v["owner"], now=now)
        rep.vehicles += 1
    return rep


class StorePeopleRegistrar:
    """The simulator's ``PeopleRegistrar`` (``firmware_sim.provision``) over a :class:`CommunityStore`.

    ``places`` (the community file as a dict) keeps its plan as the site model and registers its
    households on first use (``anfang site load`` stores the model itself and passes none); without it a
    missing household ``h-{building}-u{unit}-{room}`` is created from its id.
    """

    def __init__(
        self,
        store: CommunityStore,
        clock: Callable[[], float],
        places: dict[str, Any] | None = None,
        operator: str = "provision",
    ) -> None:
        self.store = store
        self.clock = clock
        self.report = ImportReport()
        self._places = places
        self._operator = operator

    async def _ensure_household(self, household_id: str | None) -> None:
        if self._places is not None:
            await import_places(self._places, self.store, self.report, source="provision")
            self._places = None
        if household_id is None or await HouseholdRow.exists(id=household_id):
            return
        m = _HOUSEHOLD_ID.match(household_id)
        if m is not None:
            await self.store.places.add_household(household_id, m["building"], int(m["unit"]), m["room"])

    async def ensure_person(self, site: str, person: dict[str, object]) -> None:
        """Create a person from a community ``people`` entry, or update role, household, lease and consent."""
        p: dict[str, Any] = dict(person)
        await self._ensure_household(p.get("household"))
        new, now = _new_person(p), self.clock()
        row = await PersonRow.get_or_none(id=new.id)
        if row is None:
            await self.store.people.add_person(new, registered_by=self._operator, now=now)
            self.report.people += 1
        else:
            window = lease_window(new.lease_start, new.lease_end) if new.lease_start and new.lease_end else (None, None)
            await PersonRow.filter(id=row.id).update(
                role=new.role, household_id=new.household_id, lease_start=window[0], lease_end=window[1]
            )
            if row.face_consent != new.face_consent:
                await self.store.people.set_face_consent(row.id, new.face_consent)
            self.store.changed()
        await _credentials(self.store, p, new, now, self.report, alternative_pins=True)

    async def ensure_vehicle(self, site: str, plate: str, owner: str) -> None:
        """Register a vehicle unless its plate is registered already."""
        try:
            await self.store.vehicles.add_vehicle(plate, owner, now=self.clock())
            self.report.vehicles += 1
        except RegistryConflict:
            return
