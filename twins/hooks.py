"""The seam between the twin platform and the services that react to it.

The rules engine, access control and telemetry each implement :class:`PlatformHandler`; the
platform calls them with accepted, de-duplicated events and twin changes, and gives them a
:class:`PlatformActions` through which they act (set desired state, send commands, publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """An accepted device event (``anfang/{site}/{device}/events/{type}``), seen once."""

    site: str
    device_id: str
    kind: str
    type: str
    id: str
    ts: float
    data: dict[str, Any]
    #: When the platform stored it (``device_events.received_at``, one value per ingest batch); ``None``
    #: for what is not stored there (status, platform events): the rules engine's input mark.
    received_at: float | None = None


@dataclass(frozen=True, slots=True)
class TwinChange:
    """An accepted change of a twin's reported (or desired) state."""

    site: str
    device_id: str
    kind: str
    version: int
    ts: float
    reported: dict[str, Any]
    previous_reported: dict[str, Any]
    desired: dict[str, Any]
    changed: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of a device command: answered (ok or not) or timed out."""

    id: str
    ok: bool
    result: dict[str, Any]
    error: str | None
    timed_out: bool = False


class PlatformActions(Protocol):
    """What a handler may do; the platform passes its implementation in."""

    def now(self) -> float: ...

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int: ...

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult: ...

    async def publish(
        self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1
    ) -> None: ...

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None: ...


class PlatformHandler(Protocol):
    """A service fed by the platform (rules engine, access control, telemetry)."""

    async def on_event(self, event: DeviceEvent, actions: PlatformActions) -> None: ...

    async def on_twin_change(self, change: TwinChange, actions: PlatformActions) -> None: ...
