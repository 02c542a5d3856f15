"""Rule schemas (pydantic). Validation is two-phase: the rule envelope, then each trigger and action."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: Any) -> float:
    """``"5m"`` → 300.0; numbers are seconds. Compound forms like ``"1h30m"`` are accepted too."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '5m', '48h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    total = 0.0
    matched = False
    for m in re.finditer(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)", text):
        total += float(m.group(1)) * _UNITS[m.group(2)]
        matched = True
    rest = re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d|w)", "", text).strip()
    if matched and not rest:
        return total
    single = _DURATION_RE.match(text)
    if single:
        return float(single.group(1)) * _UNITS[single.group(2)]
    raise ValueError(f"bad duration {value!r}: use seconds or a string like '30s', '5m', '48h', '2d'")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _as_list(value: Any) -> Any:
    if value is None:
        return None
    return value if isinstance(value, list) else [value]


StrList = Annotated[list[str] | None, BeforeValidator(_as_list)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# --- triggers ---------------------------------------------------------------------------------


class EventTrigger(_Strict):
    """An event of a type arrives (optionally: N of them within a window, grouped by a key)."""

    type: StrList = None
    kind: StrList = None
    device: StrList = None
    where: str | None = None
    count: int = Field(1, ge=1, le=10_000)
    within: Duration | None = None
    group_by: str | None = None
    #: Count distinct values of this expression (e.g. ``event.device``) instead of events.
    distinct: str | None = None

    _exprs = field_validator("where", "group_by", "distinct")(lambda v: _expression(v))

    @model_validator(mode="after")
    def _window(self) -> EventTrigger:
        if self.count > 1 and self.within is None:
            raise ValueError("'count' greater than 1 needs 'within' (e.g. within: 2m)")
        if self.distinct is not None and self.count < 2:
            raise ValueError("'distinct' needs 'count' of 2 or more (how many different values)")
        if not self.type:
            raise ValueError("'type' is required: the event type(s), or '*' for any")
        return self


class TwinTrigger(_Strict):
    """A reported twin field changes (optionally from / to given values)."""

    field: str
    kind: StrList = None
    device: StrList = None
    from_: Any = Field(None, alias="from")
    to: Any = None


class ThresholdTrigger(_Strict):
    """A numeric reported field or telemetry metric crosses a threshold, with hysteresis."""

    field: str | None = None
    metric: str | None = None
    kind: StrList = None
    device: StrList = None
    below: float | None = None
    above: float | None = None
    hysteresis: float = Field(0.0, ge=0)
    recover: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> ThresholdTrigger:
        if (self.field is None) == (self.metric is None):
            raise ValueError("give exactly one of 'field' (twin) or 'metric' (telemetry)")
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' or 'above'")
        return self


class ZoneTrigger(_Strict):
    """A tag (its wearer) enters or leaves a zone of the site plan."""

    zone: str
    on: Literal["enter", "leave"]
    group: StrList = None
    tag: StrList = None


class SilenceTrigger(_Strict):
    """Something has NOT happened for a duration: a device silent, a person not seen."""

    for_: Duration = Field(alias="for")
    per: Literal["device", "subject"] = "device"
    kind: StrList = None
    device: StrList = None
    group: StrList = None
    events: StrList = None
    recover: bool = False

    @field_validator("for_")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("'for' must be positive")
        return v


class ScheduleTrigger(_Strict):
    """A cron expression or a time of day (site local time)."""

    cron: str | None = None
    at: str | None = None
    days: StrList = None

    @model_validator(mode="after")
    def _one_of(self) -> ScheduleTrigger:
        if (self.cron is None) == (self.at is None):
            raise ValueError("give exactly one of 'cron' (e.g. '0 8 * * *') or 'at' (e.g. '07:30')")
        return self


def _expression(value: Any) -> Any:
    """Refuse a bad expression while validating (so it is reported with its line)."""
    if value is None:
        return None
    from rules.expr import ExpressionError, compile_expression

    try:
        compile_expression(str(value))
    except ExpressionError as exc:
        raise ValueError(f"bad expression: {exc.message} in {value!r}") from None
    return value


class SequenceStep(_Strict):
    """One step of a sequence: an event or a twin change, seen ``times`` times."""

    event: EventTrigger | None = None
    twin: TwinTrigger | None = None
    times: int = Field(1, ge=1, le=100)
    #: The key of this step's input, when it differs from the sequence's ``for_each``.
    for_each: str | None = None

    _exprs = field_validator("for_each")(lambda v: _expression(v))

    @model_validator(mode="after")
    def _one(self) -> SequenceStep:
        if (self.event is None) == (self.twin is None):
            raise ValueError("a step is exactly one of 'event' or 'twin'")
        if self.event is not None and self.event.count > 1:
            raise ValueError("in a step, say 'times' (not 'count')")
        return self


class SequenceTrigger(_Strict):
    """Steps in order within a window, per key (``for_each``); ``unless`` in between starts afresh."""

    steps: list[SequenceStep] = Field(min_length=2, max_length=10)
    within: Duration
    for_each: str = "subject.id"
    unless: list[SequenceStep] = Field(default_factory=list)

    _exprs = field_validator("for_each")(lambda v: _expression(v))


class ExpectTrigger(_Strict):
    """After ``after``, expect ``event`` (same ``for_each`` key) within a window; fires when it does not come."""

    after: SequenceStep
    event: SequenceStep
    within: Duration
    for_each: str = "subject.id"

    _exprs = field_validator("for_each")(lambda v: _expression(v))

    @field_validator("within")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("'within' must be positive")
        return v


class StateTrigger(_Strict):
    """A twin field is in a state: on the change into it, and again at each edge of the given windows."""

    field: str
    is_: Any = Field(alias="is")
    kind: StrList = None
    device: StrList = None
    #: Re-evaluate at these site-local times: ``"HH:MM"`` or a named window (``night``: 22:00, 06:00).
    edges: StrList = None

    @field_validator("edges")
    @classmethod
    def _edges(cls, v: list[str] | None) -> list[str] | None:
        from rules.patterns import NAMED_EDGES

        for e in v or []:
            if e not in NAMED_EDGES and not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", e):
                raise ValueError(f"bad edge {e!r}: use 'HH:MM' or one of {', '.join(NAMED_EDGES)}")
        return v


TRIGGER_TYPES: dict[str, type[_Strict]] = {
    "event": EventTrigger,
    "twin": TwinTrigger,
    "threshold": ThresholdTrigger,
    "zone": ZoneTrigger,
    "silence": SilenceTrigger,
    "schedule": ScheduleTrigger,
    "sequence": SequenceTrigger,
    "expect": ExpectTrigger,
    "state": StateTrigger,
}
Trigger = (
    EventTrigger
    | TwinTrigger
    | ThresholdTrigger
    | ZoneTrigger
    | SilenceTrigger
    | ScheduleTrigger
    | SequenceTrigger
    | ExpectTrigger
    | StateTrigger
)

# --- actions ----------------------------------------------------------------------------------

Severity = Literal["info", "low", "medium", "high", "critical"]


class RaiseAlarm(_Strict):
    """Open an alarm (deduplicated per rule + subject)."""

    kind: str
    severity: Severity = "medium"
    subject: str | None = None
    message: str = ""
    data: dict[str, Any] = Field(default_factory=dict)


class ClearAlarm(_Strict):
    """Clear the active alarm of a rule (this one by default) for a subject."""

    rule: str | None = None
    subject: str | None = None
    reason: str = "condition cleared"


class SetDesired(_Strict):
    """Patch a twin's desired state."""

    device: str
    patch: dict[str, Any]


class SendCommand(_Strict):
    """Send a device command and wait for its result."""

    device: str
    name: str
    args: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration = 10.0


class Publish(_Strict):
    """Publish an MQTT message."""

    topic: str
    payload: dict[str, Any] | str = Field(default_factory=dict)
    retain: bool = False
    qos: Literal[0, 1] = 1


class Webhook(_Strict):
    """Call an HTTP endpoint (timeout, retries with backoff)."""

    url: str
    method: Literal["POST", "PUT", "GET"] = "POST"
    body: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = 5.0
    retries: int = Field(2, ge=0, le=10)
    backoff: Duration = 1.0


class Audit(_Strict):
    """Write an audit entry."""

    message: str
    data: dict[str, Any] = Field(default_factory=dict)


ACTION_TYPES: dict[str, type[_Strict]] = {
    "raise_alarm": RaiseAlarm,
    "clear_alarm": ClearAlarm,
    "set_desired": SetDesired,
    "command": SendCommand,
    "publish": Publish,
    "webhook": Webhook,
    "audit": Audit,
}
Action = RaiseAlarm | ClearAlarm | SetDesired | SendCommand | Publish | Webhook | Audit

# --- envelope ---------------------------------------------------------------------------------

_ID_RE = r"^[a-z0-9][a-z0-9_.-]*$"


class RuleEnvelope(_Strict):
    """Phase one: the rule's outer shape; triggers and actions stay raw mappings here."""

    id: str = Field(pattern=_ID_RE)
    description: str = ""
    enabled: bool = True
    when: Annotated[list[dict[str, Any]], BeforeValidator(_as_list)] = Field(min_length=1)
    if_: Annotated[list[str] | None, BeforeValidator(_as_list)] = Field(None, alias="if")
    for_: Duration | None = Field(None, alias="for")
    then: Annotated[list[dict[str, Any]], BeforeValidator(_as_list)] = Field(min_length=1)
    cooldown: Duration | None = None
    dedupe: str | None = None
    tags: list[str] = Field(default_factory=list)
    #: a rule for something not every site has (a kindergarten, a fence): on a site without a zone it
    #: names it is left out, as not applicable, instead of being an error
    optional: bool = False
