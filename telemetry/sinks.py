"""Where encoded points go: InfluxDB v2 write API, a rotated local file, or nowhere.

Sinks are synchronous and are only ever called from the writer's worker thread, never on the
event loop. They raise :class:`SinkUnavailable` for a failure worth retrying (server down,
5xx, auth/bucket not there yet) and :class:`SinkRejected` for a batch the server will never
accept (malformed data) so it is not retried forever.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

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


class TelemetrySink(Protocol):
    """A destination for batches of line-protocol lines."""

    name: str

    def write(self, lines: Sequence[str]) -> None:
        """Write the batch or raise :class:`SinkUnavailable` / :class:`SinkRejected`."""
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
            raise SinkUnavailable(self.name, reason, status) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SinkUnavailable(self.name, f"{type(exc).__name__}: {exc}"[:300]) from exc

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()
