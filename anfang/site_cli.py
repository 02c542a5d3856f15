"""``anfang site``: load a site file into the registry (the one site model), show the stored model.

``anfang site load FILE`` validates the plan (:class:`twins.site.SiteModel`), stores it in the registry
(``site_models``), registers its devices and tags and the places access control needs. With ``--roster``
it also registers the file's people (cards, PINs, face templates when consented), vehicles and watchlist
in the access-control registry (encrypted); with ``--secrets-out PATH`` every physical device gets a
fresh secret, written to PATH (JSON, mode 0600) — the way an installer, or the simulator, provisions a site.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from anfang.config import ConfigError, Settings, load_settings

app = typer.Typer(help="The site model: load a site file into the registry, show it.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml)")]


@dataclass
class LoadReport:
    """What ``site load`` did."""

    site: str = ""
    version: int = 0
    devices_created: int = 0
    secrets: dict[str, str] = field(default_factory=dict)
    people: int = 0
    faces: int = 0
    vehicles: int = 0
    watchlist: int = 0
    unserved: list[str] = field(default_factory=list)  # new devices no partition owner confirmed (yet)


def write_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Write device secrets atomically with mode 0600 (never group- or world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(secrets, f, indent=1, sort_keys=True)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def _watchlist(store: Any, site: str, entries: list[dict[str, Any]], clock: Callable[[], float]) -> int:
    """Watchlist entries of a site file: a face (``face_template``) or a plate, once each (by label = id)."""
    from community.models import WatchRow

    added = 0
    for entry in entries:
        label = str(entry["id"])
        if await WatchRow.filter(site=site, label=label, active=True).exists():
            continue
        kind = "plate" if entry.get("plate") else "face"
        if kind == "face" and entry.get("face_template") is None:
            continue  # a face of interest without a template cannot be matched
        await store.watch.add_watch(
            kind=kind,
            reason=str(entry.get("reason") or "watchlist"),
            added_by="site-load",
            now=clock(),
            plate=entry.get("plate"),
            template=entry.get("face_template"),
            label=label,
        )
        added += 1
    return added


def read_site(path: Path) -> tuple[dict[str, Any], str]:
    """A site file parsed (not yet validated) and its absolute path, the model's ``source``."""
    from twins.site import read_site_file

    return read_site_file(path), str(path.resolve())


async def load_site(settings: Settings, doc: dict[str, Any], source: str, *, roster: bool, secrets: bool) -> LoadReport:
    """Store a parsed site file's model and register its devices, places and (``roster``) people."""
    from tortoise.transactions import in_transaction

    from anfang.app import open_registry, site_cipher
    from anfang.workers import announce_new_devices
    from community.store import CommunityStore
    from registry.db import connection_name
    from registry.sites import save_site_model
    from twins.site import site_from_mapping

    model = site_from_mapping(doc, source)
    rep = LoadReport(site=model.site)
    async with open_registry(settings) as (registry, _twins):
        stored = await save_site_model(registry, model, source)
        rep.version = stored.version
        created: list[str] = []
        for info in model.device_infos().values():
            existing = await registry.get_device(info.id)
            if existing is None:
                secret = await registry.add_device(model.site, info.id, info.kind, info.name, info.position)
                rep.devices_created += 1
                if secret:
                    created.append(info.id)
            elif secrets and not existing.virtual:
                secret = await registry.rotate_secret(info.id)
            else:
                secret = None
            if secret and secrets:
                rep.secrets[info.id] = secret
        # partitioned: the secrets are handed out once the owners have subscribed to the new devices
        if created and secrets:
            served = await announce_new_devices(settings, model.site, created)
            rep.unserved = [] if served is None else sorted(set(created) - set(served))
        store = CommunityStore(site_cipher(settings), model.site)
        async with in_transaction(connection_name(settings.db_url)):  # one commit for the site, not one per row
            await _register(store, model, doc, rep, roster=roster)
    return rep


async def _register(store: Any, model: Any, doc: dict[str, Any], rep: LoadReport, *, roster: bool) -> None:
    """Households, and with ``roster`` people, vehicles and watchlist, in the access-control registry."""
    from community.importer import StorePeopleRegistrar, import_households

    await import_households(model.plan_document(), store)  # buildings and devices: the stored site model
    if roster:
        people = StorePeopleRegistrar(store, time.time, operator="site-load")
        for p in doc.get("people") or []:
            await people.ensure_person(model.site, p)
        for v in doc.get("vehicles") or []:
            await people.ensure_vehicle(model.site, str(v["plate"]), str(v["owner"]))
        rep.people, rep.faces, rep.vehicles = people.report.people, people.report.faces, people.report.vehicles
        rep.watchlist = await _watchlist(store, model.site, list(doc.get("watchlist") or []), time.time)


@app.command("load")
def load_cmd(
    path: Annotated[Path, typer.Argument(help="site file (YAML: plan, optionally roster)")],
    roster: Annotated[bool, typer.Option(help="also register people, credentials, vehicles and watchlist")] = False,
    secrets_out: Annotated[
        Path | None, typer.Option(help="give every physical device a fresh secret and write them here (0600)")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate a site file, keep its model in the registry and register its devices and places."""
    import asyncio

    from twins.errors import TwinError
    from twins.site import SiteError

    try:
        settings = load_settings(config)
        doc, source = read_site(path)
        rep = asyncio.run(load_site(settings, doc, source, roster=roster, secrets=secrets_out is not None))
    except (ConfigError, SiteError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except TwinError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    if rep.site != settings.site:
        typer.echo(f"note: the file describes site {rep.site!r}; the configuration runs {settings.site!r}", err=True)
    line = f"site {rep.site}: model version {rep.version}, {rep.devices_created} devices created"
    if roster:
        line += f"; {rep.people} people ({rep.faces} faces), {rep.vehicles} vehicles, {rep.watchlist} watchlist entries"
    if secrets_out is not None:
        write_secrets(secrets_out, rep.secrets)
        line += f"; {len(rep.secrets)} device secrets in {secrets_out}"
    typer.echo(line)
    if rep.unserved:
        typer.echo(
            f"warning: no worker serves {', '.join(rep.unserved[:10])} yet; their messages before one does are lost",
            err=True,
        )


@app.command("show")
def show_cmd(config: ConfigOpt = None) -> None:
    """Print the site model the registry keeps for the configured site (JSON)."""
    import asyncio

    from anfang.app import open_registry
    from registry.sites import load_site_model

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go() -> dict[str, Any] | None:
        async with open_registry(settings):
            stored = await load_site_model(settings.site)
            if stored is None:
                return None
            return {"version": stored.version, "source": stored.source, "model": stored.model.plan_document()}

    out = asyncio.run(go())
    if out is None:
        typer.echo(f"no site model loaded for {settings.site} (anfang site load FILE)", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(out, ensure_ascii=False, indent=1))
