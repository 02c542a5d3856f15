"""``anfang audit``: the audit log of personal-data access, listed and filtered (docs/privacy.md)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Annotated

import typer

from privacy.audit import AuditEntry, plate_ref, search_audit

__all__ = ["app", "parse_since"]

app = typer.Typer(
    help="Who read or changed personal data, why and when (the audit log; append-only).",
    invoke_without_command=True,
)

_AGO = re.compile(r"^(\d+(?:\.\d+)?)([mhd])$")


def parse_since(text: str, now: float) -> float:
    """``30m``, ``24h``, ``7d`` ago; an ISO date or date-time (local time unless it names a zone); or epoch
    seconds.

    Raises:
        ValueError: none of these.
    """
    m = _AGO.match(text.strip())
    if m:
        return now - float(m.group(1)) * {"m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    return dt.datetime.fromisoformat(text.strip()).timestamp()


def _line(e: AuditEntry) -> str:
    when = dt.datetime.fromtimestamp(e.ts).isoformat(timespec="seconds")
    detail = " " + json.dumps(e.detail, ensure_ascii=False, sort_keys=True) if e.detail else ""
    role = f" ({e.actor_role})" if e.actor_role else ""
    return f"{when} {e.actor}{role} {e.action} subject={e.subject or '-'} purpose={e.purpose or '-'}{detail}"


@app.callback()
def audit(
    ctx: typer.Context,
    actor: Annotated[str | None, typer.Option(help="Only what this person id or CLI user (cli:NAME) did")] = None,
    subject: Annotated[str | None, typer.Option(help="Only about this person, pass, watchlist or alarm id")] = None,
    plate: Annotated[str | None, typer.Option(help="Only searches for this plate (kept as a keyed reference)")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action (e.g. view_person, erase_person)")] = None,
    since: Annotated[str | None, typer.Option(help="From: 24h, 7d, 2026-12-01 or 2026-12-01T08:00")] = None,
    until: Annotated[str | None, typer.Option(help="Until (same forms as --since)")] = None,
    limit: Annotated[int, typer.Option(help="At most N rows, newest first")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file")] = None,
) -> None:
    """List the audit log, newest first, filtered by actor, subject, action and time."""
    if ctx.invoked_subcommand is not None:
        return
    from anfang.app import open_registry, site_cipher
    from anfang.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
        now = time.time()
        start = parse_since(since, now) if since else None
        end = parse_since(until, now) if until else None
        if plate is not None:
            subject = plate_ref(site_cipher(settings).lookup_hash, plate)
    except (ConfigError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> list[AuditEntry]:
        async with open_registry(settings):
            return await search_audit(actor=actor, subject=subject, action=action, since=start, until=end, limit=limit)

    for entry in asyncio.run(main()):
        typer.echo(json.dumps(entry.as_dict(), ensure_ascii=False) if as_json else _line(entry))
