"""Where encoded points go: InfluxDB's v2 or 1.x write API, a rotated local file, or nowhere.

Sinks are synchronous and are only ever called from the writer's worker thread (or a thread at
start-up), never on the event loop. Errors, as a tree::

    SinkError                 (sink, reason, status)
    ├── SinkUnavailable       transient: server down, timeout, 5xx, 429 — spool and retry
    ├── SinkMisconfigured     our settings cannot work: wrong URL/API, database, bucket, org or token
    │                         (401/403/404) — spool, report on health, fail start-up and /readyz
    └── SinkRejected          the server refused the data itself (400/413/422) — never retried

``check()`` asks the server, before any point is written, whether the settings can work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

log = logging.getLogger(__name__)


class SinkError(Exception):
    """Base of sink failures; ``status`` is the HTTP status when there was one."""

    def __init__(self, sink: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"{sink}: {reason}" + (f" (HTTP {status})" if status else ""))
        self.sink = sink
        self.reason = reason
        self.status = status


class SinkUnavailable(SinkError):
    """Transient: keep the batch (spool it) and retry later."""


class SinkRejected(SinkError):
    """Permanent: the server refused the data itself; retrying cannot help."""


class SinkMisconfigured(SinkError):
    """The server is there but our settings cannot work with it (URL, API, database, bucket, token)."""


class TelemetrySink(Protocol):
    """A destination for batches of line-protocol lines."""

    name: str

    def write(self, lines: Sequence[str]) -> None:
        """Write the batch or raise :class:`SinkUnavailable` / :class:`SinkMisconfigured` / :class:`SinkRejected`."""
        ...

    def check(self) -> None:
        """Raise :class:`SinkMisconfigured` when the settings cannot work (an unreachable server is no error)."""
        ...

    def close(self) -> None:
        """Release connections/files."""
        ...


class NullSink:
    """Telemetry off: accepts and discards everything (counts it)."""

    name = "null"

    def __init__(self) -> None:
        self.lines = 0

    def write(self, lines: Sequence[str]) -> None:
        """Discard."""
        self.lines += len(lines)

    def check(self) -> None:
        """Always usable."""

    def close(self) -> None:
        """Nothing to release."""


class FileSink:
    """Line protocol appended to a local file, rotated at ``max_bytes`` keeping ``backups`` old files.

    Disk use is capped at ``max_bytes * (backups + 1)``. The file can be loaded into any
    InfluxDB later (``influx write`` / ``curl --data-binary @file .../write``).
    """

    name = "file"

    def __init__(self, path: Path, max_bytes: int = 64 * 1024 * 1024, backups: int = 3) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh: IO[bytes] | None = None
        self._size = 0

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - kept open across writes, closed in close()
            self._size = self._fh.tell()
        return self._fh

    def _rotate(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
            return
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for index in range(self.backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{index}")
            if src.exists():
                src.rename(self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.path.exists():
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    def write(self, lines: Sequence[str]) -> None:
        """Append the batch (rotating first when it would overflow the current file)."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        try:
            fh = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
                fh = self._open()
            fh.write(data)
            fh.flush()
            self._size += len(data)
        except OSError as exc:
            raise SinkUnavailable(self.name, f"cannot write {self.path}: {exc}") from exc

    def check(self) -> None:
        """The file's folder must be creatable and the file writable."""
        try:
            self._open()
        except OSError as exc:
            raise SinkMisconfigured(self.name, f"cannot write {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the file."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class InfluxSink:
    """InfluxDB v2 write API via influxdb-client (works with InfluxDB 2.x/3.x, 1.8+, VictoriaMetrics).

    Synchronous writes with client-level retries disabled: the writer does the retrying,
    through the spool, so a batch is never re-sent behind our back.
    """

    name = "influx"

    def __init__(self, url: str, token: str | None, org: str | None, bucket: str, timeout_s: float = 10.0) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.org = org or "anfang"
        self.bucket = bucket
        self.timeout_s = timeout_s
        self._headers = {"Authorization": f"Token {token}"} if token else {}
        self._client: Any = InfluxDBClient(
            url=url, token=token or "", org=self.org, timeout=int(timeout_s * 1000), retries=False
        )
        self._api: Any = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        """POST the batch to ``/api/v2/write`` (precision ns)."""
        if not lines:
            return
        import urllib3
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self.bucket, org=self.org, record="\n".join(lines), write_precision=WritePrecision.NS
            )
        except ApiException as exc:
            status = int(exc.status) if exc.status else None
            reason = str(exc.reason or exc.body or "error")[:300]
            if status in (400, 413, 422):
                raise SinkRejected(self.name, reason, status) from exc
            if status in (401, 403, 404):
                raise SinkMisconfigured(self.name, f"{self.describe()}: {reason}", status) from exc
            raise SinkUnavailable(self.name, reason, status) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(self.name, f"{type(exc).__name__}: {exc}"[:300]) from exc

    def describe(self) -> str:
        """Where this sink writes, for messages."""
        return f"InfluxDB v2 write API at {self.url} (org {self.org!r}, bucket {self.bucket!r})"

    def check(self) -> None:
        """The server must not be InfluxDB 1.x (no v2 API), and an InfluxDB 2.x must know the token and bucket."""
        version = server_version(self.url, self.timeout_s)
        if version is not None and version.startswith("1."):
            raise SinkMisconfigured(
                self.name, f"{self.url} is InfluxDB {version}, which has no v2 write API: set the API to v1"
            )
        try:
            response = httpx.get(
                f"{self.url.rstrip('/')}/api/v2/buckets", params={"name": self.bucket, "org": self.org},
                headers=self._headers, timeout=self.timeout_s,
            )  # fmt: skip
        except httpx.HTTPError:
            return  # not reachable now: an outage, which the spool rides out
        if response.status_code in (401, 403):
            raise SinkMisconfigured(self.name, f"{self.describe()}: token refused", response.status_code)
        if response.status_code == 404 and "org" in response.text:
            raise SinkMisconfigured(self.name, f"{self.describe()}: {response.text[:200]}", 404)
        if response.status_code == 200 and not response.json().get("buckets"):
            raise SinkMisconfigured(self.name, f"{self.describe()}: no such bucket")
        # other answers (VictoriaMetrics, InfluxDB 3) have no bucket API: writes will tell

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


def server_version(url: str, timeout_s: float = 5.0) -> str | None:
    """The ``X-Influxdb-Version`` that ``/ping`` answers with (``1.6.7``, ``v2.7.1``), or None
    (no such header, as VictoriaMetrics; or not reachable)."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/ping", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    version = response.headers.get("X-Influxdb-Version")
    return version.removeprefix("v") if version else None


class InfluxV1Sink:
    """The InfluxDB 1.x write API, ``POST /write?db=...&precision=ns`` (InfluxDB 1.x, 2.x through its v1
    compatibility API, 3.x, VictoriaMetrics).

    ``token`` is sent as ``Authorization: Token ...`` (2.x/3.x); ``user:password`` is sent as HTTP basic
    authentication (1.x with auth enabled). One request per batch, no retries of its own.
    """

    name = "influx-v1"

    def __init__(self, url: str, database: str, token: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        auth: httpx.BasicAuth | None = None
        headers: dict[str, str] = {}
        if token and ":" in token:
            user, _, password = token.partition(":")
            auth = httpx.BasicAuth(user, password)
        elif token:
            headers["Authorization"] = f"Token {token}"
        self._client = httpx.Client(base_url=self.url, auth=auth, headers=headers, timeout=timeout_s)

    def describe(self) -> str:
        """Where this sink writes, for messages."""
        return f"InfluxDB 1.x write API at {self.url} (database {self.database!r})"

    def write(self, lines: Sequence[str]) -> None:
        """POST the batch to ``/write``."""
        if not lines:
            return
        try:
            response = self._client.post(
                "/write", params={"db": self.database, "precision": "ns"}, content="\n".join(lines).encode()
            )
        except httpx.HTTPError as exc:
            raise SinkUnavailable(self.name, f"{type(exc).__name__}: {exc}"[:300]) from exc
        status = response.status_code
        if status < 300:
            return
        reason = response.text[:300] or response.reason_phrase
        if status in (400, 413, 422):
            raise SinkRejected(self.name, reason, status)
        if status in (401, 403, 404):
            raise SinkMisconfigured(self.name, f"{self.describe()}: {reason}", status)
        raise SinkUnavailable(self.name, reason, status)

    def check(self) -> None:
        """The database must exist and the credentials be accepted (``SHOW DATABASES``); servers that do
        not say they are InfluxDB on ``/ping`` (VictoriaMetrics takes any database name) are only asked
        for the credentials."""
        influxdb = server_version(self.url, self.timeout_s) is not None
        try:
            response = self._client.post("/query", data={"q": "SHOW DATABASES"})
        except httpx.HTTPError:
            return  # not reachable now: an outage, which the spool rides out
        if response.status_code in (401, 403):
            raise SinkMisconfigured(self.name, f"{self.describe()}: credentials refused", response.status_code)
        if response.status_code == 404:
            raise SinkMisconfigured(self.name, f"{self.describe()}: no /query endpoint here (wrong URL?)", 404)
        if response.status_code != 200:
            return
        try:
            series = response.json()["results"][0].get("series") or []
            names = {row[0] for s in series for row in s.get("values") or []}
        except (ValueError, KeyError, IndexError, TypeError):
            return  # an answer we cannot read (a v1-compatible server of another make): writes will tell
        if influxdb and self.database not in names:
            raise SinkMisconfigured(self.name, f"{self.describe()}: no such database (has: {', '.join(sorted(names))})")

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class AutoInfluxSink:
    """Chooses the write API on first contact with the server: InfluxDB 1.x (its ``/ping`` answers
    ``X-Influxdb-Version: 1.*``) gets ``/write?db=``; anything else the v2 API. Until the server has
    answered, every call is an outage (:class:`SinkUnavailable`), so nothing is decided on a guess."""

    name = "influx"

    def __init__(self, url: str, token: str | None, org: str | None, bucket: str, timeout_s: float = 10.0) -> None:
        self.url, self.token, self.org, self.bucket, self.timeout_s = url, token, org, bucket, timeout_s
        self.chosen: InfluxSink | InfluxV1Sink | None = None

    def _sink(self) -> InfluxSink | InfluxV1Sink:
        if self.chosen is None:
            try:
                response = httpx.get(f"{self.url.rstrip('/')}/ping", timeout=self.timeout_s)
            except httpx.HTTPError as exc:
                raise SinkUnavailable(self.name, f"{self.url}/ping: {type(exc).__name__}: {exc}"[:300]) from exc
            version = (response.headers.get("X-Influxdb-Version") or "").removeprefix("v")
            if response.status_code >= 500:
                raise SinkUnavailable(self.name, f"{self.url}/ping answered {response.status_code}")
            if version.startswith("1."):
                self.chosen = InfluxV1Sink(self.url, self.bucket, self.token, self.timeout_s)
            else:
                self.chosen = InfluxSink(self.url, self.token, self.org, self.bucket, self.timeout_s)
            self.name = self.chosen.name
            log.info("telemetry: %s answers as %s; writing to %s", self.url, version or "(no version)",
                     self.chosen.describe())  # fmt: skip
        return self.chosen

    def write(self, lines: Sequence[str]) -> None:
        """Write through the chosen API (choosing it first)."""
        self._sink().write(lines)

    def check(self) -> None:
        """Check the chosen API's settings; a server that cannot be reached now is no error."""
        try:
            sink = self._sink()
        except SinkUnavailable:
            return
        sink.check()

    def close(self) -> None:
        """Close the chosen sink's client."""
        if self.chosen is not None:
            self.chosen.close()
