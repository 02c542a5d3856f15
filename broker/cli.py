"""``anfang certs``: the site's certificate authority, server and device certificates (docs/deploy.md, "TLS")."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker.certs import CertError, init_site, issue_device

app = typer.Typer(help="TLS certificates: the site CA, the server's and devices' (see docs/deploy.md).")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Directory (default: tls.dir, or {data_dir}/tls)")]


def _dir_and_site(config: Path | None, out: Path | None) -> tuple[Path, str]:
    from anfang.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return out or settings.tls_dir, settings.site


@app.command("init")
def init_cmd(
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Name or address devices and browsers use (repeatable)")
    ] = None,
    device: Annotated[list[str] | None, typer.Option("--device", help="Also a client certificate for it")] = None,
    out: OutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Make the site CA (kept if present), the server certificate for ``--host`` (default localhost and
    127.0.0.1) and client certificates (CN = device id) for ``--device``; keys are written 0600."""
    root, site = _dir_and_site(config, out)
    try:
        written = init_site(root, site, host or [], device or [])
    except CertError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(f"wrote {path}")
    if not written:
        typer.echo(f"nothing to do: {root} already holds the CA and the server certificate")


@app.command("device")
def device_cmd(
    device_id: Annotated[str, typer.Argument(help="Device id: the certificate's common name")],
    out: OutOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Issue (or re-issue) a device's client certificate from the site CA."""
    root, site = _dir_and_site(config, out)
    try:
        written = issue_device(root, site, device_id)
    except CertError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for path in written:
        typer.echo(f"wrote {path}")
