"""MQTT over TLS on both brokers and HTTPS for the API, with certificates from ``anfang certs init``:
a device with a password over TLS (server certificate checked against the site CA), a device by its
client certificate alone (CN = device id), a certificate from another CA refused, a TLS client
without a certificate refused where certificates are required."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from platform_kit import make_settings, running_platform
from process_kit import PlatformProcess, cli
from testkit import Device, Mosquitto, free_port

from broker.acl import Identity, Role
from broker.certs import SitePki, init_site, issue_device
from broker.credentials import hash_secret
from broker.embedded import BrokerTls, EmbeddedBroker
from broker.mosquitto import MosquittoTls, write_config

SITE = "youzheng"
DEVICE, SECRET = "door-tls", "s3cret"
PLATFORM, PLATFORM_SECRET = "anfang-platform", "platform-secret"


class _Registry:
    """The two accounts these tests need, as the registry would answer for them."""

    async def authenticate(self, username: str | None, password: str | None) -> Identity | None:
        if username == DEVICE and password == SECRET:
            return Identity(DEVICE, Role.DEVICE, SITE)
        if username == PLATFORM and password == PLATFORM_SECRET:
            return Identity(PLATFORM, Role.PLATFORM)
        return None

    async def device_identity(self, device_id: str) -> Identity | None:
        return Identity(DEVICE, Role.DEVICE, SITE) if device_id == DEVICE else None


@dataclass
class Ports:
    plain: int
    tls: int


@pytest.fixture
def pki(tmp_path: Path) -> SitePki:
    init_site(tmp_path / "pki", SITE, ["localhost", "127.0.0.1"], [DEVICE])
    init_site(tmp_path / "other", SITE, ["localhost"], [DEVICE])  # a CA the brokers do not trust
    return SitePki(tmp_path / "pki")


@contextlib.asynccontextmanager
async def _broker(kind: str, pki: SitePki, tmp: Path, *, require_cert: bool) -> AsyncIterator[Ports]:
    plain, tls = free_port(), free_port()
    if kind == "amqtt":
        spec = BrokerTls(f"127.0.0.1:{tls}", pki.server_cert, pki.server_key, pki.ca_cert, require_cert)
        async with EmbeddedBroker(f"127.0.0.1:{plain}", _Registry(), tls=spec):
            yield Ports(plain, tls)
        return
    entries = [
        (Identity(DEVICE, Role.DEVICE, SITE), hash_secret(SECRET, 1000)),
        (Identity(PLATFORM, Role.PLATFORM), hash_secret(PLATFORM_SECRET, 1000)),
    ]
    spec_m = MosquittoTls(f"{tls} 127.0.0.1", pki.ca_cert, pki.server_cert, pki.server_key, require_cert)
    # as `anfang broker mosquitto-config` lays it out: devices' listener, the service listener (the
    # platform's account, the watcher below), and devices over TLS
    devices = free_port()
    write_config(tmp / "mq", entries, f"{devices} 127.0.0.1", 1 << 18, f"{plain} 127.0.0.1", spec_m)
    server = Mosquitto(tmp / "mq", port=plain)
    server.start(generated=True)
    try:
        yield Ports(plain, tls)
    finally:
        server.stop()


async def _connect(
    port: int, ca: Path, *, password: str = "", cert: tuple[Path, Path] | None = None, device: str = DEVICE
) -> Device | None:
    """A connected device, or None when the TLS handshake or the CONNECT was refused."""
    dev = Device("127.0.0.1", port, device, password, site=SITE, will=False)
    dev.client.tls_set(
        ca_certs=str(ca), certfile=str(cert[0]) if cert else None, keyfile=str(cert[1]) if cert else None
    )
    dev.client.reconnect_delay_set(30, 60)  # a refused client is not to retry within the test
    failed: asyncio.Future[None] = dev.loop.create_future()

    def failing() -> None:
        if not failed.done():
            failed.set_result(None)

    def fail(*_: object) -> None:
        dev.loop.call_soon_threadsafe(failing)

    dev.client.on_connect_fail = fail
    dev.client.on_disconnect = fail
    connecting = asyncio.ensure_future(dev.connect())
    await asyncio.wait({connecting, failed}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if connecting.done() and not connecting.cancelled() and connecting.exception() is None and connecting.result() == 0:
        return dev
    connecting.cancel()
    dev.close()
    return None


async def _delivered(ports: Ports, dev: Device) -> bool:
    """The device's report on its own topic reaches the platform's account (so the ACL knew who it was)."""
    watcher = Device("127.0.0.1", ports.plain, PLATFORM, PLATFORM_SECRET, client_id="watcher", will=False)
    assert await watcher.connect() == 0
    try:
        await watcher.subscribe(f"anfang/{SITE}/{DEVICE}/#")
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {}}))
        _, report = await watcher.expect(r"/twin/reported$")
        return bool(report == {"seq": 1, "state": {}})
    finally:
        watcher.close()
        dev.close()


BROKERS = pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])


@BROKERS
async def test_a_device_with_its_password_over_tls(kind: str, pki: SitePki, tmp_path: Path) -> None:
    async with _broker(kind, pki, tmp_path, require_cert=False) as ports:
        dev = await _connect(ports.tls, pki.ca_cert, password=SECRET)
        assert dev is not None and await _delivered(ports, dev)
        assert await _connect(ports.tls, pki.ca_cert, password="wrong") is None
        # a client that does not trust the site CA does not get through the handshake
        assert await _connect(ports.tls, SitePki(tmp_path / "other").ca_cert, password=SECRET) is None


@BROKERS
async def test_a_device_by_its_client_certificate(kind: str, pki: SitePki, tmp_path: Path) -> None:
    async with _broker(kind, pki, tmp_path, require_cert=True) as ports:
        cert = (pki.device_cert(DEVICE), pki.device_key(DEVICE))
        dev = await _connect(ports.tls, pki.ca_cert, cert=cert)  # no password
        assert dev is not None and await _delivered(ports, dev)
        other = SitePki(tmp_path / "other")
        wrong_ca = (other.device_cert(DEVICE), other.device_key(DEVICE))  # same CN, another CA
        assert await _connect(ports.tls, pki.ca_cert, cert=wrong_ca) is None
        assert await _connect(ports.tls, pki.ca_cert, password=SECRET) is None  # no certificate


def test_certs_init_keeps_keys_private_and_the_ca_across_runs(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    init_site(root, SITE, ["mqtt.example.org"], ["door-1"])
    pki = SitePki(root)
    for key in (pki.ca_key, pki.server_key, pki.device_key("door-1")):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    ca = pki.ca_cert.read_bytes()
    assert init_site(root, SITE, [], ["door-1"]) == []  # nothing missing: nothing rewritten
    issue_device(root, SITE, "door-2")
    assert pki.ca_cert.read_bytes() == ca
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert context.cert_store_stats()["x509_ca"] == 1


async def test_the_api_over_https_with_certs_from_the_cli(tmp_path: Path) -> None:
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANFANG_")}
    env.update(
        {
            "ANFANG_DATA_DIR": str(tmp_path / "data"),
            "ANFANG_BROKER_BIND": f"127.0.0.1:{free_port()}",
            "ANFANG_API_BIND": f"127.0.0.1:{api_port}",
            "ANFANG_TLS_API": "true",
            "ANFANG_TLS_MQTT_BIND": f"127.0.0.1:{free_port()}",
        }
    )
    made = cli(env, tmp_path, "certs", "init", "--device", "door-1")  # into the default tls.dir
    pki = SitePki(tmp_path / "data" / "tls")
    assert str(pki.server_key) in made and pki.device_cert("door-1").exists()
    platform = PlatformProcess(env, tmp_path)
    try:
        await asyncio.to_thread(platform.start)
        async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(pki.ca_cert))) as http:
            answer = await http.get(f"https://127.0.0.1:{api_port}/healthz")
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the port
            async with httpx.AsyncClient() as plain:
                await plain.get(f"http://127.0.0.1:{api_port}/healthz")
        # the compose healthcheck's command speaks HTTPS too, checking the certificate against the site CA
        assert "alive" in cli(env, tmp_path, "health")
    finally:
        platform.stop()


async def test_the_platform_applies_a_report_from_a_device_known_by_its_certificate(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, embedded=True, port=free_port())
    settings.tls.dir = tmp_path / "pki"
    settings.tls.mqtt_bind = f"127.0.0.1:{free_port()}"
    tls_port = int(settings.tls.mqtt_bind.rsplit(":", 1)[1])
    init_site(settings.tls_dir, SITE, [], ["door-cert"])
    pki = SitePki(settings.tls_dir)
    async with running_platform(tmp_path, "amqtt", settings=settings) as stack:
        await stack.add_device("door-cert", "door_lock")
        cert = (pki.device_cert("door-cert"), pki.device_key("door-cert"))
        dev = await _connect(tls_port, pki.ca_cert, cert=cert, device="door-cert")
        assert dev is not None
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"hold_seconds": 4}}))
        await stack.platform.wait_until(
            lambda p: (doc := p.cached_twin("door-cert")) is not None and doc.last_seq == 1, 10
        )
        dev.close()
        # a disabled device's certificate no longer lets it in
        await stack.platform.registry.set_disabled("door-cert", True)
        assert await _connect(tls_port, pki.ca_cert, cert=cert, device="door-cert") is None
