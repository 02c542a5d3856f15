"""``anfang dashboards``: build the dashboard JSON and push it to Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from telemetry.dashboards import write_all
from telemetry.grafana import GrafanaPushError, InfluxDatasource, load_dashboards, push

app = typer.Typer(help="Grafana dashboards as code (InfluxQL).", no_args_is_help=True)


@app.command("push")
def push_cmd(
    url: Annotated[str, typer.Option(help="Grafana base URL, e.g. http://localhost:3000")],
    token: Annotated[str, typer.Option(help="Grafana service-account token", envvar="GRAFANA_TOKEN")],
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Push *.json from this folder instead of the built-in set")
    ] = None,
    influx_url: Annotated[
        str | None, typer.Option(help="Also create/update the InfluxQL datasource at this InfluxDB URL")
    ] = None,
    influx_db: Annotated[str, typer.Option(help="InfluxDB 1.x database or 2.x bucket")] = "anfang",
    influx_token: Annotated[str | None, typer.Option(help="InfluxDB 2.x token for the datasource")] = None,
) -> None:
    """Upload the dashboards (into folder "Anfang") to a running Grafana."""
    datasource = InfluxDatasource(influx_url, influx_db, influx_token) if influx_url else None
    try:
        uids = push(url, token, load_dashboards(directory), datasource=datasource)
    except GrafanaPushError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    for uid in uids:
        typer.echo(f"pushed {uid}")


@app.command("build")
def build_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the dashboard JSON")] = Path("dashboards/json"),
) -> None:
    """Regenerate dashboards/json/*.json from telemetry.dashboards."""
    for path in write_all(out):
        typer.echo(f"wrote {path}")
