"""Households, and where the site's access devices sit — read from the site model, never stored here.

Buildings and device placements are the site model's (``twins.site.SiteModel``, kept in ``site_models`` by
``anfang site load``); the access registry keeps only its households (which room of which building).
"""

from __future__ import annotations

from typing import Any

from community.models import HouseholdRow
from community.store.context import StoreContext
from registry.sites import load_site_model, save_site_model
from twins.site import DeviceInfo, SiteModel, site_from_mapping

#: The placements access control decides for: doors and gates, and capture cameras (by their gate).
ACCESS_KINDS = frozenset({"door_lock", "vehicle_gate", "camera"})


def access_devices(model: SiteModel) -> dict[str, DeviceInfo]:
    """The access devices a site model places; a gate's listed capture camera that is not placed itself
    belongs to its gate."""
    out = {d.id: d.info(model.site) for d in model.devices if d.kind in ACCESS_KINDS}
    for d in model.devices:
        if d.kind in ACCESS_KINDS:
            for cam in d.cameras:
                out.setdefault(cam, DeviceInfo(cam, "camera", gate=d.id, site=model.site))
    return out


class Places:
    """Households of one site, and its access devices as the stored site model places them."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    async def add_household(self, household_id: str, building_id: str, unit: int | None, room: str | None) -> None:
        """Create or update a household."""
        await HouseholdRow.update_or_create(
            id=household_id,
            defaults={"site": self._ctx.site, "building_id": building_id, "unit": unit, "room": room},
        )
        self._ctx.changed()

    async def devices(self) -> dict[str, DeviceInfo]:
        """The site's access devices (none before a site model is loaded: ``anfang site load FILE``)."""
        stored = await load_site_model(self._ctx.site)
        return {} if stored is None else access_devices(stored.model)

    async def store_plan(self, data: dict[str, Any], source: str) -> SiteModel:
        """Keep the plan sections of a community file (buildings, households, devices...) as this site's
        site model, as ``anfang site load`` does (validated; a new version when it changed).

        Raises:
            twins.site.SiteError: the plan is not a valid site model.
        """
        model = site_from_mapping({**data, "site": self._ctx.site}, source)
        await save_site_model(None, model, source)
        self._ctx.changed()
        return model
