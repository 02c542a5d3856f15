"""Which partition owner evaluates a rule for an input, when several workers serve one site. Pure.

A site's devices are split into partitions (:func:`owner_of` of the device id); the owner of a
device's partition receives its inputs. A rule's state is keyed by an *entity*, and exactly one
owner holds the state of an entity — the owner of ``owner_of(entity)`` — so each (rule, input) is
evaluated by exactly one engine: the owner of the input's entity for that rule's trigger.

The entity of a trigger (its :class:`Scope`, classified from the loaded rule, never from its name):

* ``DEVICE`` — state per device (``twin``, ``threshold``, ``state`` without edges, ``silence`` per
  device): the input's device, always local to the device's owner;
* ``SUBJECT`` — state per subject (``event`` without ``group_by``, ``zone``, ``silence`` per subject,
  ``sequence``/``expect`` keyed by ``subject.id``): the input's subject — a person for a tag, a
  vehicle for a plate, ``data.subject`` — which is the device itself for most inputs;
* ``RULE`` — anything else (``group_by``, ``schedule``, ``state`` edges, other ``for_each`` keys,
  a custom ``dedupe``): the rule itself, ``rule:<id>``.

A rule whose expressions look at other entities (:data:`WIDE_CALLS`: other tags' positions, another
device's twin or connection) is routed by ``rule:<id>`` as a whole and is *wide*: its owner receives,
besides its triggers' inputs, every tag sighting, every twin change or every input of the site, so
that what its conditions read is live there. The owner of a
device forwards an input only to the owners of the entities some rule keys it on (see
:meth:`rules.engine.RulesEngine.forward_targets`).
"""

from __future__ import annotations

import enum
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rules.model import (
    EventTrigger,
    ExpectTrigger,
    ScheduleTrigger,
    SequenceTrigger,
    SilenceTrigger,
    StateTrigger,
    ThresholdTrigger,
    TwinTrigger,
    ZoneTrigger,
)

#: A key expression that means "the input's subject" (``sequence``/``expect`` ``for_each``).
SUBJECT_KEY = "subject.id"
#: Function calls whose result depends on entities other than the input's own (see the module doc), by
#: what their owner must then receive: every tag sighting (positions), every twin change, every input.
WIDE_CALLS: dict[str, re.Pattern[str]] = {
    "tags": re.compile(r"\b(?:guardian_nearby|tags_near|distance)\s*\(|\bin_zone\s*\([^,()]*,"),
    "twins": re.compile(r"\btwin_of\s*\(|\bin_maintenance\s*\(\s*[^)\s]"),
    "all": re.compile(r"\b(?:online|last_seen|offline_for)\s*\("),
}


class Scope(enum.Enum):
    """What a trigger's state is keyed by."""

    DEVICE = "device"
    SUBJECT = "subject"
    RULE = "rule"


def owner_of(entity: str, partitions: int) -> int:
    """The partition whose owner holds ``entity``'s state (a device id: the device's partition)."""
    if partitions <= 1:
        return 0
    return zlib.crc32(entity.encode()) % partitions


def rule_entity(rule_id: str) -> str:
    """The entity of a rule routed as a whole."""
    return f"rule:{rule_id}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def wide_needs(raw: dict[str, Any]) -> frozenset[str]:
    """What the rule's expressions and templates read of other entities: ``tags`` (positions), ``twins``,
    ``all`` (connection, known from any input); empty for a rule that reads only its input's own."""
    texts = list(_strings(raw))
    return frozenset(need for need, pattern in WIDE_CALLS.items() if any(pattern.search(t) for t in texts))


def is_wide(raw: dict[str, Any]) -> bool:
    """Does any expression or template of the rule's definition look at other entities?"""
    return bool(wide_needs(raw))


def _steps_keyed_by_subject(default: str, steps: Iterable[Any]) -> bool:
    return default == SUBJECT_KEY and all(s.for_each in (None, SUBJECT_KEY) for s in steps)


def trigger_scope(spec: Any) -> Scope:
    """The scope of one trigger, by its own definition (the rule's may widen it: :func:`rule_scopes`)."""
    if isinstance(spec, EventTrigger):
        return Scope.RULE if spec.group_by is not None else Scope.SUBJECT
    if isinstance(spec, TwinTrigger | ThresholdTrigger):
        return Scope.DEVICE
    if isinstance(spec, StateTrigger):
        return Scope.RULE if spec.edges else Scope.DEVICE
    if isinstance(spec, ZoneTrigger):
        return Scope.SUBJECT
    if isinstance(spec, SilenceTrigger):
        return Scope.DEVICE if spec.per == "device" else Scope.SUBJECT
    if isinstance(spec, SequenceTrigger):
        steps = [*spec.steps, *spec.unless]
        return Scope.SUBJECT if _steps_keyed_by_subject(spec.for_each, steps) else Scope.RULE
    if isinstance(spec, ExpectTrigger):
        return Scope.SUBJECT if _steps_keyed_by_subject(spec.for_each, [spec.after, spec.event]) else Scope.RULE
    if isinstance(spec, ScheduleTrigger):
        return Scope.RULE
    return Scope.RULE  # a trigger type this module does not know: the safe choice


@dataclass(frozen=True, slots=True)
class RuleRoute:
    """How a loaded rule is routed: a scope per trigger, and whether it is wide."""

    scopes: tuple[Scope, ...]
    #: What a wide rule's owner must receive of the whole site (:func:`wide_needs`); empty: not wide.
    needs: frozenset[str] = frozenset()

    @property
    def wide(self) -> bool:
        return bool(self.needs)


def route_rule(specs: Iterable[Any], raw: dict[str, Any], custom_dedupe: bool) -> RuleRoute:
    """A rule's route. A custom ``dedupe`` (its cooldown may span entities) or a wide expression routes
    the whole rule by ``rule:<id>``, as does a rule mixing per-device/subject triggers with a rule-wide one
    (they share the rule's cooldown)."""
    scopes = [trigger_scope(s) for s in specs]
    needs = wide_needs(raw)
    if needs or custom_dedupe or Scope.RULE in scopes:
        return RuleRoute(tuple(Scope.RULE for _ in scopes), needs)
    return RuleRoute(tuple(scopes))


def entity_of(scope: Scope, rule_id: str, device_id: str, subject: str) -> str:
    """The entity an input's state lives under for a trigger of this scope."""
    if scope is Scope.DEVICE:
        return device_id
    if scope is Scope.SUBJECT:
        return subject
    return rule_entity(rule_id)


@dataclass
class Ownership:
    """What one engine owns: its partition of ``partitions``. ``virtual``: the site's virtual devices,
    which belong to partition 0 (it derives them); the engine adds those registered later."""

    part: int = 0
    partitions: int = 1
    virtual: set[str] = field(default_factory=set)

    @property
    def single(self) -> bool:
        """One partition: everything is local."""
        return self.partitions <= 1

    def owner(self, entity: str) -> int:
        """The partition holding ``entity``'s state."""
        if self.partitions <= 1 or entity in self.virtual:
            return 0
        return owner_of(entity, self.partitions)

    def owns(self, entity: str) -> bool:
        return self.partitions <= 1 or self.owner(entity) == self.part
