"""The generation of each door's edge key, kept in ``community_edge_keys`` (IO).

A door's key is derived, never stored (:func:`community.edge.door_key`); only its generation is. Rotating
it raises the number (the access registry's change feed then republishes the door's list, sealed to the
new key) and returns the new key, to be shown once and installed in the door.
"""

from __future__ import annotations

from collections.abc import Collection

from tortoise.expressions import F

from community.crypto import FieldCipher
from community.edge import issue_door_key
from community.errors import NotFound
from community.models import EdgeKeyRow
from registry.sites import load_site_model

__all__ = ["edge_key_epochs", "rotate_edge_key"]

_DOORS = ("door_lock", "vehicle_gate")


async def edge_key_epochs(site: str, devices: Collection[str]) -> dict[str, int]:
    """The key generation of each of ``devices`` ever rotated (others are at 0)."""
    rows = await EdgeKeyRow.filter(site=site, device_id__in=list(devices)).values_list("device_id", "epoch")
    return {str(device): int(epoch) for device, epoch in rows}


async def rotate_edge_key(cipher: FieldCipher, site: str, device_id: str) -> str:
    """Replace a door's edge key; returns the new key (base64), to be shown this once.

    Raises:
        NotFound: ``device_id`` is not a door or gate that the site model of ``site`` places.
    """
    stored = await load_site_model(site)
    if stored is None or not any(d.id == device_id and d.kind in _DOORS for d in stored.model.devices):
        raise NotFound("device_not_found", f"{device_id} is not a door or gate of {site}")
    if not await EdgeKeyRow.filter(device_id=device_id).update(epoch=F("epoch") + 1):
        await EdgeKeyRow.create(device_id=device_id, site=site, epoch=1)
    epoch = (await edge_key_epochs(site, [device_id]))[device_id]
    return issue_door_key(cipher.edge_root, site, device_id, epoch)
