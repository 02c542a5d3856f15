"""Scenarios: scripted situations and what the platform (and the devices) must visibly do.

A :class:`Scenario` is plain data built from a community by a function in
:mod:`firmware_sim.scenarios.library`; :mod:`firmware_sim.runner` plays it over MQTT and
:mod:`firmware_sim.checker` decides which expectations were met.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ExpectKind = Literal["alarm", "command", "status", "error", "event", "absent"]


@dataclass(frozen=True, slots=True)
class Step:
    """At ``at`` simulated seconds after the scenario start, do ``action`` at ``device``.

    ``action`` is a topic suffix fed to the firmware (``events/face_captured``, ``telemetry``), or a
    control action: ``net/down``, ``net/up`` (lose / regain the network), ``raw`` (publish
    ``payload`` bytes on ``topic`` as that device: malformed or foreign-topic messages), or
    ``operator`` (publish ``payload`` on ``topic`` with the operator account).
    """

    at: float
    device: str
    action: str
    payload: dict[str, Any] | bytes | str = field(default_factory=dict)
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class Expect:
    """A visible reaction to wait for.

    - ``alarm``: a message on ``anfang/{site}/alarms/+`` whose ``kind`` is ``name`` and whose
      ``subject`` (or ``device_id``/``device``/``person``/``tag``) is one of ``subjects``;
    - ``command``: a ``cmd/{name}`` to ``device`` whose ``args`` contain ``match`` (``count`` exact,
      None = at least one; 0 = none);
    - ``status``: ``device``'s ``status`` becomes ``value`` (``online``/``offline``);
    - ``error``: an ``errors`` answer to ``device`` with ``code``;
    - ``event``: ``device`` publishes ``events/{name}`` whose data contains ``match``;
    - ``absent``: nothing whose payload contains ``value`` appears on ``topic`` suffix of ``device``.

    ``level`` ``device`` expectations need only the broker; ``platform`` ones need the scenario's
    ``requires`` features.  ``after`` is the index of an expectation that must be met first.
    """

    kind: ExpectKind
    description: str
    level: Literal["device", "platform"] = "platform"
    device: str | None = None
    name: str | None = None
    subjects: tuple[str, ...] = ()
    match: dict[str, Any] = field(default_factory=dict)
    value: str | None = None
    code: int | None = None
    count: int | None = None
    topic: str | None = None
    within: float = 10.0
    after: int | None = None


@dataclass(frozen=True, slots=True)
class ScenarioParams:
    """What a scenario may take from outside the community file.

    ``visitor_pass``: a signed visitor QR payload issued by the access service for ``visitor-qr``.
    """

    visitor_pass: str | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scripted situation: devices to run, steps to play, reactions to expect."""

    name: str
    description: str
    requires: tuple[str, ...]
    start: float
    speed: float
    devices: tuple[str, ...]
    steps: tuple[Step, ...]
    expects: tuple[Expect, ...]

    @property
    def duration(self) -> float:
        """Simulated seconds from the start to the last step."""
        return max((s.at for s in self.steps), default=0.0)


__all__ = ["Expect", "ExpectKind", "Scenario", "ScenarioParams", "Step"]
