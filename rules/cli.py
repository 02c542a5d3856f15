"""``anfang rules``: check rule files and replay test fixtures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from rules.fixture import FixtureError, fixture_files, run_fixture
from rules.loader import load_rules, rule_files
from rules.site import SitePlan, SitePlanError, load_site_plan

app = typer.Typer(help="Rules engine: validate rule files and replay test timelines.", no_args_is_help=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml), the same as `anfang run` reads"),
]


def configured(config: Path | None) -> tuple[SitePlan, Path]:
    """The site plan and rules folder of the platform's configuration (what ``anfang run`` uses)."""
    from anfang.config import ConfigError, load_settings
    from anfang.services import BUILTIN_RULES, community_for

    try:
        settings = load_settings(config)
        community = community_for(settings)
    except (ConfigError, OSError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return SitePlan.from_community(community), settings.rules_dir or BUILTIN_RULES


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
