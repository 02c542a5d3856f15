"""``anfang keys``: rotate the field key (every protected field re-encrypted, no downtime), and its status."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(help='Keys of personal data at rest (docs/privacy.md, "Keys").', no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")]


def _with_db(config: Path | None, body: Any) -> Any:
    from anfang.app import open_registry, site_cipher
    from anfang.config import ConfigError, load_settings
    from registry.db import open_connection

    try:
        settings = load_settings(config)
        cipher = site_cipher(settings)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> Any:
        async with open_registry(settings):
            return await body(open_connection(settings.db_url), settings.site, cipher)

    return asyncio.run(main())


@app.command("rotate")
def rotate_cmd(
    batch: Annotated[int, typer.Option(help="Rows per batch")] = 500,
    config: ConfigOpt = None,
) -> None:
    """Move to a new field key and re-encrypt every protected field under it (ID numbers, phones, names,
    credentials, face templates, visitor data, watchlist templates, capture images, the view-library
    outbox) while the platform runs; reads accept old and new keys until it is done."""
    from privacy.keys import rotate

    async def body(conn: Any, site: str, cipher: Any) -> dict[str, Any]:
        return (await rotate(conn, site, cipher, time.time(), batch=batch)).as_dict()

    typer.echo(json.dumps(_with_db(config, body), indent=2))


@app.command("status")
def status_cmd(config: ConfigOpt = None) -> None:
    """The current field-key generation and how many protected values are under each key."""
    from privacy.keys import current_generation, key_status

    async def body(conn: Any, site: str, _cipher: Any) -> dict[str, Any]:
        generation = await current_generation(conn, site)
        return {"generation": generation, "values_by_key": dict(sorted((await key_status(conn, site)).items()))}

    typer.echo(json.dumps(_with_db(config, body), indent=2))
