"""Sealing edge allow-lists for one door: the platform's side of the contract in ``docs/protocol.md``.

Pure, no IO. Each door or gate has its own 32-byte key, derived from the site master key and the
device id (:func:`door_key`) and given to the door once at provisioning. A list is sealed to it:

* ``card`` / ``pin`` / ``qr`` credentials become ``hmac:`` + HMAC-SHA256 under the door's MAC key,
  so a copied list reveals no PIN (there is no key to brute-force against) and is useless at another
  door (a different key gives different MACs);
* ``face`` templates and ``plate`` strings are AES-GCM encrypted under the door's sealing key, with
  ``"{kind}|{subject}"`` as associated data, so nothing readable reaches the broker or its persistence.

The door side (open, decide, attempt limits) is implemented by the door's firmware; the simulator's
is ``firmware_sim.edge_access``. Templates at rest in the registry use :func:`encode_template`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vision.gallery import DEFAULT_THRESHOLD

__all__ = [
    "DEFAULT_FACE_THRESHOLD",
    "SEAL",
    "DoorSealer",
    "decode_template",
    "door_key",
    "encode_template",
    "issue_door_key",
    "key_id",
]

SEAL = "anfang-edge-v1"
DEFAULT_FACE_THRESHOLD = DEFAULT_THRESHOLD  # calibrated in vision.gallery; sites override
_NONCE = 12


def _hkdf(key: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def door_key(edge_root: bytes, site: str, device_id: str, epoch: int = 0) -> bytes:
    """The 32-byte key of one door, from the site's edge root key (a sub-key of the master key) and the
    key's generation ``epoch`` (``community_edge_keys``; rotating it replaces the key)."""
    info = f"anfang-edge/v1/door|{site}|{device_id}" + (f"|{epoch}" if epoch else "")
    return _hkdf(edge_root, info.encode(), salt=b"anfang-edge-doors")


def key_id(key: bytes) -> str:
    """The public name of a door key carried in its lists (16 hex digits)."""
    return hmac.new(key, b"anfang-edge/v1/key-id", hashlib.sha256).hexdigest()[:16]


def encode_template(template: Sequence[float] | np.ndarray) -> str:
    """A unit-normalised 128-d template as base64 float16 (how the registry stores it, encrypted)."""
    return base64.b64encode(_template_bytes(template)).decode("ascii")


def _template_bytes(template: Sequence[float] | np.ndarray) -> bytes:
    v = np.asarray(template, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if v.size != 128 or n == 0.0 or not np.all(np.isfinite(v)):
        raise ValueError("template must be 128 finite values, not all zero")
    return (v / n).astype("<f2").tobytes()


def decode_template(text: str) -> np.ndarray:
    """Inverse of :func:`encode_template` (float32 result)."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 256:
        raise ValueError("encoded template must be 256 bytes")
    return np.frombuffer(raw, dtype="<f2").astype(np.float32)


class DoorSealer:
    """Seals allow-list credentials for one door (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a door key is 32 bytes")
        self.key_id = key_id(key)
        self._mac_key = _hkdf(key, b"anfang-edge/v1/credential-mac")
        self._aead = AESGCM(_hkdf(key, b"anfang-edge/v1/sealed-entry"))
        self._nonce_key = _hkdf(key, b"anfang-edge/v1/entry-nonce")

    def mac(self, kind: str, value: str) -> str:
        """``hmac:<hex>`` of ``"{kind}:{value}"`` under the door's MAC key (card, PIN, QR payload)."""
        msg = f"{kind}:{value.strip()}".encode()
        return "hmac:" + hmac.new(self._mac_key, msg, hashlib.sha256).hexdigest()

    def _seal(self, plain: bytes, kind: str, subject: str) -> str:
        aad = f"{kind}|{subject}".encode()
        # A synthetic nonce (keyed hash of what is sealed): the same entry seals to the same text, so an
        # unchanged list keeps its digest and is not pushed again; different entries never share a nonce.
        nonce = hmac.new(self._nonce_key, aad + b"\x00" + plain, hashlib.sha256).digest()[:_NONCE]
        ct = self._aead.encrypt(nonce, plain, aad)
        return "aesgcm:" + base64.b64encode(nonce + ct).decode("ascii")

    def seal_face(self, subject: str, template: Sequence[float] | np.ndarray) -> str:
        """A face template encrypted to the door (float16 unit vector inside)."""
        return self._seal(_template_bytes(template), "face", subject)

    def seal_plate(self, subject: str, plate: str) -> str:
        """A normalised plate encrypted to the door."""
        return self._seal(plate.encode("utf-8"), "plate", subject)


def issue_door_key(edge_root: bytes, site: str, device_id: str, epoch: int = 0) -> str:
    """The door key as provisioning shows it once (base64), to be installed in the door's firmware."""
    return base64.b64encode(door_key(edge_root, site, device_id, epoch)).decode("ascii")
