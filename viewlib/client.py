"""GA/T 1400.4 over HTTP: the one adapter around httpx for the view library.

Registration and unregistration authenticate with HTTP digest (RFC 7616/2617; httpx answers the
server's challenge). Every request names the platform in the ``User-Identify`` header; a server
that no longer knows it answers 401, which becomes :class:`~viewlib.errors.NotRegistered`.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import httpx

from viewlib.errors import AuthRefused, NotRegistered, ServerRejected, ServerUnreachable
from viewlib.gat1400 import PATHS, Kind, Status, list_body, parse_statuses, system_body

__all__ = ["ViewLibClient"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/VIID+JSON;charset=UTF-8"


class ViewLibClient:
    """Talks to one view library server as one platform (``device_id``)."""

    def __init__(
        self,
        base_url: str,
        device_id: str,
        username: str,
        password: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.device_id = device_id
        self._auth = httpx.DigestAuth(username, password)
        headers = {"User-Identify": device_id, "Content-Type": CONTENT_TYPE, "Accept": "application/json"}
        self._http = httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any], *, digest: bool = False) -> list[Status]:
        url = self.base_url + path
        try:
            resp = await self._http.post(
                path,
                content=json.dumps(body, ensure_ascii=False).encode(),
                auth=self._auth if digest else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise ServerUnreachable(url, f"{type(exc).__name__}: {exc}") from None
        if resp.status_code == 401:
            if digest:
                raise AuthRefused(url, "HTTP 401: the server refused the user or password")
            raise NotRegistered(url, "HTTP 401: the server does not know this platform (any more)")
        if resp.status_code >= 500:
            raise ServerUnreachable(url, f"HTTP {resp.status_code}")
        if not resp.is_success:
            raise ServerRejected(url, f"HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return parse_statuses(resp.json())
        except ValueError:
            raise ServerRejected(url, "the answer is not JSON") from None

    async def system(self, what: Literal["Register", "Keepalive", "UnRegister"]) -> None:
        """``/VIID/System/{what}`` for this platform.

        Raises:
            AuthRefused: wrong user or password (Register, UnRegister).
            NotRegistered: a keep-alive the server does not accept (register again).
            ServerRejected, ServerUnreachable: see :mod:`viewlib.errors`.
        """
        path = f"/VIID/System/{what}"
        statuses = await self._post(path, system_body(what, self.device_id), digest=what != "Keepalive")
        bad = [s for s in statuses if not s.ok]
        if bad:
            raise ServerRejected(self.base_url + path, f"StatusCode {bad[0].code}: {bad[0].text}")

    async def upload(self, kind: Kind, objects: list[dict[str, Any]], ids: list[str]) -> dict[str, Status]:
        """Upload objects of one kind; returns the server's status for each of ``ids`` it answered for.

        An answer without per-object statuses that is a success accepts all of them.
        """
        statuses = await self._post(PATHS[kind], list_body(kind, objects))
        by_id = {s.id: s for s in statuses if s.id}
        if not by_id and all(s.ok for s in statuses):
            return {i: Status(i, "0", "OK") for i in ids}
        return by_id
