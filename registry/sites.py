"""The site model kept in the registry: load a site file's plan into ``site_models``, read it back.

:func:`save_site_model` stores a validated :class:`twins.site.SiteModel` (a new version per load) and
updates the site's row (name, origin); :func:`load_site_model` reads it. The document is validated again
on the way out, so a stored model that a newer schema no longer accepts fails loudly at start.
"""

from __future__ import annotations

import json
import time

from registry.models import SiteModelRow
from registry.store import Registry
from twins.site import SiteError, SiteModel

__all__ = ["StoredSite", "load_site_model", "save_site_model"]


class StoredSite:
    """A site model as stored: the model, its version and where it was loaded from."""

    __slots__ = ("loaded_at", "model", "source", "version")

    def __init__(self, model: SiteModel, version: int, source: str, loaded_at: float) -> None:
        self.model, self.version, self.source, self.loaded_at = model, version, source, loaded_at


async def save_site_model(
    registry: Registry | None, model: SiteModel, source: str, now: float | None = None
) -> StoredSite:
    """Store ``model`` as its site's plan (replacing an earlier one, version + 1) and name the site
    (through ``registry``; the access registry's import stores the plan only)."""
    now = time.time() if now is None else now
    if registry is not None:
        origin = (model.origin.lat, model.origin.lon) if model.origin else None
        await registry.ensure_site(model.site, model.name or None, origin)
    document = json.dumps(model.plan_document(), ensure_ascii=False, sort_keys=True)
    row = await SiteModelRow.get_or_none(site=model.site)
    if row is None:
        row = await SiteModelRow.create(site=model.site, document=document, version=1, source=source, loaded_at=now)
    elif row.document != document or row.source != source:
        row.document, row.version, row.source, row.loaded_at = document, row.version + 1, source, now
        await row.save()
    return StoredSite(model, row.version, row.source, row.loaded_at)


async def load_site_model(site: str) -> StoredSite | None:
    """The site's stored plan, or ``None`` when no site file was loaded for it."""
    row = await SiteModelRow.get_or_none(site=site)
    if row is None:
        return None
    try:
        model = SiteModel.model_validate(json.loads(row.document))
    except ValueError as exc:
        raise SiteError(f"site_models[{site}]", str(exc)) from exc
    return StoredSite(model, row.version, row.source, row.loaded_at)
