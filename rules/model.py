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

    @model_validator(mode="after")
    def _window(self) -> EventTrigger:
        if self.count > 1 and self.within is None:
            raise ValueError("'count' greater than 1 needs 'within' (e.g. within: 2m)")
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


TRIGGER_TYPES: dict[str, type[_Strict]] = {
    "event": EventTrigger,
    "twin": TwinTrigger,
    "threshold": ThresholdTrigger,
    "zone": ZoneTrigger,
    "silence": SilenceTrigger,
    "schedule": ScheduleTrigger,
}
Trigger = EventTrigger | TwinTrigger | ThresholdTrigger | ZoneTrigger | SilenceTrigger | ScheduleTrigger

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
