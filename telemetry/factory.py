"""Build the sink, spool and writer from :class:`TelemetrySettings` (the IO edge of config)."""

from __future__ import annotations

from telemetry.config import TelemetrySettings
from telemetry.handler import TelemetryHandler
from telemetry.schema import GeoOrigin
from telemetry.sinks import AutoInfluxSink, FileSink, InfluxSink, InfluxV1Sink, NullSink, TelemetrySink
from telemetry.spool import Spool
from telemetry.writer import TelemetryWriter

_MB = 1024 * 1024


def build_sink(settings: TelemetrySettings) -> TelemetrySink:
    """InfluxDB when ``influx_url`` is set (the API configured or detected), else the local file, else nothing."""
    if settings.influx_url:
        url, token, timeout = settings.influx_url, settings.token, settings.timeout_s
        if settings.api == "v1":
            return InfluxV1Sink(url, settings.bucket, token, timeout)
        if settings.api == "v2":
            return InfluxSink(url, token, settings.org, settings.bucket, timeout)
        return AutoInfluxSink(url, token, settings.org, settings.bucket, timeout)
    if settings.file is not None:
        return FileSink(settings.file, int(settings.file_max_mb * _MB), settings.file_backups)
    return NullSink()


def build_writer(settings: TelemetrySettings) -> TelemetryWriter:
    """A writer with a disk spool for InfluxDB (a file or null sink needs none)."""
    sink = build_sink(settings)
    spool = None
    if settings.mode == "influx":
        spool = Spool(settings.effective_spool_dir(), int(settings.spool_max_mb * _MB))
    return TelemetryWriter(
        sink,
        spool=spool,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval,
        max_buffer=settings.max_buffer,
    )


def build_handler(
    settings: TelemetrySettings,
    *,
    site: str,
    tag_groups: dict[str, str] | None = None,
    origin: tuple[float, float] | None = None,
) -> TelemetryHandler:
    """The platform's one-call wiring: settings → writer → handler."""
    return TelemetryHandler(
        build_writer(settings),
        site=site,
        tag_groups=tag_groups,
        origin=GeoOrigin(*origin) if origin is not None else None,
    )
