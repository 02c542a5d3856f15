"""Entry points other tools use to reach the registry (e.g. the simulator's provisioning)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from anfang.config import Settings, load_settings
from registry.store import Registry


class Registrar:
    """Creates devices, or gives existing ones a fresh secret; returns the secret to store."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def ensure_device(
        self, site: str, device_id: str, kind: str, name: str, position: tuple[float, float] | None
    ) -> str:
        existing = await self.registry.get_device(device_id)
        if existing is None:
            secret = await self.registry.add_device(site, device_id, kind, name, position)
            return secret or ""
        if existing.virtual:
            return ""
        return await self.registry.rotate_secret(device_id)


@asynccontextmanager
async def open_registrar(config_path: Path | None = None, settings: Settings | None = None) -> AsyncIterator[Registrar]:
    from anfang.app import open_registry

    async with open_registry(settings or load_settings(config_path)) as (registry, _store):
        yield Registrar(registry)
