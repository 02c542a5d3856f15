"""Fixtures of the telemetry tests (implemented in telemetry_servers.py, a uniquely named module)."""

from telemetry_servers import influx_v1, victoria

__all__ = ["influx_v1", "victoria"]
