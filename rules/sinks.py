"""Outbound side effects that are not MQTT: webhooks (httpx, timeout + retry) and the audit log."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx


class WebhookError(Exception):
    """A webhook failed after all retries."""

    def __init__(self, url: str, attempts: int, message: str) -> None:
        super().__init__(f"webhook {url} failed after {attempts} attempt(s): {message}")
        self.url = url
        self.attempts = attempts
        self.message = message


class WebhookSender(Protocol):
    """Sends one webhook call, retrying as asked."""

    async def send(
        self,
        method: str,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        *,
        request_timeout: float,
        retries: int,
        backoff: float,
    ) -> int: ...


class HttpxWebhookSender:
    """Real webhooks through one shared :class:`httpx.AsyncClient` (owned by the caller)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def send(
        self,
        method: str,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        *,
        request_timeout: float,
        retries: int,
        backoff: float,
    ) -> int:
        last = ""
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(backoff * (2 ** (attempt - 1)))
            try:
                kwargs: dict[str, Any] = {"headers": headers, "timeout": request_timeout}
                if method != "GET":
                    kwargs["json"] = body
                resp = await self.client.request(method, url, **kwargs)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code < 500 and resp.status_code != 429:
                if resp.status_code >= 400:
                    raise WebhookError(url, attempt + 1, f"HTTP {resp.status_code}")
                return resp.status_code
            last = f"HTTP {resp.status_code}"
        raise WebhookError(url, retries + 1, last)


@dataclass
class RecordingWebhookSender:
    """Records webhook calls instead of sending them (rule fixtures, tests)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def send(
        self,
        method: str,
        url: str,
        body: dict[str, Any],
        headers: dict[str, str],
        *,
        request_timeout: float,
        retries: int,
        backoff: float,
    ) -> int:
        self.calls.append({"method": method, "url": url, "body": body})
        return 200


class AuditLog(Protocol):
    """Append-only audit entries."""

    async def write(self, entry: dict[str, Any]) -> None: ...


@dataclass
class InMemoryAuditLog:
    """Audit entries in a bounded list."""

    max_entries: int = 10_000
    entries: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if len(self.entries) > self.max_entries:
            del self.entries[: len(self.entries) - self.max_entries]


class JsonlAuditLog:
    """Audit entries appended as JSON lines to a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
