"""Device registration with secret rotation, for in-process provisioning (``anfang site load`` and the
tests' platform stacks)."""

from __future__ import annotations

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
