"""The watchlist in the community registry: faces (encrypted templates) and plates of interest."""

from __future__ import annotations

from typing import Any

import numpy as np

from community.edge import encode_template
from community.errors import NotFound, RegistryInvalid
from community.models import WatchRow
from community.store.context import StoreContext, new_id
from vision.plate_text import PlateFormatError, normalize_plate


class Watchlist:
    """Watchlist entries of one site (police add them; a removed entry stays, inactive)."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

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
                enc = self._ctx.cipher.encrypt(encode_template(np.asarray(template, dtype=np.float32)), "watch")
            except (ValueError, TypeError) as exc:
                raise RegistryInvalid("bad_template", str(exc), field="template") from exc
            plate = None
        else:
            raise RegistryInvalid("bad_kind", "kind must be face or plate", field="kind")
        wid = "w" + new_id()[:15]
        await WatchRow.create(
            id=wid,
            site=self._ctx.site,
            kind=kind,
            plate=plate,
            template_enc=enc,
            label=label,
            reason=reason,
            added_by=added_by,
            created_at=now,
        )
        self._ctx.changed()
        return wid

    async def remove_watch(self, watch_id: str) -> None:
        """Deactivate a watchlist entry."""
        if not await WatchRow.filter(id=watch_id, site=self._ctx.site).update(active=False):
            raise NotFound("watch_not_found", f"no watchlist entry {watch_id}")
        self._ctx.changed()
