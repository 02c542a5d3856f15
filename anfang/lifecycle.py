"""Device lifecycle: disable, enable, delete, new secret — each cutting the device off the broker at once.

The registry change comes first, then (for an external Mosquitto whose files this platform manages)
Mosquitto re-reads its password file, then the device's live connection is cut (:mod:`broker.cutoff`).
Its next CONNECT is checked against the new state: a disabled or deleted device, or the old secret,
is refused. Used by ``anfang devices`` and the HTTP API (:mod:`anfang.devices_api`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from anfang.accounts import read_or_create_secret
from anfang.config import Settings
from broker.acl import Identity
from broker.cutoff import BrokerUnreachable, CutOff, CutOffError, EmbeddedCutOff, TakeoverCutOff
from broker.embedded import EmbeddedBroker
from broker.mosquitto import MosquittoSync
from registry.records import DeviceInfo
from registry.store import Registry

__all__ = ["BrokerSync", "DeviceLifecycle", "lifecycle_for"]

log = logging.getLogger(__name__)


class BrokerSync(Protocol):
    """Makes the broker check new connections against ``entries`` before returning."""

    async def sync(self, entries: list[tuple[Identity, str]]) -> None: ...


class DeviceLifecycle:
    """Changes a device's standing in the registry and on the broker."""

    def __init__(
        self,
        site: str,
        registry: Registry,
        cutoff: Callable[[], CutOff],
        sync: BrokerSync | None = None,
        forget: Callable[[str], None] = lambda device_id: None,
    ) -> None:
        """``cutoff``: how to cut a connection now (the embedded broker once this process runs it);
        ``sync``: an external Mosquitto's files, when this platform keeps them; ``forget``: drop a
        deleted device from this process's in-memory caches."""
        self.site, self.registry = site, registry
        self._registry, self._cutoff, self._sync, self._forget = registry, cutoff, sync, forget

    async def disable(self, device_id: str) -> DeviceInfo:
        """Refuse the device from now on and end its live connection."""
        info = await self._registry.set_disabled(device_id, True)
        await self._cut(info)
        log.warning("device %s disabled", device_id)
        return info

    async def enable(self, device_id: str) -> DeviceInfo:
        """Accept the device again (with the secret it had)."""
        info = await self._registry.set_disabled(device_id, False)
        if self._sync is not None:
            await self._sync.sync(await self._registry.credential_hashes())
        log.warning("device %s enabled", device_id)
        return info

    async def delete(self, device_id: str) -> DeviceInfo:
        """Remove the device's registration, credentials and twin; cut it off and clear what the broker
        retains for it. Its events and records stay until the retention purge (docs/privacy.md)."""
        info = await self._registry.delete_device(device_id)
        self._forget(device_id)
        await self._cut(info, forget=True)
        log.warning("device %s deleted", device_id)
        return info

    async def rotate(self, device_id: str) -> tuple[str, CutOffError | None]:
        """A new secret; connections opened with the old one are cut. Returns the secret (shown once,
        so also when the cut failed) and why the cut failed, if it did."""
        secret = await self._registry.rotate_secret(device_id)
        info = await self._registry.get_device(device_id)
        log.warning("device %s has a new secret", device_id)
        try:
            if info is not None:
                await self._cut(info)
        except BrokerUnreachable:
            pass  # nothing is connected to a broker that is not running
        except CutOffError as exc:
            return secret, exc
        return secret, None

    async def _cut(self, info: DeviceInfo, *, forget: bool = False) -> None:
        if self._sync is not None:
            await self._sync.sync(await self._registry.credential_hashes())
        if not info.virtual:  # virtual devices never connect
            await self._cutoff().cut_off(info.site, info.id, forget=forget)


def lifecycle_for(
    settings: Settings,
    registry: Registry,
    embedded: Callable[[], EmbeddedBroker | None] = lambda: None,
    forget: Callable[[str], None] = lambda device_id: None,
) -> DeviceLifecycle:
    """The lifecycle of the configured site. Connections are cut through ``embedded()`` when this process
    runs the embedded broker, else by a takeover with the platform account (the CLI, another worker,
    Mosquitto). With an external Mosquitto and ``broker.mosquitto_dir`` set, its files are kept too."""

    def cutoff() -> CutOff:
        broker = embedded()
        if broker is not None:
            return EmbeddedCutOff(broker)
        password = settings.mqtt.password or read_or_create_secret(settings.secrets_dir, settings.mqtt.username)
        return TakeoverCutOff(*settings.mqtt_address, settings.mqtt.username, password)

    sync = None
    if not settings.broker.embedded and settings.broker.mosquitto_dir is not None:
        sync = MosquittoSync(
            settings.broker.mosquitto_dir,
            settings.mqtt_address,
            settings.broker.mosquitto_pid_file,
            hash_iterations=settings.broker.hash_iterations,
        )
    return DeviceLifecycle(settings.site, registry, cutoff, sync, forget)
