"""Webhooks against a real local HTTP server (retry, give up) and the JSONL audit log."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rules.sinks import HttpxWebhookSender, JsonlAuditLog, WebhookError


class _Server:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, object]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[_Server]:
    srv = _Server(list(request.param))
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    srv.thread.join(timeout=5)


@pytest.mark.parametrize("server", [[503, 500, 200]], indirect=True)
async def test_webhook_retries_server_errors_until_it_succeeds(server: _Server) -> None:
    async with httpx.AsyncClient() as client:
        status = await HttpxWebhookSender(client).send(
            "POST", server.url, {"alarm": "a1"}, {}, request_timeout=2.0, retries=2, backoff=0.01
        )
    assert status == 200
    assert server.bodies == [{"alarm": "a1"}] * 3


@pytest.mark.parametrize("server", [[503, 503, 503]], indirect=True)
async def test_webhook_gives_up_after_the_retries(server: _Server) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(WebhookError) as err:
            await HttpxWebhookSender(client).send(
                "POST", server.url, {}, {}, request_timeout=2.0, retries=1, backoff=0.01
            )
    assert err.value.attempts == 2 and "503" in err.value.message


@pytest.mark.parametrize("server", [[404]], indirect=True)
async def test_webhook_client_error_is_not_retried(server: _Server) -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(WebhookError, match="HTTP 404"):
            await HttpxWebhookSender(client).send(
                "POST", server.url, {}, {}, request_timeout=2.0, retries=3, backoff=0.01
            )
    assert len(server.bodies) == 1


async def test_webhook_to_a_closed_port_fails_with_the_reason() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(WebhookError, match="ConnectError"):
            await HttpxWebhookSender(client).send(
                "POST", "http://127.0.0.1:9/none", {}, {}, request_timeout=1.0, retries=1, backoff=0.01
            )


async def test_jsonl_audit_log_appends_lines(tmp_path: Path) -> None:
    log = JsonlAuditLog(tmp_path / "audit" / "rules.jsonl")
    await log.write({"rule": "door-forced", "message": "门被强行打开"})
    await log.write({"rule": "watchlist-match", "message": "match"})
    lines = (tmp_path / "audit" / "rules.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["rule"] for line in lines] == ["door-forced", "watchlist-match"]
    assert "门被强行打开" in lines[0]
