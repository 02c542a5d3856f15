"""The platform as ``anfang rules test`` replays it: a :class:`~twins.hooks.PlatformActions` that records.

A rule fixture plays a timeline against the real rules engine; what the engine asks the platform to do
(set desired state, send commands, publish alarms, report virtual twins) is recorded here and compared
with the fixture's expectations, and commands are answered from ``command_results``. Because ``rules
test`` is a product feature, this in-memory platform is a product component, not a test fake; the
tests and benchmarks use it too wherever a component needs a platform to act on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from twins.hooks import CommandResult

__all__ = ["RecordingActions"]


@dataclass
class RecordingActions:
    """In-memory :class:`~twins.hooks.PlatformActions`: records every call, the clock is set by the caller.

    ``command_results`` maps a command name to the result the device answers with; commands without an
    entry time out.
    """

    clock: float = 0.0
    desired: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    commands: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    published: list[tuple[str, dict[str, Any] | str, bool]] = field(default_factory=list)
    virtual: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    command_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def now(self) -> float:
        """The caller's clock."""
        return self.clock

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        """Record the patch; the twin's version goes up by one."""
        self.desired.append((device_id, patch))
        self.versions[device_id] = self.versions.get(device_id, 0) + 1
        return self.versions[device_id]

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        """Record the command; answered from ``command_results``, else timed out."""
        self.commands.append((device_id, name, args))
        cid = uuid.uuid4().hex
        if name in self.command_results:
            return CommandResult(cid, True, self.command_results[name], None)
        return CommandResult(cid, False, {}, "timed out", timed_out=True)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        """Record the publish."""
        self.published.append((topic, payload, retain))

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None:
        """Record the virtual report."""
        self.virtual.append((device_id, state))
