"""Service-account secrets of this installation, kept in ``{data_dir}/secrets`` (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from broker.acl import Role
from broker.credentials import new_secret
from registry.store import Registry

PLATFORM_USER = "anfang-platform"
OPERATOR_USER = "anfang-operator"


def secret_file(secrets_dir: Path, username: str) -> Path:
    return secrets_dir / f"{username}.secret"


def read_or_create_secret(secrets_dir: Path, username: str) -> str:
    """The stored secret for a service account, generated on first use."""
    path = secret_file(secrets_dir, username)
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret + "\n")
    return secret


async def ensure_service_accounts(
    registry: Registry, secrets_dir: Path, platform_user: str, platform_password: str | None
) -> tuple[str, str]:
    """Make sure the platform and operator accounts exist; returns their passwords."""
    platform_secret = platform_password or read_or_create_secret(secrets_dir, platform_user)
    operator_secret = read_or_create_secret(secrets_dir, OPERATOR_USER)
    await registry.ensure_service_account(platform_user, Role.PLATFORM, platform_secret)
    await registry.ensure_service_account(OPERATOR_USER, Role.OPERATOR, operator_secret)
    return platform_secret, operator_secret
