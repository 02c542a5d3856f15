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

DEFAULT_COMMUNITY = Path("firmware_sim/communities/youzheng.yaml")


def _site(path: Path | None) -> SitePlan | None:
    candidate = path or (DEFAULT_COMMUNITY if DEFAULT_COMMUNITY.exists() else None)
    if candidate is None:
        return None
    try:
        return load_site_plan(candidate)
    except SitePlanError as exc:
        typer.echo(f"{exc.path}: {exc.message}", err=True)
        raise typer.Exit(2) from exc


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="a rule file or a folder of *.yaml rule files")],
    site: Annotated[
        Path | None, typer.Option("--site", help="community file: also check zones, groups and device ids")
    ] = None,
) -> None:
    """Validate rule files; print ``file:line: message`` for every problem; exit 1 if any."""
    if not path.exists():
        typer.echo(f"{path}: no such file or folder", err=True)
        raise typer.Exit(2)
    plan = _site(site)
    result = load_rules(path, plan)
    for d in result.diagnostics:
        typer.echo(d.format())
    files = len(rule_files(path))
    if result.diagnostics:
        typer.echo(f"{len(result.diagnostics)} problem(s); {len(result.rules)} rule(s) OK in {files} file(s)")
        raise typer.Exit(1)
    where = f" against site {plan.site}" if plan else " (no community file: zones not checked)"
    typer.echo(f"OK: {len(result.rules)} rule(s) in {files} file(s){where}")


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
