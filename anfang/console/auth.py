"""Console sign-in, pure: password hashing, session and link tokens, CSRF tokens, session expiry.

Passwords are stored as scrypt hashes (``scrypt$n$r$p$salt$hash``, salt and hash base64): memory-hard
and slow on purpose, from the standard library. Session cookies and one-time sign-in links are random
tokens; only their SHA-256 is stored, so a copy of the database signs nobody in. The CSRF token of a
session is an HMAC of its session token: the page carries it, the HttpOnly cookie carries the
session, and a form posted from another site has the cookie but cannot know the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = [
    "SCRYPT_N",
    "csrf_token",
    "hash_password",
    "new_token",
    "session_alive",
    "token_hash",
    "verify_csrf",
    "verify_password",
]

#: scrypt cost: 2**15 × 8 × 128 B = 32 MiB per check, about 0.1 s on one core.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
_MAXMEM = 64 * 1024 * 1024
_SALT_BYTES = 16


def hash_password(password: str, *, n: int = SCRYPT_N) -> str:
    """A salted scrypt hash of ``password`` to store (never the password itself)."""
    salt = secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P, maxmem=_MAXMEM)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; malformed hashes never verify."""
    try:
        tag, n_s, r_s, p_s, salt_b64, digest_b64 = stored.split("$")
        n, r, p = int(n_s), int(r_s), int(p_s)
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    if tag != "scrypt" or not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 4):
        return False
    try:
        digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def new_token() -> str:
    """A fresh random token (session cookie, one-time sign-in link)."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    """The CSRF token that belongs to a session."""
    return hmac.new(session_token.encode(), b"anfang-console-csrf", hashlib.sha256).hexdigest()


def verify_csrf(session_token: str, presented: str | None) -> bool:
    """``presented`` is the session's CSRF token."""
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), presented.encode("utf-8", "surrogatepass"))


def session_alive(created_at: float, last_seen: float, now: float, *, idle_s: float, max_age_s: float) -> bool:
    """A session is alive until it was idle for ``idle_s`` or is ``max_age_s`` old."""
    return now - last_seen < idle_s and now - created_at < max_age_s
