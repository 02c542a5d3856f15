"""The platform's HTTP server: uvicorn serving an ASGI app inside the platform's own event loop.

This is the one adapter around uvicorn. uvicorn normally owns the process (signals, loop); here
the platform owns both, so the server neither installs signal handlers nor creates a loop: it is a
task of the platform, started once its socket listens and stopped by the platform's shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp

log = logging.getLogger(__name__)

__all__ = ["ApiServer", "ApiServerError", "TlsFiles", "parse_bind"]


class ApiServerError(Exception):
    """The HTTP server could not start; the message says where and why."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """Server certificate and key (PEM) for HTTPS."""

    certfile: Path
    keyfile: Path


def parse_bind(bind: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair; raises :class:`ApiServerError` with the reason."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ApiServerError(f"api_bind {bind!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """Serve ``app`` on ``bind`` while the context is open.

    ``reuse_port``: several processes of one site on this host (standbys, ``--workers``) bind the
    same port and the kernel spreads connections over them (``SO_REUSEPORT``); without it a second
    process on the port fails at start, loudly.
    """

    def __init__(self, app: ASGIApp, bind: str, *, reuse_port: bool = False, tls: TlsFiles | None = None) -> None:
        self._app, self._bind, self._reuse_port, self._tls = app, bind, reuse_port, tls
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    def _socket(self) -> socket.socket:
        host, port = parse_bind(self._bind)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ApiServerError(f"cannot serve the HTTP API on {self._bind}: {exc.strerror or exc}") from None
        sock.set_inheritable(False)
        self.port = int(sock.getsockname()[1])
        return sock

    async def __aenter__(self) -> ApiServer:
        sock = self._socket()
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            ssl_certfile=str(self._tls.certfile) if self._tls else None,
            ssl_keyfile=str(self._tls.keyfile) if self._tls else None,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="http-api")
        while not self._server.started:
            if self._task.done():
                sock.close()
                exc = self._task.exception()
                raise ApiServerError(f"the HTTP API on {self._bind} stopped while starting: {exc}")
            await asyncio.sleep(0.01)  # uvicorn has no start event; it sets a flag once it listens
        scheme = "https" if self._tls else "http"
        host, _ = parse_bind(self._bind)
        log.info("HTTP API on %s://%s:%d (OpenAPI at /docs, health at /healthz and /readyz)", scheme, host, self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 10)
        except TimeoutError:
            self._task.cancel()
        except Exception:
            log.exception("the HTTP API stopped with an error")
