"""The generation of each door's edge key, kept in ``community_devices.edge_key_epoch`` (IO).

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
from community.models import DeviceRow

__all__ = ["edge_key_epochs", "rotate_edge_key"]

_DOORS = ("door_lock", "vehicle_gate")


async def edge_key_epochs(site: str, devices: Collection[str]) -> dict[str, int]:
    """The key generation of each of ``devices`` that the access registry knows (others are at 0)."""
    rows = await DeviceRow.filter(site=site, id__in=list(devices)).values_list("id", "edge_key_epoch")
    return {str(device): int(epoch) for device, epoch in rows}


async def rotate_edge_key(cipher: FieldCipher, site: str, device_id: str) -> str:
    """Replace a door's edge key; returns the new key (base64), to be shown this once.

    Raises:
        NotFound: ``device_id`` is not a door or gate of ``site`` in the access registry.
    """
    updated = await DeviceRow.filter(site=site, id=device_id, kind__in=_DOORS).update(
        edge_key_epoch=F("edge_key_epoch") + 1
    )
    if not updated:
        raise NotFound("device_not_found", f"{device_id} is not a door or gate of {site}")
    epoch = (await edge_key_epochs(site, [device_id]))[device_id]
    return issue_door_key(cipher.edge_root, site, device_id, epoch)
