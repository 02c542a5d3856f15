"""The seam between the twin platform and the services that react to it.

The rules engine, access control and telemetry each implement :class:`PlatformHandler`; the
platform calls them with accepted, de-duplicated events and twin changes, and gives them a
:class:`PlatformActions` through which they act (set desired state, send commands, publish).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
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


@dataclass
class FakePlatformActions:
    """In-memory :class:`PlatformActions` for component tests: records every call.

    ``command_results`` maps a command name to the result the fake device answers with;
    commands without an entry time out.
    """

    clock: float = 0.0
    desired: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    published: list[tuple[str, dict[str, Any] | str, bool]] = field(default_factory=list)
    virtual: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    command_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def now(self) -> float:
        return self.clock

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        self.desired.append((device_id, patch))
        self.versions[device_id] = self.versions.get(device_id, 0) + 1
        return self.versions[device_id]

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        self.commands.append((device_id, name, args))
        cid = uuid.uuid4().hex
        if name in self.command_results:
            return CommandResult(cid, True, self.command_results[name], None)
        return CommandResult(cid, False, {}, "timed out", timed_out=True)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        self.published.append((topic, payload, retain))

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None:
        self.virtual.append((device_id, state))
