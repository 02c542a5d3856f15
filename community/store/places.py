"""Buildings, households and where access devices sit, in the community registry."""

from __future__ import annotations

from community.models import BuildingRow, DeviceRow, HouseholdRow
from community.store.context import StoreContext


class Places:
    """Buildings, households and device placements of one site."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def add_building(self, building_id: str, name: str | None = None, units: int = 1, floors: int = 1) -> None:
        """Create or update a building."""
        await BuildingRow.update_or_create(
            id=building_id, defaults={"site": self._ctx.site, "name": name, "units": units, "floors": floors}
        )
        self._ctx.changed()

    async def add_household(self, household_id: str, building_id: str, unit: int | None, room: str | None) -> None:
        """Create or update a household."""
        await HouseholdRow.update_or_create(
            id=household_id,
            defaults={"site": self._ctx.site, "building_id": building_id, "unit": unit, "room": room},
        )
        self._ctx.changed()

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
                "site": self._ctx.site,
                "kind": kind,
                "name": name,
                "building_id": building,
                "unit": unit,
                "gate_id": gate,
            },
        )
        self._ctx.changed()
