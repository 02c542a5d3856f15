"""``anfang rules``: check rule files and replay test fixtures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from rules.fixture import FixtureError, fixture_files, run_fixture
from rules.loader import load_rules, rule_files
from rules.site import SitePlan, SitePlanError, load_site_plan

app = typer.Typer(
    help="Rules engine: validate rule files, replay test timelines and recorded data.", no_args_is_help=True
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml), the same as `anfang run` reads"),
]


def configured(config: Path | None) -> tuple[SitePlan, Path]:
    """The site plan and rules folder of the platform's configuration (what ``anfang run`` uses)."""
    from anfang.config import ConfigError, load_settings
    from anfang.services import BUILTIN_RULES
    from anfang.site_setup import configured_plan

    try:
        settings = load_settings(config)
        plan = asyncio.run(configured_plan(settings))
    except (ConfigError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return plan, settings.rules_dir or BUILTIN_RULES


def _site_file(path: Path) -> SitePlan:
    try:
        return load_site_plan(path)
    except SitePlanError as exc:
        typer.echo(f"{exc.path}: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def check(
    path: Annotated[
        Path | None, typer.Argument(help="a rule file or a folder of *.yaml rule files (default: the configured rules)")
    ] = None,
    site: Annotated[
        Path | None,
        typer.Option(
            "--site", help="community file to check zones, groups and device ids (default: the configured site)"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Validate rule files; print ``file:line: message`` for every problem; exit 1 if any.

    Zones, groups and device ids are checked against ``--site``, or else against the site of the
    platform's configuration (``--config``, ``$ANFANG_CONFIG``, ``./anfang.yaml``, environment) — the
    same community ``anfang run`` loads, wherever the command is run from.
    """
    if site is not None and path is not None:
        plan = _site_file(site)
    else:
        conf_plan, conf_rules = configured(config)
        plan = _site_file(site) if site is not None else conf_plan
        path = path or conf_rules
    if not path.exists():
        typer.echo(f"{path}: no such file or folder", err=True)
        raise typer.Exit(2)
    result = load_rules(path, plan)
    for d in result.diagnostics:
        typer.echo(d.format())
    for rule_id, why in result.not_applicable:
        typer.echo(f"not applicable here: [{rule_id}] {why} (an optional rule: left out, not an error)")
    files = len(rule_files(path))
    if result.diagnostics:
        typer.echo(f"{len(result.diagnostics)} problem(s); {len(result.rules)} rule(s) OK in {files} file(s)")
        raise typer.Exit(1)
    typer.echo(f"OK: {len(result.rules)} rule(s) in {files} file(s) against site {plan.site}")


@app.command()
def test(
    path: Annotated[Path, typer.Argument(help="a fixture file, a folder of fixtures, or a rules folder with tests/")],
    trace: Annotated[bool, typer.Option("--trace", help="show why each rule fired or did not")] = False,
    rule: Annotated[str | None, typer.Option("--rule", help="only trace this rule")] = None,
) -> None:
    """Replay fixture timelines on a simulated clock and compare alarms/actions; exit 1 on failure."""
    files = fixture_files(path)
    if not files:
        typer.echo(f"{path}: no fixture files (YAML with 'cases:')", err=True)
        raise typer.Exit(2)
    passed = failed = 0
    for f in files:
        try:
            results = asyncio.run(run_fixture(f))
        except FixtureError as exc:
            for d in exc.diagnostics:
                typer.echo(f"ERROR {d.format()}")
            failed += 1
            continue
        for r in results:
            typer.echo(f"{'PASS' if r.passed else 'FAIL'} {f}::{r.name}")
            for msg in r.failures:
                typer.echo(f"    - {msg}")
            if trace:
                for t in r.trace:
                    if rule is None or t.rule_id == rule:
                        typer.echo(f"    | {t.format(r.origin)}")
            passed += r.passed
            failed += not r.passed
    typer.echo(f"{passed} passed, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _when(text: str) -> float:
    """``2026-11-02``, ``2026-11-02T08:00+08:00``, or ``-7d`` (that long before now)."""
    from datetime import datetime

    from rules.model import parse_duration

    if text.startswith("-"):
        return time.time() - parse_duration(text[1:])
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: use an ISO date/time (2026-11-02T08:00+08:00) or -7d") from exc


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="a rule file or folder: the rule set to try")],
    since: Annotated[str, typer.Option("--since", help="start: ISO date/time, or -7d for a week ago")],
    until: Annotated[str | None, typer.Option("--until", help="end (default: now)")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="only show this rule's trace")] = None,
    verbose: Annotated[
        bool, typer.Option("--trace", help="every firing and condition verdict, not only counts")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run the site's recorded events and access decisions from the registry through a rule set.

    Prints which rules would have fired (how often, and on what), with each condition's verdict —
    how a new rule is tried on last week's real data before it is enabled. Nothing is raised, sent
    or stored. Uses the database and site of the platform's configuration (as ``anfang run``).
    """
    from anfang.app import open_registry
    from anfang.config import ConfigError, load_settings
    from registry.db import open_connection
    from rules.replay import load_recorded
    from rules.replay import replay as run_replay

    t0, t1 = _when(since), (_when(until) if until else time.time())
    plan, _ = configured(config)
    loaded = load_rules(path, plan)
    for d in loaded.diagnostics:
        typer.echo(d.format(), err=True)
    if loaded.diagnostics:
        raise typer.Exit(1)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None

    async def go() -> Any:
        async with open_registry(settings):
            records = await load_recorded(open_connection(settings.db_url), settings.site, t0, t1)
        return await run_replay(loaded.rules, plan, records, t0)

    report = asyncio.run(go())
    counts = report.fired_counts()
    typer.echo(f"{report.inputs} recorded input(s) from {_iso(t0)} to {_iso(t1)}, {len(loaded.rules)} rule(s)")
    for r in loaded.rules:
        typer.echo(f"{r.id}: {'fired ' + str(counts[r.id]) + ' time(s)' if r.id in counts else 'would not have fired'}")
    for entry in report.trace:
        if entry.rule_id == "-" or (rule is not None and entry.rule_id != rule):
            continue
        if verbose or entry.outcome in ("fired", "error") or (rule is not None and entry.outcome != "no_match"):
            typer.echo(f"  {_iso(entry.ts)} {entry.rule_id}: {entry.outcome} — {entry.input}: {entry.detail}")


def _iso(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
