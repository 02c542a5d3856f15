"""Residents' vehicles in the community registry (plates normalised, colour from the plate)."""

from __future__ import annotations

from community.errors import RegistryConflict, RegistryInvalid
from community.models import VehicleRow
from community.store.context import StoreContext, new_id
from community.store.people import People
from vision.plate_text import PlateFormatError, normalize_plate, plate_color


class Vehicles:
    """Registered vehicles of one site."""

    def __init__(self, ctx: StoreContext, people: People) -> None:
        self._ctx = ctx
        self._people = people

    async def add_vehicle(self, plate: str, owner_id: str, *, now: float) -> str:
        """Register a vehicle; returns the normalised plate."""
        try:
            norm = normalize_plate(plate)
        except PlateFormatError as exc:
            raise RegistryInvalid("bad_plate", exc.reason, field="plate") from exc
        await self._people.person(owner_id)
        if await VehicleRow.filter(site=self._ctx.site, plate=norm).exists():
            raise RegistryConflict("duplicate_plate", f"{norm} is already registered")
        await VehicleRow.create(
            id=new_id(), site=self._ctx.site, plate=norm, color=plate_color(norm), owner_id=owner_id, created_at=now
        )
        self._ctx.changed()
        return norm
