"""The community registry in the database: people, households, vehicles, credentials, passes, watchlist.

A thin IO adapter over the Tortoise models. Personal data goes through :class:`FieldCipher`; the clock
is passed in (``now``) by the caller. :meth:`CommunityStore.snapshot` builds the in-memory view that
access decisions read. Every registry write bumps :attr:`CommunityStore.generation` so a handler in
the same process reloads its snapshot; database triggers raise the site's change counter
(:meth:`CommunityStore.change_seq`) for every process.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from tortoise.expressions import F

from community.crypto import FieldCipher
from community.decisions import entitlement_refusal
from community.edge import decode_template, encode_template
from community.errors import ConsentError, EnrolmentRefused, Forbidden, NotFound, RegistryConflict, RegistryInvalid
from community.idcard import IdCardError, validate_id_number
from community.models import (
    BuildingRow,
    ChangeRow,
    CredentialRow,
    DeviceRow,
    EnrolmentRow,
    HouseholdRow,
    PassRow,
    PersonRow,
    VehicleRow,
    WatchRow,
)
from community.passes import PassClaims, sign_pass
from community.snapshot import (
    ALL_ROLES,
    RESIDENT_ROLES,
    STAFF_ROLES,
    DeviceInfo,
    PassState,
    PersonInfo,
    RegistrySnapshot,
    WatchEntry,
    lease_window,
)
from vision.gallery import DEFAULT_THRESHOLD, FaceGallery, GalleryError, cosine_similarity
from vision.plate_text import PlateFormatError, normalize_plate, plate_color

__all__ = ["DEFAULT_ENROL_THRESHOLD", "PASS_ROLES", "CommunityStore", "NewPerson", "normalize_phone"]

#: Minimum ID-photo ↔ live-face similarity for 人证合一 (SFace's same-person threshold).
DEFAULT_ENROL_THRESHOLD = DEFAULT_THRESHOLD
_PHONE_RE = re.compile(r"^1\d{10}$")
_CRED_KINDS = ("card", "pin", "fingerprint")
#: Who issues and revokes visitor passes: residents (their own) and property staff, never police.
PASS_ROLES = RESIDENT_ROLES | {"staff"}


def _uid() -> str:
    return uuid.uuid4().hex


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


class CommunityStore:
    """Registry reads and writes for one site."""

    def __init__(self, cipher: FieldCipher, site: str) -> None:
        self.cipher = cipher
        self.site = site
        self.generation = 0

    def _changed(self) -> None:
        self.generation += 1

    async def change_seq(self) -> int:
        """The site's registry change counter (one primary-key read).

        Database triggers raise it in the same transaction as every change to what decisions read,
        whichever process (API, CLI, another worker) made it; 0 before the first change.
        """
        row = await ChangeRow.get_or_none(site=self.site)
        return 0 if row is None else row.seq

    # --- places -----------------------------------------------------------------------------------
    async def add_building(self, building_id: str, name: str | None = None, units: int = 1, floors: int = 1) -> None:
        """Create or update a building."""
        await BuildingRow.update_or_create(
            id=building_id, defaults={"site": self.site, "name": name, "units": units, "floors": floors}
        )
        self._changed()

    async def add_household(self, household_id: str, building_id: str, unit: int | None, room: str | None) -> None:
        """Create or update a household."""
        await HouseholdRow.update_or_create(
            id=household_id, defaults={"site": self.site, "building_id": building_id, "unit": unit, "room": room}
        )
        self._changed()

    async def add_device(
        self,
        device_id: str,
        kind: str,
        *,
        name: str | None = None,
        building: str | None = None,
        unit: int | None = None,
        gate: str | None = None,
    ) -> None:
        """Record where an access device or capture camera sits."""
        await DeviceRow.update_or_create(
            id=device_id,
            defaults={
                "site": self.site,
                "kind": kind,
                "name": name,
                "building_id": building,
                "unit": unit,
                "gate_id": gate,
            },
        )
        self._changed()

    # --- people -----------------------------------------------------------------------------------
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
            values["id_number_hash"] = self.cipher.lookup_hash(idn, "id_number")
            values["id_number_enc"] = self.cipher.encrypt(idn, "id_number")
            if await PersonRow.filter(id_number_hash=values["id_number_hash"]).exists():
                raise RegistryConflict("duplicate_id_number", "this ID-card number is already registered")
        if new.phone is not None:
            phone = normalize_phone(new.phone)
            values["phone_hash"] = self.cipher.lookup_hash(phone, "phone")
            values["phone_enc"] = self.cipher.encrypt(phone, "phone")
        if new.name is not None:
            values["name_enc"] = self.cipher.encrypt(new.name, "name")
        pid = new.id or "p-" + _uid()[:12]
        if await PersonRow.filter(id=pid).exists():
            raise RegistryConflict("duplicate_person", f"person {pid} exists")
        await PersonRow.create(
            id=pid,
            site=self.site,
            role=new.role,
            household_id=new.household_id,
            face_consent=new.face_consent,
            lease_start=lease_start,
            lease_end=lease_end,
            registered_by=registered_by,
            created_at=now,
            **values,
        )
        self._changed()
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
        dec = self.cipher.decrypt
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
        return await PersonRow.filter(phone_hash=self.cipher.lookup_hash(normalize_phone(phone), "phone"))

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
        self._changed()

    # --- credentials ------------------------------------------------------------------------------
    async def add_face_template(self, person_id: str, template: Any, *, now: float) -> None:
        """Store a consenting person's face template (replaces an earlier one).

        Raises:
            ConsentError: the person has not consented to face recognition.
        """
        row = await self.person(person_id)
        if not row.face_consent:
            raise ConsentError("no_face_consent", f"{person_id} has not consented to face recognition")
        try:
            enc = encode_template(np.asarray(template, dtype=np.float32))
        except ValueError as exc:
            raise RegistryInvalid("bad_template", str(exc), field="face_template") from exc
        await CredentialRow.filter(person_id=person_id, kind="face").delete()
        await CredentialRow.create(
            id=_uid(), person_id=person_id, kind="face", value_enc=self.cipher.encrypt(enc, "face"), created_at=now
        )
        self._changed()

    async def enrol_face(
        self,
        person_id: str,
        id_photo: Any,
        live: Any,
        *,
        operator: str,
        now: float,
        threshold: float = DEFAULT_ENROL_THRESHOLD,
    ) -> float:
        """人证合一: compare the ID-card photo with the live face, record the check, enrol on a match.

        Returns the match score. Raises:
            EnrolmentRefused: the faces do not match (the check is still recorded).
        """
        await self.person(person_id)
        try:
            score = cosine_similarity(id_photo, live)
        except GalleryError as exc:
            raise RegistryInvalid("bad_template", str(exc), field="embedding") from exc
        matched = score >= threshold
        await EnrolmentRow.create(
            id=_uid(),
            person_id=person_id,
            operator=operator,
            match_score=score,
            threshold=threshold,
            matched=matched,
            ts=now,
        )
        if not matched:
            raise EnrolmentRefused(score, threshold)
        await self.add_face_template(person_id, live, now=now)
        return score

    async def add_credential(self, person_id: str, kind: str, value: str, *, now: float) -> None:
        """Add a card number, PIN or fingerprint template id (unique per kind).

        Raises:
            RegistryConflict: another person already holds this credential.
        """
        if kind not in _CRED_KINDS:
            raise RegistryInvalid("bad_credential_kind", f"kind must be one of {_CRED_KINDS}", field="kind")
        await self.person(person_id)
        value = value.strip()
        if not value or (kind == "pin" and not (value.isdigit() and 4 <= len(value) <= 8)):
            raise RegistryInvalid("bad_credential", f"invalid {kind}", field="value")
        h = self.cipher.lookup_hash(value, kind)
        if await CredentialRow.filter(kind=kind, value_hash=h, revoked=False).exists():
            raise RegistryConflict("duplicate_credential", f"this {kind} is already in use")
        await CredentialRow.create(
            id=_uid(),
            person_id=person_id,
            kind=kind,
            value_hash=h,
            value_enc=self.cipher.encrypt(value, kind),
            created_at=now,
        )
        self._changed()

    async def ensure_alternative_credential(self, person_id: str, *, now: float) -> str | None:
        """Give a person without face consent a PIN when they have no card/PIN; returns the new PIN."""
        if await CredentialRow.filter(person_id=person_id, kind__in=["card", "pin"], revoked=False).exists():
            return None
        for _ in range(20):
            pin = f"{secrets.randbelow(10**6):06d}"
            try:
                await self.add_credential(person_id, "pin", pin, now=now)
            except RegistryConflict:
                continue
            return pin
        raise RegistryConflict("pin_space_exhausted", "could not allocate a unique PIN")

    async def add_vehicle(self, plate: str, owner_id: str, *, now: float) -> str:
        """Register a vehicle; returns the normalised plate."""
        try:
            norm = normalize_plate(plate)
        except PlateFormatError as exc:
            raise RegistryInvalid("bad_plate", exc.reason, field="plate") from exc
        await self.person(owner_id)
        if await VehicleRow.filter(site=self.site, plate=norm).exists():
            raise RegistryConflict("duplicate_plate", f"{norm} is already registered")
        await VehicleRow.create(
            id=_uid(), site=self.site, plate=norm, color=plate_color(norm), owner_id=owner_id, created_at=now
        )
        self._changed()
        return norm

    # --- snapshot ---------------------------------------------------------------------------------
    async def snapshot(
        self, *, liveness_threshold: float = 0.8, face_threshold: float = DEFAULT_THRESHOLD
    ) -> RegistrySnapshot:
        """Build the in-memory view decisions run against (decrypts credentials)."""
        buildings = {h.id: h.building_id for h in await HouseholdRow.filter(site=self.site)}
        snap = RegistrySnapshot(
            site=self.site,
            pass_key=self.cipher.pass_key,
            ref_key=self.cipher.lookup_key,
            liveness_threshold=liveness_threshold,
            faces=FaceGallery(threshold=face_threshold),
            watch_faces=FaceGallery(threshold=face_threshold),
        )
        for p in await PersonRow.filter(site=self.site):
            snap.people[p.id] = PersonInfo(
                p.id,
                p.role,
                p.household_id,
                buildings.get(p.household_id or ""),
                p.lease_start,
                p.lease_end,
                p.face_consent,
                p.active,
            )
        for d in await DeviceRow.filter(site=self.site):
            snap.devices[d.id] = DeviceInfo(d.id, d.kind, d.building_id, d.unit, d.gate_id, d.name)
        for v in await VehicleRow.filter(site=self.site):
            snap.plates[v.plate] = v.owner_id
        for c in await CredentialRow.filter(revoked=False, person_id__in=list(snap.people)):
            value = self.cipher.decrypt(c.value_enc, c.kind)
            if c.kind == "face":
                if snap.people[c.person_id].face_consent:
                    template = decode_template(value)
                    snap.faces.add(c.person_id, template)
                    snap.face_templates[c.person_id] = template
            elif c.kind == "card":
                snap.cards[value] = c.person_id
            elif c.kind == "pin":
                snap.pins[value] = c.person_id
        for r in await PassRow.filter(site=self.site):
            snap.passes[r.id] = PassState(self.claims_of(r), r.issued_by, r.uses, r.revoked)
        for w in await WatchRow.filter(site=self.site, active=True):
            snap.watch[w.id] = WatchEntry(w.id, w.kind, w.reason, w.plate, w.label)
            if w.kind == "plate" and w.plate:
                snap.watch_plates[w.plate] = w.id
            elif w.kind == "face" and w.template_enc:
                snap.watch_faces.add(w.id, decode_template(self.cipher.decrypt(w.template_enc, "watch")))
        return snap

    # --- visitor passes ---------------------------------------------------------------------------
    def claims_of(self, row: PassRow) -> PassClaims:
        """The signed claims of a stored pass (the QR payload is re-derivable from them)."""
        return PassClaims(
            row.id,
            row.site,
            int(row.valid_from),
            int(row.valid_until),
            tuple(json.loads(row.doors)),
            row.max_uses,
            row.plate,
        )

    def payload_of(self, row: PassRow) -> str:
        """The QR payload of a stored pass."""
        return sign_pass(self.claims_of(row), self.cipher.pass_key)

    async def entitled_devices(self, person: PersonRow, now: float) -> list[str]:
        """Doors and gates a person may open at ``now``."""
        info = PersonInfo(
            person.id,
            person.role,
            person.household_id,
            await self.person_building(person),
            person.lease_start,
            person.lease_end,
            person.face_consent,
            person.active,
        )
        out = []
        for d in await DeviceRow.filter(site=self.site, kind__in=["door_lock", "vehicle_gate"]).order_by("id"):
            if entitlement_refusal(info, DeviceInfo(d.id, d.kind, d.building_id, d.unit), now) is None:
                out.append(d.id)
        return out

    async def issue_pass(
        self,
        issuer_id: str,
        *,
        valid_from: float,
        valid_until: float,
        doors: list[str] | None,
        max_uses: int,
        now: float,
        visitor_name: str | None = None,
        visitor_phone: str | None = None,
        plate: str | None = None,
    ) -> tuple[PassRow, str]:
        """Issue a visitor pass; returns the row and the signed QR payload.

        Residents may only grant doors they may open themselves, and a tenant's pass ends with the lease.

        Raises:
            Forbidden: the issuer may not open doors now (e.g. lease over) or asks for other doors.
            RegistryInvalid: bad window, uses, phone or plate.
        """
        issuer = await self.person(issuer_id)
        if issuer.role not in PASS_ROLES:
            raise Forbidden("role_not_allowed", "police do not issue visitor passes")
        entitled = await self.entitled_devices(issuer, now)
        if not entitled:
            raise Forbidden("issuer_not_entitled", "the issuer may not open any door now")
        wanted = list(dict.fromkeys(doors)) if doors else entitled
        if not set(wanted) <= set(entitled):
            raise Forbidden("door_not_entitled", f"issuer may not grant {sorted(set(wanted) - set(entitled))}")
        if issuer.lease_end is not None:
            valid_until = min(valid_until, issuer.lease_end)
        if not 1 <= max_uses <= 100:
            raise RegistryInvalid("bad_uses", "max_uses must be within 1..100", field="max_uses")
        if valid_until <= valid_from or valid_until <= now or valid_until - valid_from > 31 * 86400:
            raise RegistryInvalid(
                "bad_window", "validity must be a future window of at most 31 days", field="valid_until"
            )
        norm_plate = None
        if plate:
            try:
                norm_plate = normalize_plate(plate)
            except PlateFormatError as exc:
                raise RegistryInvalid("bad_plate", exc.reason, field="plate") from exc
        values: dict[str, Any] = {}
        if visitor_phone:
            phone = normalize_phone(visitor_phone)
            values = {
                "visitor_phone_enc": self.cipher.encrypt(phone, "phone"),
                "visitor_phone_hash": self.cipher.lookup_hash(phone, "phone"),
            }
        if visitor_name:
            values["visitor_name_enc"] = self.cipher.encrypt(visitor_name, "name")
        row = await PassRow.create(
            id="v" + _uid()[:15],
            site=self.site,
            issued_by=issuer_id,
            plate=norm_plate,
            valid_from=float(int(valid_from)),
            valid_until=float(int(valid_until)),
            doors=json.dumps(wanted),
            max_uses=max_uses,
            created_at=now,
            **values,
        )
        self._changed()
        return row, self.payload_of(row)

    async def revoke_pass(self, pass_id: str, *, by: PersonRow, now: float) -> None:
        """Revoke a pass (its issuer or staff)."""
        row = await PassRow.get_or_none(id=pass_id, site=self.site)
        if row is None:
            raise NotFound("pass_not_found", f"no pass {pass_id}")
        if row.issued_by != by.id and by.role != "staff":
            raise Forbidden("not_your_pass", "only the issuer or staff may revoke a pass")
        row.revoked, row.revoked_at = True, now
        await row.save(update_fields=["revoked", "revoked_at"])
        self._changed()

    async def record_pass_use(self, pass_id: str) -> bool:
        """Count one use atomically; False when the pass was already used up."""
        updated = await PassRow.filter(id=pass_id, uses__lt=F("max_uses")).update(uses=F("uses") + 1)
        return bool(updated)

    # --- watchlist --------------------------------------------------------------------------------
    async def add_watch(
        self,
        *,
        kind: str,
        reason: str,
        added_by: str,
        now: float,
        plate: str | None = None,
        template: Any = None,
        label: str | None = None,
    ) -> str:
        """Add a face (template) or plate of interest; returns its id."""
        if kind == "plate":
            try:
                plate = normalize_plate(plate or "")
            except PlateFormatError as exc:
                raise RegistryInvalid("bad_plate", exc.reason, field="plate") from exc
            enc = None
        elif kind == "face":
            try:
                enc = self.cipher.encrypt(encode_template(np.asarray(template, dtype=np.float32)), "watch")
            except (ValueError, TypeError) as exc:
                raise RegistryInvalid("bad_template", str(exc), field="template") from exc
            plate = None
        else:
            raise RegistryInvalid("bad_kind", "kind must be face or plate", field="kind")
        wid = "w" + _uid()[:15]
        await WatchRow.create(
            id=wid,
            site=self.site,
            kind=kind,
            plate=plate,
            template_enc=enc,
            label=label,
            reason=reason,
            added_by=added_by,
            created_at=now,
        )
        self._changed()
        return wid

    async def remove_watch(self, watch_id: str) -> None:
        """Deactivate a watchlist entry."""
        if not await WatchRow.filter(id=watch_id, site=self.site).update(active=False):
            raise NotFound("watch_not_found", f"no watchlist entry {watch_id}")
        self._changed()
