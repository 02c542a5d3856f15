"""Upload dashboards (and optionally the InfluxQL datasource) to a running Grafana.

Uses the maintained ``grafana-client`` package (the old ``grafana-api`` package has been dead
since 2020). Idempotent: folder and datasource are created once, dashboards overwritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telemetry.dashboards import DATASOURCE_UID, build_dashboards, dashboard_json

FOLDER_UID = "anfang"
FOLDER_TITLE = "Anfang"


class GrafanaPushError(Exception):
    """Grafana refused a call; ``step`` says which, ``status`` is the HTTP status if known."""

    def __init__(self, step: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"grafana push failed at {step}: {reason}" + (f" (HTTP {status})" if status else ""))
        self.step = step
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class InfluxDatasource:
    """An InfluxQL datasource: ``database`` is the 1.x database or the 2.x bucket (v1 DBRP mapping)."""

    url: str
    database: str
    token: str | None = None

    def model(self) -> dict[str, Any]:
        """Grafana's datasource JSON (v2 token sent as ``Authorization: Token ...``)."""
        body: dict[str, Any] = {
            "uid": DATASOURCE_UID,
            "name": "Anfang InfluxDB",
            "type": "influxdb",
            "access": "proxy",
            "url": self.url,
            "jsonData": {"dbName": self.database, "httpMode": "POST", "version": "InfluxQL"},
            "isDefault": True,
        }
        if self.token:
            body["jsonData"]["httpHeaderName1"] = "Authorization"
            body["secureJsonData"] = {"httpHeaderValue1": f"Token {self.token}"}
        return body


def load_dashboards(directory: Path | None) -> list[dict[str, Any]]:
    """Dashboards from ``directory/*.json``, or the built-in ones when no directory is given."""
    if directory is None:
        return [dashboard_json(d) for d in build_dashboards()]
    paths = sorted(directory.glob("*.json"))
    if not paths:
        raise GrafanaPushError("load", f"no *.json dashboards in {directory}")
    return [json.loads(p.read_text(encoding="utf-8")) for p in paths]


def _status(exc: Exception) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def push(
    url: str,
    token: str,
    dashboards: Iterable[dict[str, Any]],
    *,
    datasource: InfluxDatasource | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Create the folder (and datasource), upload every dashboard; returns the uploaded uids.

    Raises :class:`GrafanaPushError` for every failure, an unreachable Grafana included."""
    from grafana_client.api import GrafanaApi

    api = GrafanaApi.from_url(url=url, credential=token, timeout=timeout)
    try:
        return _push(api, dashboards, datasource)
    except OSError as exc:  # the HTTP client's connection errors (refused, timed out, no such host) are OSErrors
        reason = re.sub(r"\s+", " ", str(exc.__context__ or exc))
        match = re.search(r"\[Errno -?\d+\] [^'\")]+", reason)
        raise GrafanaPushError("connect", f"cannot reach Grafana at {url}: "
                               f"{match.group(0) if match else type(exc).__name__}") from None  # fmt: skip


def _push(api: Any, dashboards: Iterable[dict[str, Any]], datasource: InfluxDatasource | None) -> list[str]:
    from grafana_client.client import GrafanaClientError, GrafanaException

    try:
        api.folder.get_folder(FOLDER_UID)
    except GrafanaClientError as exc:
        if _status(exc) != 404:
            raise GrafanaPushError("folder", str(exc), _status(exc)) from exc
        try:
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
        except GrafanaException as exc2:
            raise GrafanaPushError("folder", str(exc2), _status(exc2)) from exc2
    except GrafanaException as exc:
        raise GrafanaPushError("folder", str(exc), _status(exc)) from exc

    if datasource is not None:
        model = datasource.model()
        try:
            try:
                api.datasource.get_datasource_by_uid(DATASOURCE_UID)
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, model)
            except GrafanaClientError as exc:
                if _status(exc) != 404:
                    raise
                api.datasource.create_datasource(model)
        except GrafanaException as exc:
            raise GrafanaPushError("datasource", str(exc), _status(exc)) from exc

    uploaded = []
    for dash in dashboards:
        body = {"dashboard": {**dash, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                "message": "anfang dashboards push"}  # fmt: skip
        try:
            api.dashboard.update_dashboard(body)
        except GrafanaException as exc:
            raise GrafanaPushError(f"dashboard {dash.get('uid')}", str(exc), _status(exc)) from exc
        uploaded.append(str(dash.get("uid")))
    return uploaded
