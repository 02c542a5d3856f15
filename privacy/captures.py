"""Capture images at rest: taken out of device events before the store, kept AES-GCM encrypted.

:class:`EventGuard` is what :class:`registry.store.TwinStore` runs every event through before it is
written (see :mod:`privacy.scrub`); the images it takes out go to ``capture_images`` in the same
transaction, encrypted with the field cipher and bound to their reference.
"""

from __future__ import annotations

import time
from typing import Any

from community.crypto import FieldCipher
from privacy.scrub import capture_ref, protect_event
from registry.records import StoredEvent

__all__ = ["IMAGE_CONTEXT", "EventGuard", "decrypt_image"]

IMAGE_CONTEXT = "capture-image:"  # + the reference: associated data of an encrypted capture image


class EventGuard:
    """Makes device events storable: credentials hashed or dropped, images encrypted apart."""

    def __init__(self, cipher: FieldCipher, site: str) -> None:
        self.cipher = cipher
        self.site = site

    def __call__(self, event: StoredEvent) -> tuple[StoredEvent, list[Any] | None]:
        """The storable event and, when it carried an image, its ``capture_images`` row."""
        ref = capture_ref(self.site, event.device_id, event.event_id)
        protected = protect_event(event.data, self.cipher.lookup_hash, ref)
        stored = StoredEvent(event.device_id, event.event_id, event.type, event.ts, event.received_at, protected.data)
        if protected.image is None:
            return stored, None
        enc = self.cipher.encrypt_bytes(protected.image, IMAGE_CONTEXT + ref)
        ts = event.ts if event.ts is not None else event.received_at or time.time()
        return stored, [ref, self.site, event.device_id, event.type, ts, enc]


def decrypt_image(cipher: FieldCipher, ref: str, image_enc: str) -> bytes:
    """The image stored under ``ref``.

    Raises:
        community.crypto.CryptoError: wrong key or a row moved to another reference.
    """
    return cipher.decrypt_bytes(image_enc, IMAGE_CONTEXT + ref)
