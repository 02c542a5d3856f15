"""Field-level encryption and keyed look-up hashes for personal data.

:class:`FieldCipher` derives independent sub-keys from one 32-byte master key with HKDF-SHA256:
one AES-256-GCM key to encrypt fields (ID-card numbers, phones, names, face templates), one HMAC
key for deterministic look-up hashes (so an encrypted phone can still be found by equality), one
HMAC key for signing visitor passes and the root of the per-door edge keys (``community.edge``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CryptoError", "FieldCipher", "load_master_key"]

log = logging.getLogger(__name__)

_NONCE_LEN = 12


class CryptoError(ValueError):
    """A key or ciphertext is unusable.

    Attributes:
        reason: what is wrong.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"anfang-community", info=info).derive(master)


class FieldCipher:
    """Encrypts and hashes personal-data fields with sub-keys of one master key."""

    def __init__(self, master_key: bytes, generation: int = 0) -> None:
        if len(master_key) != 32:
            raise CryptoError(f"master key must be 32 bytes, got {len(master_key)}")
        self._master = master_key
        self._aeads: dict[int, AESGCM] = {}
        self._lookup_key = _derive(master_key, b"lookup-hash")
        self.pass_key = _derive(master_key, b"visitor-pass-signing")
        self.edge_root = _derive(master_key, b"edge-door-keys")  # root of the per-door keys (community.edge)
        #: the field-key generation new ciphertexts are written under (``anfang keys rotate`` moves it on);
        #: reading a ciphertext of a newer generation moves it on too, so every process follows a rotation
        self.generation = generation

    def _aead(self, generation: int) -> AESGCM:
        aead = self._aeads.get(generation)
        if aead is None:
            info = b"field-encryption" if generation == 0 else f"field-encryption/{generation}".encode()
            aead = self._aeads[generation] = AESGCM(_derive(self._master, info))
        return aead

    @staticmethod
    def key_id(generation: int) -> str:
        """The prefix naming a field key in its ciphertexts: ``v1`` (generation 0), then ``k1``, ``k2``, ..."""
        return "v1" if generation == 0 else f"k{generation}"

    @staticmethod
    def generation_of(token: str) -> int:
        """The field-key generation ``token`` was encrypted under.

        Raises:
            CryptoError: not a ciphertext of this cipher.
        """
        head, sep, _ = token.partition(":")
        if sep and head == "v1":
            return 0
        if sep and head.startswith("k") and head[1:].isdigit() and int(head[1:]) > 0:
            return int(head[1:])
        raise CryptoError("unknown ciphertext format")

    def encrypt_bytes(self, plain: bytes, context: str = "") -> str:
        """AES-GCM encrypt under the current generation; returns ``<key id>:<base64(nonce|ciphertext)>``
        (``v1:`` for the first key). ``context`` is bound as AAD."""
        nonce = os.urandom(_NONCE_LEN)
        ct = self._aead(self.generation).encrypt(nonce, plain, context.encode())
        return f"{self.key_id(self.generation)}:" + base64.b64encode(nonce + ct).decode("ascii")

    def decrypt_bytes(self, token: str, context: str = "") -> bytes:
        """Inverse of :meth:`encrypt_bytes`, under whichever generation the token names.

        Raises:
            CryptoError: wrong key, wrong context or tampered ciphertext.
        """
        generation = self.generation_of(token)
        try:
            raw = base64.b64decode(token.partition(":")[2], validate=True)
            plain = self._aead(generation).decrypt(raw[:_NONCE_LEN], raw[_NONCE_LEN:], context.encode())
        except (InvalidTag, ValueError) as exc:
            raise CryptoError("ciphertext does not authenticate") from exc
        if generation > self.generation:
            self.generation = generation  # a rotation is under way: write under the new key from now on
        return plain

    def encrypt(self, plain: str, context: str = "") -> str:
        """Encrypt a text field."""
        return self.encrypt_bytes(plain.encode("utf-8"), context)

    def decrypt(self, token: str, context: str = "") -> str:
        """Decrypt a text field."""
        return self.decrypt_bytes(token, context).decode("utf-8")

    @property
    def lookup_key(self) -> bytes:
        """The key of :meth:`lookup_hash`, for pure code that must compute the same hashes (decisions)."""
        return self._lookup_key

    def lookup_hash(self, value: str, namespace: str) -> str:
        """Deterministic keyed hash (HMAC-SHA256 hex) of a normalised value, per namespace."""
        msg = namespace.encode() + b"\x00" + value.encode("utf-8")
        return hmac.new(self._lookup_key, msg, hashlib.sha256).hexdigest()


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise CryptoError(f"{path} is readable by others (mode {mode:04o}); chmod 600 {path}")


def _read_key(path: Path) -> bytes:
    _check_private(path)
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError) as exc:
        raise CryptoError(f"cannot read the master key from {path}: {exc}") from exc
    if len(key) != 32:
        raise CryptoError(f"{path} must hold 32 base64-encoded bytes")
    return key


def load_master_key(env_value: str | None, data_dir: Path, key_file: Path | None = None) -> bytes:
    """The master key from ``ANFANG_SECRET_KEY`` (base64), the file ``key_file`` (``secret_key_file``,
    e.g. on a separate volume or a secrets mount), or else ``{data_dir}/secret.key``.

    Key files must be private (mode 0600): a file others can read is refused. Only when no key is
    configured is ``{data_dir}/secret.key`` created (mode 0600) with a fresh random key, with a warning:
    a key beside the database protects nothing against someone who copies the data directory.

    Raises:
        CryptoError: the key does not decode to 32 bytes, a key file is missing or readable by others.
    """
    if env_value:
        try:
            key = base64.b64decode(env_value, validate=True)
        except ValueError as exc:
            raise CryptoError("ANFANG_SECRET_KEY is not valid base64") from exc
        if len(key) != 32:
            raise CryptoError("ANFANG_SECRET_KEY must decode to 32 bytes")
        return key
    if key_file is not None:
        if not key_file.exists():
            raise CryptoError(f"the master key file {key_file} does not exist")
        return _read_key(key_file)
    path = data_dir / "secret.key"
    if path.exists():
        return _read_key(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(base64.b64encode(key).decode("ascii") + "\n")
    log.warning(
        "created a master key beside the database (%s): set ANFANG_SECRET_KEY or secret_key_file to keep it apart",
        path,
    )
    return key
