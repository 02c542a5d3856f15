"""Abuse limits of the HTTP API (issue 16 item 4): a request body size limit and per-address rate limits.

:class:`BodyLimit` is ASGI middleware: a request whose ``Content-Length`` exceeds the limit gets 413
before anything reads its body; a body without a length (chunked) is counted as it arrives and
refused with 413 as soon as it passes the limit, so no more than the limit is ever held.
:class:`ApiLimits` holds the process's rate limiters; a limited route answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from community.errors import CommunityError
from community.ratelimit import RateLimiter

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ApiLimits", "BodyLimit", "RateLimited"]

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class RateLimited(CommunityError):
    """Too many requests from this address; ``retry_after`` seconds until the next one is taken (429)."""

    status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("rate_limited", f"too many requests; retry after {int(retry_after)} s")
        self.retry_after = retry_after


@dataclass
class ApiLimits:
    """The HTTP limits of one process (``api.*`` settings)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    token_issue: RateLimiter = field(default_factory=lambda: RateLimiter(10))  # POST /tokens
    signin: RateLimiter = field(default_factory=lambda: RateLimiter(10))  # the console's password sign-in

    @classmethod
    def per_minute(cls, max_body_bytes: int, token_issue: int, signin: int) -> ApiLimits:
        """Limits from the settings."""
        return cls(max_body_bytes, RateLimiter(token_issue), RateLimiter(signin))


class BodyLimit:
    """Refuse request bodies larger than ``max_bytes`` with 413, before or while they arrive (module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            log.info("request body of %d bytes refused (limit %d): %s", length, self.max_bytes, scope.get("path"))
            await _refuse(send, self.max_bytes)
            return
        seen = 0
        started = refused = False

        async def counted_receive() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # answer now and tell the app the client is gone: it stops reading, and whatever it
                    # answers to that (FastAPI: 400) is dropped below
                    log.info("request body over %d bytes refused while arriving: %s", self.max_bytes, scope.get("path"))
                    refused = True
                    if not started:
                        await _refuse(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, watched_send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {"code": "body_too_large", "message": f"request body larger than {limit} bytes", "field": None}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    # the rest of the body is never read: the connection ends with this answer
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
