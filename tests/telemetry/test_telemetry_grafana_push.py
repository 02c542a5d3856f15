"""``anfang dashboards push`` against a MOCK Grafana HTTP server.

No Grafana server can be installed here, so ``MockGrafana`` (a stdlib http.server) stands in:
it implements just the folder, datasource and dashboard endpoints the push uses and records
every call. The dashboard JSON itself is validated by running its queries on real InfluxDB.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from telemetry.cli import app
from telemetry.dashboards import build_dashboards, render

REPO = Path(__file__).resolve().parents[2]


class MockGrafana(ThreadingHTTPServer):
    """Mock of Grafana's HTTP API (folders, datasources, dashboards), recording each request."""

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.calls: list[tuple[str, str, Any]] = []
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: MockGrafana

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body: Any = json.loads(self.rfile.read(length)) if length else {}
        self.server.calls.append((method, self.path, body))
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._reply(401, {"message": "invalid API key"})
        srv = self.server
        if method == "GET" and self.path.startswith("/api/folders/"):
            uid = self.path.rsplit("/", 1)[1]
            return self._reply(200, srv.folders[uid]) if uid in srv.folders else self._reply(404, {"message": "x"})
        if method == "POST" and self.path == "/api/folders":
            srv.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": 7}
            return self._reply(200, srv.folders[body["uid"]])
        if self.path.startswith("/api/datasources/uid/"):
            uid = self.path.rsplit("/", 1)[1]
            if uid not in srv.datasources:
                return self._reply(404, {"message": "Data source not found"})
            if method == "PUT":
                srv.datasources[uid] = body
            return self._reply(200, srv.datasources[uid])
        if method == "POST" and self.path == "/api/datasources":
            srv.datasources[body["uid"]] = body
            return self._reply(200, {"datasource": body, "id": 1})
        if method == "POST" and self.path == "/api/dashboards/db":
            dash = body["dashboard"]
            srv.dashboards[dash["uid"]] = body
            return self._reply(200, {"status": "success", "uid": dash["uid"], "version": 1})
        return self._reply(404, {"message": "not mocked"})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


@pytest.fixture
def grafana() -> Iterator[MockGrafana]:
    server = MockGrafana(token="glsa_test")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_push_uploads_every_dashboard_into_the_anfang_folder(grafana: MockGrafana) -> None:
    result = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "glsa_test",
                                      "--influx-url", "http://influxdb:8086", "--influx-token", "tok"])  # fmt: skip
    assert result.exit_code == 0, result.output
    uids = {d.uid for d in build_dashboards()}
    assert set(grafana.dashboards) == uids
    assert all(b["folderUid"] == "anfang" and b["overwrite"] for b in grafana.dashboards.values())
    assert grafana.folders["anfang"]["title"] == "Anfang"
    ds = grafana.datasources["anfang-influxdb"]
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["secureJsonData"]["httpHeaderValue1"] == "Token tok"
    assert sorted(result.output.split()) == sorted(["pushed"] * len(uids) + list(uids))

    again = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "glsa_test", "--influx-url", "x"])
    assert again.exit_code == 0, again.output  # idempotent: folder exists, datasource updated
    assert sum(1 for m, p, _ in grafana.calls if m == "POST" and p == "/api/folders") == 1
    assert any(m == "PUT" for m, _, _ in grafana.calls)


def test_push_from_a_folder_and_a_bad_token_fails_clearly(grafana: MockGrafana, tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(render(build_dashboards()[0]))
    ok = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "glsa_test", "--dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert list(grafana.dashboards) == ["anfang-overview"]
    bad = CliRunner().invoke(app, ["push", "--url", grafana.url, "--token", "wrong"])
    assert bad.exit_code == 1
    assert "grafana push failed at folder" in bad.output and "401" in bad.output


def test_committed_dashboards_are_the_generated_ones() -> None:
    directory = REPO / "dashboards" / "json"
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.json")}
    generated = {f"{d.uid}.json": render(d) for d in build_dashboards()}
    assert committed == generated, "run: anfang dashboards build (python -m typer telemetry.cli run build)"
    for text in committed.values():
        model = json.loads(text)
        assert all(t["datasource"]["uid"] == "anfang-influxdb" for p in model["panels"] for t in p["targets"])
        assert all(p["description"] for p in model["panels"])
