"""Telemetry settings (built by the platform from ``ANFANG_*`` variables) and sink selection."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)


class TelemetrySettings(BaseModel):
    """Where telemetry goes and how it is batched.

    ``influx_url`` set → InfluxDB's v2 or 1.x write API, ``api`` (with a disk spool); else ``file`` set → a local,
    rotated line-protocol file; else telemetry is off (``NullSink``).
    """

    model_config = ConfigDict(extra="forbid")

    influx_url: str | None = None
    api: Literal["auto", "v1", "v2"] = "auto"  # auto: v1 for a server whose /ping says InfluxDB 1.x
    token: str | None = None
    org: str | None = None
    bucket: str = "anfang"
    file: Path | None = None
    file_max_mb: float = Field(default=64.0, gt=0)
    file_backups: int = Field(default=3, ge=0)
    spool_dir: Path | None = None
    spool_max_mb: float = Field(default=256.0, gt=0)
    batch_size: int = Field(default=5000, ge=1)
    flush_interval: float = Field(default=1.0, gt=0)
    max_buffer: int = Field(default=200_000, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)

    @property
    def mode(self) -> str:
        """``influx``, ``file`` or ``off``."""
        if self.influx_url:
            return "influx"
        if self.file is not None:
            return "file"
        return "off"

    def effective_spool_dir(self) -> Path:
        """The spool directory; defaults to a per-user temp dir (set ``ANFANG_TELEMETRY_SPOOL_DIR``)."""
        if self.spool_dir is not None:
            return self.spool_dir
        fallback = Path(tempfile.gettempdir()) / "anfang-telemetry-spool"
        log.warning("telemetry spool_dir not set; spooling to %s", fallback)
        return fallback


def settings_from_platform(config: Any, data_dir: Path | None = None) -> TelemetrySettings:
    """Map the platform's ``telemetry`` config section (``anfang.config.TelemetryConfig``) to settings.

    Duck-typed (``influx_url``, ``influx_api``, ``influx_token``, ``influx_org``, ``influx_bucket``, ``file``,
    ``spool_dir``, ``spool_max_mb``) so this package does not import the platform. The spool
    defaults to ``<data_dir>/telemetry-spool``.
    """
    spool_dir = getattr(config, "spool_dir", None)
    if spool_dir is None and data_dir is not None:
        spool_dir = Path(data_dir) / "telemetry-spool"
    return TelemetrySettings(
        influx_url=getattr(config, "influx_url", None),
        api=getattr(config, "influx_api", None) or "auto",
        token=getattr(config, "influx_token", None),
        org=getattr(config, "influx_org", None),
        bucket=getattr(config, "influx_bucket", None) or "anfang",
        file=getattr(config, "file", None),
        spool_dir=spool_dir,
        spool_max_mb=getattr(config, "spool_max_mb", None) or 256.0,
    )
