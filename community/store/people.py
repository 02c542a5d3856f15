"""People in the community registry: residents, tenants, staff and police, their personal data encrypted."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from community.errors import Forbidden, NotFound, RegistryConflict, RegistryInvalid
from community.idcard import IdCardError, validate_id_number
from community.models import CredentialRow, HouseholdRow, PersonRow
from community.snapshot import ALL_ROLES, STAFF_ROLES, lease_window
from community.store.context import StoreContext, new_id

_PHONE_RE = re.compile(r"^1\d{10}$")


def normalize_phone(phone: str) -> str:
    """Mainland mobile number as 11 digits (``+86``, spaces and dashes removed).

    Raises:
        RegistryInvalid: not an 11-digit number starting with 1.
    """
    s = re.sub(r"[\s\-]", "", phone)
    s = s.removeprefix("+86")
    if not _PHONE_RE.match(s):
        raise RegistryInvalid("bad_phone", "phone must be an 11-digit mainland mobile number", field="phone")
    return s


@dataclass(frozen=True, slots=True)
class NewPerson:
    """Input for registering a person."""

    id: str | None
    role: str
    household_id: str | None
    name: str | None = None
    phone: str | None = None
    id_number: str | None = None
    face_consent: bool = False
    lease_start: dt.date | None = None
    lease_end: dt.date | None = None


class People:
    """People of one site (the clock is passed in as ``now``)."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def person(self, person_id: str) -> PersonRow:
        """The person row; NotFound otherwise."""
        row = await PersonRow.get_or_none(id=person_id)
        if row is None:
            raise NotFound("person_not_found", f"no person {person_id}")
        return row

    async def add_person(self, new: NewPerson, *, registered_by: str | None, now: float) -> str:
        """Register a person (validated, personal data encrypted); returns the person id.

        Raises:
            RegistryInvalid, RegistryConflict, NotFound.
        """
        if new.role not in ALL_ROLES:
            raise RegistryInvalid("bad_role", f"role must be one of {sorted(ALL_ROLES)}", field="role")
        if new.household_id is not None and await HouseholdRow.get_or_none(id=new.household_id) is None:
            raise NotFound("household_not_found", f"no household {new.household_id}")
        if new.role not in STAFF_ROLES and new.household_id is None:
            raise RegistryInvalid("household_required", "residents belong to a household", field="household_id")
        lease_start = lease_end = None
        if new.role == "tenant":
            if new.lease_start is None or new.lease_end is None or new.lease_end < new.lease_start:
                raise RegistryInvalid("bad_lease", "tenants need a lease start <= end", field="lease")
            lease_start, lease_end = lease_window(new.lease_start, new.lease_end)
        values: dict[str, Any] = {}
        if new.id_number is not None:
            try:
                idn = validate_id_number(new.id_number)
            except IdCardError as exc:
                raise RegistryInvalid(f"id_number_{exc.reason}", str(exc), field="id_number") from exc
            values["id_number_hash"] = self._ctx.cipher.lookup_hash(idn, "id_number")
            values["id_number_enc"] = self._ctx.cipher.encrypt(idn, "id_number")
            if await PersonRow.filter(id_number_hash=values["id_number_hash"]).exists():
                raise RegistryConflict("duplicate_id_number", "this ID-card number is already registered")
        if new.phone is not None:
            phone = normalize_phone(new.phone)
            values["phone_hash"] = self._ctx.cipher.lookup_hash(phone, "phone")
            values["phone_enc"] = self._ctx.cipher.encrypt(phone, "phone")
        if new.name is not None:
            values["name_enc"] = self._ctx.cipher.encrypt(new.name, "name")
        pid = new.id or "p-" + new_id()[:12]
        if await PersonRow.filter(id=pid).exists():
            raise RegistryConflict("duplicate_person", f"person {pid} exists")
        await PersonRow.create(
            id=pid,
            site=self._ctx.site,
            role=new.role,
            household_id=new.household_id,
            face_consent=new.face_consent,
            lease_start=lease_start,
            lease_end=lease_end,
            registered_by=registered_by,
            created_at=now,
            **values,
        )
        self._ctx.changed()
        return pid

    async def add_tenant(self, new: NewPerson, *, registered_by: str, now: float) -> str:
        """Register a tenant against a room with a lease; only property staff may.

        Raises:
            Forbidden: ``registered_by`` is not a staff member.
        """
        actor = await self.person(registered_by)
        if actor.role != "staff":
            raise Forbidden("staff_only", "tenants are registered by property staff")
        if new.role != "tenant":
            raise RegistryInvalid("bad_role", "add_tenant registers role 'tenant'", field="role")
        return await self.add_person(new, registered_by=registered_by, now=now)

    async def decrypted_person(self, row: PersonRow) -> dict[str, Any]:
        """A person's record with personal fields decrypted (callers write the audit row)."""
        dec = self._ctx.cipher.decrypt
        return {
            "id": row.id,
            "role": row.role,
            "household_id": row.household_id,
            "name": dec(row.name_enc, "name") if row.name_enc else None,
            "phone": dec(row.phone_enc, "phone") if row.phone_enc else None,
            "id_number": dec(row.id_number_enc, "id_number") if row.id_number_enc else None,
            "face_consent": row.face_consent,
            "lease_start": row.lease_start,
            "lease_end": row.lease_end,
            "active": row.active,
        }

    async def find_by_phone(self, phone: str) -> list[PersonRow]:
        """People registered with this phone number (keyed-hash look-up)."""
        return await PersonRow.filter(phone_hash=self._ctx.cipher.lookup_hash(normalize_phone(phone), "phone"))

    async def household_members(self, household_id: str) -> list[PersonRow]:
        """People of a household."""
        return await PersonRow.filter(household_id=household_id).order_by("id")

    async def person_building(self, row: PersonRow) -> str | None:
        """The building a person lives in."""
        if row.household_id is None:
            return None
        hh = await HouseholdRow.get_or_none(id=row.household_id)
        return hh.building_id if hh else None

    async def set_face_consent(self, person_id: str, consent: bool) -> None:
        """Record (or withdraw) face consent; withdrawing deletes the stored face templates."""
        row = await self.person(person_id)
        row.face_consent = consent
        await row.save(update_fields=["face_consent"])
        if not consent:
            await CredentialRow.filter(person_id=person_id, kind="face").delete()
        self._ctx.changed()
