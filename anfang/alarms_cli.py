"""``anfang alarms``: the site's alarms from the command line (same configuration as ``anfang run``).

Acknowledging or clearing here stores the transition; the site's running platform publishes it and
tells the webhooks (from the alarm outbox), within about a second.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from anfang.config import ConfigError, Settings, load_settings
from registry.alarms import STATES, Alarm, AlarmError, AlarmManager

__all__ = ["app"]

app = typer.Typer(help="The site's alarms: list, show, acknowledge, clear.", no_args_is_help=True)
T = TypeVar("T")
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who does it (default: cli:<login name>)")]
NoteOpt = Annotated[str, typer.Option("--note", help="What was done or found")]


def _settings(config: Path | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _with_alarms(config: Path | None, body: Callable[[AlarmManager], Awaitable[T]]) -> T:
    from anfang.app import open_registry
    from registry.alarm_store import DatabaseAlarmStore
    from registry.db import open_connection

    settings = _settings(config)

    async def go() -> T:
        async with open_registry(settings):
            store = DatabaseAlarmStore(open_connection(settings.db_url), settings.site)
            return await body(AlarmManager(settings.site, store))

    try:
        return asyncio.run(go())
    except AlarmError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _when(ts: float | None) -> str:
    return "-" if ts is None else dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _line(a: Alarm) -> str:
    who = f" ack {a.acked_by}" if a.acked_by else ""
    return f"{a.id:32} {_when(a.raised_at)} {a.state:12} {a.severity:8} {a.kind:24} {a.subject:20} x{a.count}{who}"


@app.command("list")
def list_alarms(
    config: ConfigOpt = None,
    state: Annotated[
        list[str] | None, typer.Option(help=f"Only these states ({', '.join(STATES)}); default: open ones")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind, e.g. door_forced")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many, the newest")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document per alarm")] = False,
) -> None:
    """List alarms, oldest first."""
    states = state or ["raised", "acknowledged"]
    if unknown := [s for s in states if s not in STATES]:
        raise typer.BadParameter(f"unknown state {unknown[0]!r}", param_hint="--state")
    alarms = _with_alarms(config, lambda m: m.store.list(states=states, kind=kind, limit=limit))
    for a in alarms:
        typer.echo(json.dumps(a.to_json(), ensure_ascii=False) if as_json else _line(a))
    if not alarms and not as_json:
        typer.echo("no alarms", err=True)


@app.command("show")
def show(alarm_id: Annotated[str, typer.Argument(help="Alarm id")], config: ConfigOpt = None) -> None:
    """One alarm, whole."""
    alarm = _with_alarms(config, lambda m: m.store.get(alarm_id))
    if alarm is None:
        typer.echo(f"error: no alarm {alarm_id}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(alarm.to_json(), ensure_ascii=False, indent=2))


@app.command("ack")
def ack(
    alarm_id: Annotated[str, typer.Argument(help="Alarm id")],
    config: ConfigOpt = None,
    by: ByOpt = None,
    note: NoteOpt = "",
) -> None:
    """Acknowledge an alarm."""
    who = by or f"cli:{getpass.getuser()}"
    now = dt.datetime.now().timestamp()
    alarm = _with_alarms(config, lambda m: m.acknowledge(None, alarm_id, by=who, now=now, note=note))
    typer.echo(_line(alarm))


@app.command("clear")
def clear(
    alarm_id: Annotated[str, typer.Argument(help="Alarm id")],
    config: ConfigOpt = None,
    by: ByOpt = None,
    note: NoteOpt = "",
) -> None:
    """Clear an alarm: the matter is dealt with."""
    who = by or f"cli:{getpass.getuser()}"
    now = dt.datetime.now().timestamp()
    alarm = _with_alarms(config, lambda m: m.clear(None, alarm_id, by=who, now=now, reason=note))
    typer.echo(_line(alarm))
