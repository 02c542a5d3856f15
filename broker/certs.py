"""A site's own certificate authority: the CA, the server certificate (MQTT over TLS and HTTPS) and
device certificates whose common name is the device id (``anfang certs init``; docs/deploy.md).

Keys are EC P-256, written 0600; certificates are PEM. An existing CA is kept (re-running adds what
is missing), so device certificates issued earlier stay valid.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825  # the longest validity clients such as Apple's accept for server certificates


class CertError(Exception):
    """A certificate could not be made or read; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class SitePki:
    """Where a site's certificates live: ``ca.crt``/``ca.key``, ``server.crt``/``server.key`` and
    ``devices/{id}.crt``/``.key``."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    def device_cert(self, device_id: str) -> Path:
        return self.root / "devices" / f"{device_id}.crt"

    def device_key(self, device_id: str) -> Path:
        return self.root / "devices" / f"{device_id}.key"


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)  # also when the file existed with wider permissions


def _write_public(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, site: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"anfang {site}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int, now: dt.datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
    )


def make_ca(site: str, now: dt.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"anfang {site} site CA", site)
    cert = (
        _builder(name, name, key.public_key(), CA_DAYS, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    site: str,
    now: dt.datetime,
    *,
    hosts: Iterable[str] = (),
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A leaf certificate: a server's when ``hosts`` are given (DNS names or IP addresses), else a
    device's client certificate with ``common_name`` = the device id."""
    key = ec.generate_private_key(ec.SECP256R1())
    hosts = list(hosts)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name, site), ca_cert.subject, key.public_key(), LEAF_DAYS, now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _load_ca(pki: SitePki) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    except (OSError, ValueError) as exc:
        raise CertError(f"cannot read the site CA in {pki.root}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{pki.ca_key} is not an EC key made by anfang certs init")
    return key, cert


def init_site(
    root: Path, site: str, hosts: Iterable[str], devices: Iterable[str] = (), *, now: dt.datetime | None = None
) -> list[Path]:
    """Make (or keep) the site CA, make the server certificate for ``hosts`` if missing, and a client
    certificate for each of ``devices`` that has none; returns the files written."""
    now = now or dt.datetime.now(dt.UTC)
    pki, written = SitePki(root), []
    if pki.ca_cert.exists() and pki.ca_key.exists():
        ca_key, ca_cert = _load_ca(pki)
    else:
        ca_key, ca_cert = make_ca(site, now)
        _write_private(pki.ca_key, _key_pem(ca_key))
        _write_public(pki.ca_cert, ca_cert)
        written += [pki.ca_key, pki.ca_cert]
    if not pki.server_cert.exists():
        hosts = list(hosts) or ["localhost", "127.0.0.1"]
        key, cert = issue(ca_key, ca_cert, hosts[0], site, now, hosts=hosts)
        _write_private(pki.server_key, _key_pem(key))
        _write_public(pki.server_cert, cert)
        written += [pki.server_key, pki.server_cert]
    for device_id in devices:
        if not pki.device_cert(device_id).exists():
            written += issue_device(root, site, device_id, now=now)
    return written


def issue_device(root: Path, site: str, device_id: str, *, now: dt.datetime | None = None) -> list[Path]:
    """A client certificate (CN = ``device_id``) signed by the site CA; returns the key and cert paths."""
    pki = SitePki(root)
    ca_key, ca_cert = _load_ca(pki)
    key, cert = issue(ca_key, ca_cert, device_id, site, now or dt.datetime.now(dt.UTC))
    _write_private(pki.device_key(device_id), _key_pem(key))
    _write_public(pki.device_cert(device_id), cert)
    return [pki.device_key(device_id), pki.device_cert(device_id)]


def common_name(peer_cert: dict[str, object] | None) -> str | None:
    """The subject common name of a verified peer certificate as ``ssl.SSLSocket.getpeercert()`` gives it."""
    if not peer_cert:
        return None
    for rdn in peer_cert.get("subject", ()):  # type: ignore[attr-defined]  # a tuple of tuples of pairs
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
