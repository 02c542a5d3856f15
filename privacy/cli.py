"""``anfang privacy``: enforce the site's retention now (the platform also does so on a schedule)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated

import typer

from privacy.purge import PurgeReport, RetentionPolicy, purge, trim_jsonl

app = typer.Typer(help="Personal data: retention purge (see docs/privacy.md).", no_args_is_help=True)


@app.command("purge")
def purge_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be removed")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")] = None,
) -> None:
    """Remove what is past its retention (stranger captures, access records, location tracks, ...),
    keep watchlist evidence of open cases, shrink the SQLite file; print what was removed."""
    from anfang.app import open_registry
    from anfang.config import ConfigError, load_settings
    from registry.db import open_connection

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    keep = settings.privacy
    policy = RetentionPolicy(
        keep.strangers_days, keep.captures_days, keep.decisions_days, keep.location_days, keep.audit_days,
        keep.passes_days, keep.events_days,
    )  # fmt: skip

    async def main() -> PurgeReport:
        async with open_registry(settings):
            return await purge(open_connection(settings.db_url), settings.site, policy, time.time(), dry_run=dry_run)

    report = asyncio.run(main())
    out = report.as_dict()
    if not dry_run:
        out["rule_audit_lines"] = trim_jsonl(
            settings.data_dir / "rule-audit.jsonl", time.time() - keep.audit_days * 86400
        )
    typer.echo(json.dumps(out, indent=2))
