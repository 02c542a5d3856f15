"""Capture images for the console: decrypted for one view, on demand, never written anywhere."""

from __future__ import annotations

import base64
import logging

from anfang.console.web import ConsoleServices
from community.crypto import CryptoError
from privacy.captures import decrypt_image

__all__ = ["image_data_uri"]

log = logging.getLogger(__name__)


async def image_data_uri(console: ConsoleServices, ref: str) -> str | None:
    """The capture's image as a data URI, or None when it is gone (past its retention) or unreadable."""
    rows = await console.store.sql.rows(
        "SELECT image_enc FROM capture_images WHERE site = ? AND ref = ?", [console.community.store.site, ref]
    )
    if not rows:
        return None
    try:
        jpeg = decrypt_image(console.community.store.cipher, ref, str(rows[0]["image_enc"]))
    except CryptoError as exc:
        log.warning("capture image %s cannot be decrypted: %s", ref, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
