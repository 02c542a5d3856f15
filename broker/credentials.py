"""Device and service secrets, stored only as slow hashes.

The hash is PBKDF2-SHA512 in Mosquitto's ``$7$`` format (``$7$iterations$salt$hash``), so the
same stored value authenticates a device on the embedded broker and in the password file
written for an external Mosquitto.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

DEFAULT_ITERATIONS = 10_000
_SALT_BYTES = 12


def new_secret() -> str:
    """A fresh random device secret (shown once, never stored in clear)."""
    return secrets.token_urlsafe(24)


def hash_secret(secret: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check of ``secret`` against a ``$7$`` hash; malformed hashes never verify."""
    try:
        _, tag, iterations, salt_b64, digest_b64 = stored.split("$")
        if tag != "7":
            return False
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        rounds = int(iterations)
    except ValueError:
        return False
    if not 1 <= rounds <= 10_000_000:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, rounds)
    return hmac.compare_digest(digest, expected)
