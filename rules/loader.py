"""Load rule files: parse with line marks, validate in two phases, compile expressions.

Each rule is validated on its own; a bad rule becomes a :class:`Diagnostic` and the rest load.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ValidationError

from rules import kinds as kindcat
from rules.expr import Expression, ExpressionError, compile_expression, compile_template, compile_value
from rules.model import (
    ACTION_TYPES,
    TRIGGER_TYPES,
    EventTrigger,
    ExpectTrigger,
    RuleEnvelope,
    ScheduleTrigger,
    SequenceTrigger,
    SilenceTrigger,
    StateTrigger,
    ThresholdTrigger,
    TwinTrigger,
    ZoneTrigger,
)
from rules.site import SitePlan, hhmm_to_minutes
from rules.yamlmarks import LineDict, LineList, YamlLoadError, line_of, load_marked_file, plain

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in a rule file, located by file and line."""

    file: str
    line: int
    rule_id: str | None
    message: str

    def format(self) -> str:
        """``rules/x.yaml:12: [rule-id] message``."""
        where = f"[{self.rule_id}] " if self.rule_id else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class RuleDefinitionError(Exception):
    """A rule failed validation; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


@dataclass(frozen=True, slots=True)
class CompiledTrigger:
    """A validated trigger with its expressions compiled."""

    type: str
    spec: Any
    line: int
    where: Expression | None = None
    group_by: Expression | None = None


@dataclass(frozen=True, slots=True)
class CompiledAction:
    """A validated action; ``values`` holds its fields with templates compiled."""

    type: str
    spec: Any
    values: dict[str, Any]
    line: int
    condition: Expression | None = None


@dataclass(frozen=True)
class Rule:
    """A rule ready for the engine."""

    id: str
    description: str
    file: str
    line: int
    hash: str
    enabled: bool
    triggers: tuple[CompiledTrigger, ...]
    conditions: tuple[Expression, ...]
    for_: float | None
    actions: tuple[CompiledAction, ...]
    cooldown: float | None
    dedupe: Any
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass
class LoadResult:
    """The rules that loaded and the problems found."""

    rules: list[Rule] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: ``optional`` rules left out because the site lacks what they name: (rule id, why)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)


def _pydantic_diags(
    exc: ValidationError, root: Any, model: type[BaseModel], file: str, rule_id: str | None, prefix: str
) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    names = sorted({f.alias or n for n, f in model.model_fields.items()})
    for err in exc.errors():
        loc = tuple(err["loc"])
        line = line_of(root, loc)
        where = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed fields: {', '.join(names)}"
            msg = f"{prefix}unknown field {key!r}; {hint}"
        elif err["type"] == "missing":
            msg = f"{prefix}missing required field {where!r}; add it (fields: {', '.join(names)})"
        else:
            text = str(err["msg"]).removeprefix("Value error, ")
            msg = f"{prefix}{where + ': ' if where else ''}{text}"
        out.append(Diagnostic(file, line, rule_id, msg))
    return out


def _single_key(item: Any, table: dict[str, Any], what: str) -> tuple[str, Any]:
    if not isinstance(item, dict):
        raise ValueError(f"each {what} must be a mapping like '{next(iter(table))}: {{...}}'")
    keys = [k for k in item if k != "if"]
    if len(keys) != 1:
        raise ValueError(f"a {what} needs exactly one of {', '.join(table)}; got {', '.join(keys) or 'none'}")
    key = keys[0]
    if key not in table:
        close = difflib.get_close_matches(key, list(table), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(table)}"
        raise ValueError(f"unknown {what} {key!r}; {hint}")
    return key, item[key] if item[key] is not None else {}


def _check_in(value: str, allowed: Iterable[str], what: str) -> str | None:
    allowed = sorted(set(allowed))
    if value in allowed:
        return None
    close = difflib.get_close_matches(value, allowed, n=1)
    shown = ", ".join(allowed[:12]) + (", ..." if len(allowed) > 12 else "")
    hint = f"did you mean {close[0]!r}?" if close else f"known: {shown or 'none'}"
    return f"unknown {what} {value!r}; {hint}"


def _semantic_trigger(spec: Any, site: SitePlan | None) -> list[tuple[str, str]]:
    """Checks beyond the schema; returns (field, message) pairs."""
    if isinstance(spec, SequenceTrigger | ExpectTrigger):
        parts = (
            [("steps", s) for s in spec.steps] + [("unless", s) for s in spec.unless]
            if isinstance(spec, SequenceTrigger)
            else [("after", spec.after), ("event", spec.event)]
        )
        return [
            (name, f"{'event' if step.event is not None else 'twin'} step: {msg}")
            for name, step in parts
            for _, msg in _semantic_trigger(step.event if step.event is not None else step.twin, site)
        ]
    problems: list[tuple[str, str]] = []
    kinds = getattr(spec, "kind", None) or []
    for k in kinds:
        if (msg := _check_in(k, kindcat.KNOWN_KINDS, "device kind")) is not None:
            problems.append(("kind", msg))
    known_kinds = [k for k in kinds if k in kindcat.KNOWN_KINDS]
    if isinstance(spec, EventTrigger):
        allowed = (
            set().union(*(kindcat.EVENT_TYPES[k] for k in known_kinds)) | {kindcat.STATUS_EVENT}
            if known_kinds
            else set(kindcat.ALL_EVENT_TYPES)
        )
        for t in spec.type or []:
            if t != "*" and (msg := _check_in(t, allowed, "event type")) is not None:
                problems.append(("type", msg))
    if isinstance(spec, TwinTrigger | ThresholdTrigger | StateTrigger) and getattr(spec, "field", None):
        fields = set().union(*(kindcat.REPORTED_FIELDS[k] for k in known_kinds)) if known_kinds else None
        head = str(spec.field).split(".")[0]
        if (msg := _check_in(head, fields or kindcat.ALL_FIELDS, "twin field")) is not None:
            problems.append(("field", msg))
    if isinstance(spec, ThresholdTrigger) and spec.metric is not None:
        msg = _check_in(spec.metric, kindcat.TELEMETRY_METRICS, "telemetry metric")
        if msg is not None:
            problems.append(("metric", msg))
    if isinstance(spec, ZoneTrigger) and site is not None:
        msg = _check_in(spec.zone, site.zones, "zone")
        if msg is not None:
            problems.append(("zone", msg + " (zones come from the community file)"))
    if isinstance(spec, ZoneTrigger | SilenceTrigger) and site is not None and site.tags:
        for g in spec.group or []:
            if (msg := _check_in(g, site.groups(), "group")) is not None:
                problems.append(("group", msg))
    if isinstance(spec, SilenceTrigger) and spec.per == "subject" and spec.kind:
        problems.append(("kind", "'kind' filters devices; with per: subject use 'group'"))
    if isinstance(spec, ScheduleTrigger):
        if spec.cron is not None and not croniter.is_valid(spec.cron):
            problems.append(("cron", f"bad cron expression {spec.cron!r}; use 5 fields like '0 8 * * *'"))
        if spec.at is not None:
            try:
                hhmm_to_minutes(spec.at)
            except ValueError:
                problems.append(("at", f"bad time of day {spec.at!r}; use 'HH:MM' like '07:30'"))
        for d in spec.days or []:
            if (msg := _check_in(d, DAYS, "day")) is not None:
                problems.append(("days", msg))
    if site is not None:
        for d in getattr(spec, "device", None) or []:
            if not any(ch in d for ch in "*?[") and (msg := _check_in(d, site.devices, "device")) is not None:
                problems.append(("device", msg))
    return problems


def _compile_rule(
    raw: LineDict, file: str, site: SitePlan | None, not_applicable: list[tuple[str, str]] | None = None
) -> tuple[Rule | None, list[Diagnostic]]:
    rid = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else None
    line0 = getattr(raw, "line", 0)
    if not isinstance(raw, dict):
        return None, [Diagnostic(file, line0, None, "a rule must be a mapping with id, when, then")]
    try:
        env = RuleEnvelope.model_validate(raw)
    except ValidationError as exc:
        return None, _pydantic_diags(exc, raw, RuleEnvelope, file, rid, "")
    diags: list[Diagnostic] = []
    missing: list[str] = []  # what an optional rule names and the site lacks

    def expr(src: str, line: int) -> Expression | None:
        try:
            return compile_expression(src)
        except ExpressionError as exc:
            diags.append(Diagnostic(file, line, env.id, f"bad expression: {exc.message} in {src!r}"))
            return None

    triggers: list[CompiledTrigger] = []
    when_raw = raw["when"] if isinstance(raw["when"], list) else [raw["when"]]
    for i, item in enumerate(when_raw):
        tline = line_of(raw, ("when", i)) if isinstance(raw["when"], LineList) else line_of(raw, ("when",))
        try:
            tkey, body = _single_key(item, TRIGGER_TYPES, "trigger")
        except ValueError as exc:
            diags.append(Diagnostic(file, tline, env.id, str(exc)))
            continue
        model = TRIGGER_TYPES[tkey]
        try:
            spec = model.model_validate(body)
        except ValidationError as exc:
            diags.extend(_pydantic_diags(exc, body, model, file, env.id, f"{tkey} trigger: "))
            continue
        for fld, msg in _semantic_trigger(spec, site):
            if env.optional and fld == "zone" and isinstance(spec, ZoneTrigger):
                missing.append(f"the site has no zone {spec.zone!r}")
                continue
            diags.append(Diagnostic(file, line_of(body, (fld,)) or tline, env.id, f"{tkey} trigger: {msg}"))
        where = group_by = None
        if isinstance(spec, EventTrigger):
            if spec.where:
                where = expr(spec.where, line_of(body, ("where",)))
            if spec.group_by:
                group_by = expr(spec.group_by, line_of(body, ("group_by",)))
        triggers.append(CompiledTrigger(tkey, spec, tline, where, group_by))
    conditions = [e for i, src in enumerate(env.if_ or []) if (e := expr(src, line_of(raw, ("if", i)))) is not None]
    actions: list[CompiledAction] = []
    then_raw = raw["then"] if isinstance(raw["then"], list) else [raw["then"]]
    for i, item in enumerate(then_raw):
        aline = line_of(raw, ("then", i)) if isinstance(raw["then"], LineList) else line_of(raw, ("then",))
        try:
            akey, body = _single_key(item, ACTION_TYPES, "action")
        except ValueError as exc:
            diags.append(Diagnostic(file, aline, env.id, str(exc)))
            continue
        amodel = ACTION_TYPES[akey]
        cond_src = item.get("if")
        if isinstance(body, dict) and "if" in body:
            cond_src = body["if"]
            cond_line = line_of(body, ("if",))
            body = LineDict({k: v for k, v in body.items() if k != "if"})
            body.line = getattr(item[akey], "line", aline)
            body.key_lines = dict(getattr(item[akey], "key_lines", {}))
        else:
            cond_line = aline
        try:
            aspec = amodel.model_validate(body)
        except ValidationError as exc:
            diags.extend(_pydantic_diags(exc, body, amodel, file, env.id, f"{akey} action: "))
            continue
        try:
            values = compile_value(plain(body))
        except ExpressionError as exc:
            diags.append(Diagnostic(file, aline, env.id, f"{akey} action: bad template: {exc.message}"))
            continue
        cond = expr(str(cond_src), cond_line) if cond_src is not None else None
        dev = body.get("device") if isinstance(body, dict) else None
        if site is not None and isinstance(dev, str) and "{{" not in dev and dev not in site.devices:
            dmsg = _check_in(dev, site.devices, "device")
            diags.append(Diagnostic(file, line_of(body, ("device",)), env.id, f"{akey} action: {dmsg}"))
        actions.append(CompiledAction(akey, aspec, values, aline, cond))
    dedupe = None
    if env.dedupe is not None:
        try:
            dedupe = compile_template(env.dedupe)
        except ExpressionError as exc:
            diags.append(Diagnostic(file, line_of(raw, ("dedupe",)), env.id, f"bad dedupe template: {exc.message}"))
    if missing:  # the rest is moot where the rule does not apply (a device it names may be missing too)
        if not_applicable is not None:
            not_applicable.append((env.id, "; ".join(missing)))
        return None, []
    if diags:
        return None, diags
    canonical = json.dumps(plain(raw), sort_keys=True, ensure_ascii=False, default=str)
    rule = Rule(
        id=env.id,
        description=env.description,
        file=file,
        line=line0,
        hash=hashlib.sha256(canonical.encode()).hexdigest()[:16],
        enabled=env.enabled,
        triggers=tuple(triggers),
        conditions=tuple(conditions),
        for_=env.for_,
        actions=tuple(actions),
        cooldown=env.cooldown,
        dedupe=dedupe,
        raw=plain(raw),
    )
    return rule, []


def load_rule_docs(doc: Any, file: str, site: SitePlan | None = None) -> LoadResult:
    """Validate the rules of one parsed document (``rules: [...]``, a list, or a single rule)."""
    result = LoadResult()
    if isinstance(doc, dict) and "rules" in doc:
        extra = [k for k in doc if k != "rules"]
        if extra:
            result.diagnostics.append(
                Diagnostic(
                    file,
                    line_of(doc, (extra[0],)),
                    None,
                    f"unknown top-level key {extra[0]!r}; a rule file holds 'rules: [...]'",
                )
            )
        items = doc["rules"]
    elif isinstance(doc, dict):
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    elif doc is None:
        return result
    else:
        result.diagnostics.append(Diagnostic(file, 1, None, "a rule file holds 'rules: [...]' or a list of rules"))
        return result
    if not isinstance(items, list):
        result.diagnostics.append(Diagnostic(file, getattr(items, "line", 1), None, "'rules' must be a list"))
        return result
    for item in items:
        rule, diags = _compile_rule(item, file, site, result.not_applicable)
        result.diagnostics.extend(diags)
        if rule is not None:
            result.rules.append(rule)
    return result


def rule_files(path: Path) -> list[Path]:
    """The rule files under ``path`` (a file, or the ``*.yaml`` of a folder, not recursive)."""
    if path.is_dir():
        return sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
    return [path]


def load_rules(paths: Path | list[Path], site: SitePlan | None = None) -> LoadResult:
    """Load and validate every rule file; duplicate ids across files are reported."""
    result = LoadResult()
    files = [f for p in ([paths] if isinstance(paths, Path) else paths) for f in rule_files(p)]
    seen: dict[str, Rule] = {}
    for f in files:
        try:
            doc = load_marked_file(f)
        except YamlLoadError as exc:
            result.diagnostics.append(Diagnostic(str(f), exc.line, None, exc.message))
            continue
        except OSError as exc:
            result.diagnostics.append(Diagnostic(str(f), 0, None, f"cannot read: {exc}"))
            continue
        part = load_rule_docs(doc, str(f), site)
        result.diagnostics.extend(part.diagnostics)
        result.not_applicable.extend(part.not_applicable)
        for rule in part.rules:
            if rule.id in seen:
                first = seen[rule.id]
                result.diagnostics.append(
                    Diagnostic(
                        str(f),
                        rule.line,
                        rule.id,
                        f"duplicate rule id (first defined at {first.file}:{first.line}); rename one",
                    )
                )
                continue
            seen[rule.id] = rule
            result.rules.append(rule)
    return result
