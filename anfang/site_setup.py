"""The site model at start: which one the platform runs with, and the rules engine's plan compiled from it.

The platform's one site model (:class:`twins.site.SiteModel`) is kept in the registry (``site_models``):

1. a configured site file (``community_file`` / ``ANFANG_COMMUNITY_FILE``) is read at every start and
   stored (so editing the file and restarting changes the plan, and every worker of the site reads the
   same plan from the registry);
2. otherwise the model last loaded with ``anfang site load FILE``;
3. otherwise the bundled pilot plan (read as a data file; nothing is imported from the simulator) — used,
   not stored, so loading a real site later replaces it;
4. otherwise an empty plan of the configured site.

The rules engine's people and vehicles come from the access-control registry (names decrypted in
memory); a site whose roster was never registered falls back to the roster section of the site file it
runs with. Every registered device is on the engine's plan, so "silent" and "offline" rules watch
devices that no site file places.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anfang.config import ConfigError, Settings
from community.models import PersonRow, VehicleRow
from community.store import CommunityStore
from registry.sites import load_site_model, save_site_model
from registry.store import Registry
from rules.site import Person, SitePlan, SitePlanError
from twins.site import SiteError, SiteModel, read_site_file, site_from_mapping

__all__ = ["PILOT_SITE_FILE", "RunningSite", "configured_plan", "current_site", "rules_plan", "site_file_roster"]

log = logging.getLogger(__name__)

#: The pilot community's site file, shipped with the simulator's data (a file, not an import).
PILOT_SITE_FILE = Path(__file__).resolve().parent.parent / "firmware_sim" / "communities" / "youzheng.yaml"


@dataclass(frozen=True)
class RunningSite:
    """The site model the platform runs with and where it came from (``file`` when read from a site file)."""

    model: SiteModel
    source: str
    file: dict[str, Any] | None = None


def _read(path: Path) -> tuple[SiteModel, dict[str, Any]]:
    try:
        doc = read_site_file(path)
        return site_from_mapping(doc, str(path)), doc
    except SiteError as exc:
        raise ConfigError(f"site file {exc.path}: {exc.reason}") from None


async def current_site(settings: Settings, registry: Registry, *, store: bool = True) -> RunningSite:
    """The site model for ``settings.site`` (see the module's docstring for the order); ``store=False``
    reads without writing (``anfang rules check``)."""
    if settings.community_file is not None:
        model, doc = _read(settings.community_file)
        if model.site == settings.site and store:
            stored = await save_site_model(registry, model, str(settings.community_file))
            log.info("site model of %s from %s (version %d)", model.site, settings.community_file, stored.version)
        else:
            log.warning("site file %s describes site %r, not %r: used, not stored",
                        settings.community_file, model.site, settings.site)  # fmt: skip
        return RunningSite(model, str(settings.community_file), doc)
    try:
        stored_site = await load_site_model(settings.site)
    except SiteError as exc:
        raise ConfigError(f"stored site model: {exc.reason}") from None
    if stored_site is not None:
        return RunningSite(stored_site.model, f"registry (version {stored_site.version})")
    if PILOT_SITE_FILE.exists():
        model, doc = _read(PILOT_SITE_FILE)
        log.info("no site model loaded for %s: running with the pilot plan (`anfang site load FILE`)", settings.site)
        return RunningSite(model, str(PILOT_SITE_FILE), doc)
    return RunningSite(SiteModel(site=settings.site), "empty")


def site_file_roster(doc: dict[str, Any] | None) -> tuple[list[Person], dict[str, str]]:
    """People and vehicles (plate → owner) of a site file's roster sections."""
    if not doc:
        return [], {}
    people = [
        Person(str(p["id"]), str(p.get("name", "")), str(p.get("role", "")), p.get("household"), p.get("tag"))
        for p in doc.get("people") or []
    ]
    return people, {str(v["plate"]): str(v.get("owner", "")) for v in doc.get("vehicles") or []}


async def rules_plan(running: RunningSite, registry: Registry, store: CommunityStore) -> SitePlan:
    """The rules engine's plan: the site model, the registered roster and every registered device of the
    store's site."""
    site = store.site
    people = [
        Person(row.id, str((await store.people.decrypted_person(row))["name"] or ""), row.role, row.household_id)
        for row in await PersonRow.filter(site=site, active=True)
    ]
    vehicles = {v.plate: v.owner_id for v in await VehicleRow.filter(site=site)}
    if not people and running.file is not None:
        people, vehicles = site_file_roster(running.file)
    devices = await registry.list_devices(site)
    try:
        return SitePlan.from_site(running.model, people, vehicles, devices, source=running.source)
    except SitePlanError as exc:
        raise ConfigError(f"site model: {exc.message}") from None


async def configured_plan(settings: Settings) -> SitePlan:
    """The plan ``anfang run`` would compile, for ``anfang rules check``: read only (nothing stored, no key
    read or created), people and vehicles from the site file's roster (the check needs ids and groups)."""
    from anfang.app import MODELS
    from registry.db import open_database

    async with open_database(settings.db_url, MODELS):
        registry = Registry(settings.broker.hash_iterations)
        running = await current_site(settings, registry, store=False)
        people, vehicles = site_file_roster(running.file)
        devices = await registry.list_devices(settings.site)
    try:
        return SitePlan.from_site(running.model, people, vehicles, devices, source=running.source)
    except SitePlanError as exc:
        raise ConfigError(f"site model: {exc.message}") from None
