"""The platform running in-process against a real broker (embedded amqtt or Mosquitto), for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testkit import Device, Mosquitto, free_port

from anfang.accounts import OPERATOR_USER, read_or_create_secret
from anfang.app import Services, ServicesFactory, build_platform
from anfang.config import Settings
from anfang.service import Platform
from anfang.wiring import Registrar
from broker.embedded import EmbeddedBroker
from broker.mosquitto import MosquittoSync, acl_file, password_file, write_config
from registry.store import Registry
from twins.hooks import DeviceEvent

if TYPE_CHECKING:
    from anfang.services import AccessFeed
    from community.handler import AccessHandler
    from community.store import CommunityStore

SITE = "youzheng"


@dataclass
class Stack:
    """A running platform and its broker, as the tests and simulator scenarios see it."""

    settings: Settings
    platform: Platform
    host: str
    port: int
    site: str
    broker: str
    mosquitto: Mosquitto | None = None
    devices: list[Device] = field(default_factory=list)
    embedded: EmbeddedBroker | None = None  # the amqtt broker, when it is the one

    @property
    def registrar(self) -> Registrar:
        return _ReloadingRegistrar(self)

    @property
    def service_port(self) -> int:
        """Where the platform and operators connect (Mosquitto's service listener; else ``port``)."""
        return self.settings.mqtt_address[1]

    @property
    def operator_credentials(self) -> tuple[str, str]:
        return OPERATOR_USER, read_or_create_secret(self.settings.secrets_dir, OPERATOR_USER)

    async def sync_broker(self) -> None:
        """For Mosquitto: rewrite its password/ACL files from the registry and reload it."""
        if self.mosquitto is None:
            return
        entries = await self.platform.registry.credential_hashes()
        if self.settings.broker.mosquitto_dir is not None:
            await MosquittoSync(
                self.mosquitto.workdir, self.settings.mqtt_address, self.mosquitto.workdir / "mosquitto.pid"
            ).sync(entries)
            return
        # whole files only: Mosquitto may still be re-reading them for the previous reload
        for name, text in (("passwd", password_file(entries)), ("acl", acl_file(i for i, _ in entries))):
            (self.mosquitto.workdir / f"{name}.new").write_text(text)
            (self.mosquitto.workdir / f"{name}.new").replace(self.mosquitto.workdir / name)
        self.mosquitto.reload()

    async def add_device(self, device_id: str, kind: str, position: tuple[float, float] | None = None) -> str:
        secret = await self.platform.registry.add_device(self.site, device_id, kind, device_id, position)
        await self.sync_broker()
        if secret:
            await self._wait_credentials(device_id, secret)
        return secret or ""

    async def _wait_credentials(self, username: str, secret: str) -> None:
        """Mosquitto reloads asynchronously: retry a probe connection until the new secret works."""
        async with asyncio.timeout(10):
            while True:
                probe = Device(self.host, self.port, username, secret, client_id=username, will=False)
                code = await probe.connect()
                probe.close()
                if code == 0:
                    return
                await asyncio.sleep(0.05)  # polling Mosquitto's reload; there is no event to wait on

    async def device(self, device_id: str, secret: str, **kwargs: Any) -> Device:
        dev = Device(self.host, self.port, device_id, secret, site=self.site, **kwargs)
        code = await dev.connect()
        assert code == 0, f"{device_id} refused: {code}"
        self.devices.append(dev)
        return dev

    async def operator(self) -> Device:
        user, password = self.operator_credentials
        dev = Device(
            self.host, self.service_port, user, password, site=self.site, client_id=f"op-{free_port()}", will=False
        )
        assert await dev.connect() == 0
        self.devices.append(dev)
        return dev


class _ReloadingRegistrar(Registrar):
    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.platform.registry)
        self._stack = stack

    async def ensure_device(
        self, site: str, device_id: str, kind: str, name: str, position: tuple[float, float] | None
    ) -> str:
        secret = await super().ensure_device(site, device_id, kind, name, position)
        await self._stack.sync_broker()
        if secret:
            await self._stack._wait_credentials(device_id, secret)
        return secret


def make_settings(tmp: Path, *, embedded: bool, port: int) -> Settings:
    settings = Settings(site=SITE, data_dir=tmp / "data")
    if embedded:
        settings.broker.bind = f"127.0.0.1:{port}"
    else:
        settings.broker.embedded = False
        settings.mqtt.host, settings.mqtt.port = "127.0.0.1", port
    settings.broker.hash_iterations = 1000  # keep per-connection hashing cheap in tests
    return settings


@contextlib.asynccontextmanager
async def running_platform(
    tmp: Path,
    broker: str,
    services_factory: ServicesFactory | None = None,
    settings: Settings | None = None,
    *,
    generated: bool = False,
) -> AsyncIterator[Stack]:
    """Start the platform in this event loop against ``broker`` ('amqtt' or 'mosquitto').

    ``generated``: Mosquitto runs the configuration ``anfang broker mosquitto-config`` writes (devices on
    ``Stack.port``, the platform and operators on ``Stack.service_port``), and the platform keeps its
    files (``broker.mosquitto_dir``, SIGHUP through ``broker.mosquitto_pid_file``)."""
    port = free_port()
    settings = settings or make_settings(tmp, embedded=broker == "amqtt", port=port)
    port = settings.mqtt_address[1]
    server: Mosquitto | None = None
    device_port = free_port() if generated and broker == "mosquitto" else None
    if broker == "mosquitto":
        workdir = tmp / "mosquitto"
        workdir.mkdir(exist_ok=True)
        (workdir / "passwd").write_text("")
        (workdir / "acl").write_text("")
        server = Mosquitto(workdir, port=settings.mqtt.port)
        if generated:
            settings.broker.mosquitto_dir = workdir
            settings.broker.mosquitto_pid_file = workdir / "mosquitto.pid"
    brokers: list[EmbeddedBroker] = []
    try:
        async with build_platform(settings, services_factory, brokers=brokers) as platform:
            stack = Stack(
                settings,
                platform,
                "127.0.0.1",
                port if broker == "amqtt" else (device_port or settings.mqtt.port),
                settings.site,
                broker,
                server,
                embedded=brokers[0] if brokers else None,
            )
            if server is not None and generated:
                entries = await platform.registry.credential_hashes()
                # devices on a listener of their own, the platform and operators on settings.mqtt.port
                listeners = (f"{device_port} 127.0.0.1", f"{server.port} 127.0.0.1")
                write_config(server.workdir, entries, listeners[0], settings.limits.max_payload_bytes, listeners[1])
                server.start(generated=True, extra=f"pid_file {server.workdir / 'mosquitto.pid'}\n")
            elif server is not None:
                entries = await platform.registry.credential_hashes()
                (server.workdir / "passwd").write_text(password_file(entries))
                (server.workdir / "acl").write_text(acl_file(i for i, _ in entries))
                server.start()
            task = asyncio.create_task(platform.run(), name="platform")
            ready = asyncio.create_task(platform.ready.wait())
            await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            assert platform.ready.is_set(), "platform did not become ready"
            try:
                yield stack
            finally:
                for dev in stack.devices:
                    with contextlib.suppress(Exception):
                        dev.close()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        if server is not None:
            server.stop()


@dataclass
class ObservedServices:
    """``open_services`` unchanged, plus a tap on the access decisions it makes (a refusal sends nothing to
    the device, so the tests wait for its decision instead)."""

    decisions: asyncio.Queue[DeviceEvent] = field(default_factory=asyncio.Queue)
    feed: AccessFeed | None = None

    @property
    def access(self) -> AccessHandler:
        """The platform's access handler."""
        assert self.feed is not None, "platform not started"
        return self.feed.access

    @property
    def store(self) -> CommunityStore:
        """The access registry the platform decides from (changes through it are seen at once)."""
        return self.access.store

    @contextlib.asynccontextmanager
    async def factory(self, settings: Settings, registry: Registry) -> AsyncIterator[Services]:
        """A ``ServicesFactory`` for ``running_platform``."""
        from anfang.services import AccessFeed, open_services  # the full platform: models load only here

        async with open_services(settings, registry) as services:
            self.feed = next(h for h in services.handlers if isinstance(h, AccessFeed))
            services.platform_event_taps.append(
                lambda event: self.decisions.put_nowait(event) if event.type == "access_decided" else None
            )
            yield services

    async def decision(self, device: str, timeout: float = 10.0) -> dict[str, Any]:
        """The data of the next access decision at ``device`` (earlier ones elsewhere are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                data = (await self.decisions.get()).data
                if data.get("device") == device:
                    return dict(data)
