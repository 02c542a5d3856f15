"""What of a device event may be stored: credentials hashed or dropped, images moved out. Pure.

The raw event goes to the services in memory (an access decision needs the PIN); only the result of
:func:`protect_event` reaches ``device_events``:

* card numbers and visitor-QR payloads are replaced by a keyed hash (HMAC with the site's look-up key,
  the same hash the credential registry stores, so an event can still be tied to a credential);
* PINs and face embeddings are dropped (a PIN's hash would be brute-forced from its small space;
  an embedding is a biometric template);
* capture images (``*_b64``) are taken out and returned, to be stored encrypted under a reference
  that the event keeps as ``capture_ref``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["HASHED_FIELDS", "KeyedHash", "ProtectedEvent", "capture_ref", "protect_event"]

#: (value, namespace) -> hex digest; ``FieldCipher.lookup_hash``.
KeyedHash = Callable[[str, str], str]

#: Field -> (namespace of its keyed hash, name of the stored hash field).
HASHED_FIELDS: dict[str, tuple[str, str]] = {
    "card": ("card", "card_hash"),
    "payload": ("qr", "payload_hash"),
}
_DROPPED = frozenset({"pin", "embedding", "template", "face_template", "id_number", "phone"})


@dataclass(frozen=True, slots=True)
class ProtectedEvent:
    """The storable event data, and the capture image taken out of it (if any)."""

    data: dict[str, Any]
    image: bytes | None = None
    image_field: str | None = None


def capture_ref(site: str, device_id: str, event_id: str) -> str:
    """The reference of an event's capture image (``community_captures.snapshot_ref`` uses the same)."""
    return f"{site}/{device_id}/{event_id}"


def protect_event(data: dict[str, Any], keyed_hash: KeyedHash, ref: str) -> ProtectedEvent:
    """The storable form of one event's ``data`` (see the module docstring); ``ref``: its capture reference."""
    out: dict[str, Any] = {}
    image: bytes | None = None
    image_field: str | None = None
    for key, value in data.items():
        if key in _DROPPED:
            continue
        if key in HASHED_FIELDS and isinstance(value, str):
            namespace, name = HASHED_FIELDS[key]
            out[name] = keyed_hash(value.strip(), namespace)
            continue
        if key.endswith("_b64"):
            if image is None and isinstance(value, str):
                try:
                    image = base64.b64decode(value, validate=True)
                    image_field = key
                except (binascii.Error, ValueError):
                    pass  # not an image: dropped all the same
            continue
        out[key] = value
    if image is not None:
        out["capture_ref"] = ref
    return ProtectedEvent(out, image, image_field)
