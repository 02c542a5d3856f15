"""Visitor passes in the community registry: issued by residents (their own doors) and staff, signed, counted."""

from __future__ import annotations

import json
from typing import Any

from tortoise.expressions import F

from community.decisions import entitlement_refusal
from community.errors import Forbidden, NotFound, RegistryInvalid
from community.models import PassRow, PersonRow
from community.passes import PassClaims, sign_pass
from community.snapshot import RESIDENT_ROLES, PersonInfo
from community.store.context import StoreContext, new_id
from community.store.people import People, normalize_phone
from community.store.places import Places
from vision.plate_text import PlateFormatError, normalize_plate

#: Who issues and revokes visitor passes: residents (their own) and property staff, never police.
PASS_ROLES = RESIDENT_ROLES | {"staff"}


def claims_of(row: PassRow) -> PassClaims:
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


class VisitorPasses:
    """Visitor passes of one site."""

    def __init__(self, ctx: StoreContext, people: People, places: Places) -> None:
        self._ctx = ctx
        self._people = people
        self._places = places

    #: the signed claims of a stored pass
    claims_of = staticmethod(claims_of)

    def payload_of(self, row: PassRow) -> str:
        """The QR payload of a stored pass."""
        return sign_pass(claims_of(row), self._ctx.cipher.pass_key)

    async def entitled_devices(self, person: PersonRow, now: float) -> list[str]:
        """Doors and gates a person may open at ``now``."""
        info = PersonInfo(
            person.id,
            person.role,
            person.household_id,
            await self._people.person_building(person),
            person.lease_start,
            person.lease_end,
            person.face_consent,
            person.active,
        )
        out = []
        devices = await self._places.devices()
        for d in sorted(devices.values(), key=lambda d: d.id):
            if d.kind in ("door_lock", "vehicle_gate") and entitlement_refusal(info, d, now) is None:
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
        issuer = await self._people.person(issuer_id)
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
                "visitor_phone_enc": self._ctx.cipher.encrypt(phone, "phone"),
                "visitor_phone_hash": self._ctx.cipher.lookup_hash(phone, "phone"),
            }
        if visitor_name:
            values["visitor_name_enc"] = self._ctx.cipher.encrypt(visitor_name, "name")
        row = await PassRow.create(
            id="v" + new_id()[:15],
            site=self._ctx.site,
            issued_by=issuer_id,
            plate=norm_plate,
            valid_from=float(int(valid_from)),
            valid_until=float(int(valid_until)),
            doors=json.dumps(wanted),
            max_uses=max_uses,
            created_at=now,
            **values,
        )
        self._ctx.changed()
        return row, self.payload_of(row)

    async def revoke_pass(self, pass_id: str, *, by: PersonRow, now: float) -> None:
        """Revoke a pass (its issuer or staff)."""
        row = await PassRow.get_or_none(id=pass_id, site=self._ctx.site)
        if row is None:
            raise NotFound("pass_not_found", f"no pass {pass_id}")
        if row.issued_by != by.id and by.role != "staff":
            raise Forbidden("not_your_pass", "only the issuer or staff may revoke a pass")
        row.revoked, row.revoked_at = True, now
        await row.save(update_fields=["revoked", "revoked_at"])
        self._ctx.changed()

    async def record_pass_use(self, pass_id: str) -> bool:
        """Count one use atomically; False when the pass was already used up."""
        updated = await PassRow.filter(id=pass_id, uses__lt=F("max_uses")).update(uses=F("uses") + 1)
        return bool(updated)
