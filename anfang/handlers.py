"""Which services the platform feeds (rules engine, access control, telemetry), built from settings."""

from __future__ import annotations

from collections.abc import Sequence

from anfang.config import Settings
from registry.store import Registry
from twins.hooks import PlatformHandler


def default_handlers(settings: Settings, registry: Registry) -> Sequence[PlatformHandler]:
    return []
