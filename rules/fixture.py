"""``anfang rules test``: replay a hand-written timeline through the engine on a simulated clock."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from registry.alarms import Alarm, InMemoryAlarmStore
from rules.engine import RulesEngine
from rules.health import SOURCE
from rules.loader import Diagnostic, load_rules
from rules.model import Duration
from rules.recording import RecordingActions
from rules.sinks import InMemoryAuditLog, RecordingWebhookSender
from rules.site import load_site_plan
from rules.trace import Firing, TraceEntry
from rules.yamlmarks import YamlLoadError, line_of, load_marked_file, plain
from twins.hooks import DeviceEvent, TwinChange

DEFAULT_START = "2026-11-02T10:00:00+08:00"  # a Monday morning


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Step(_M):
    """One timeline entry; exactly one of the input fields is set."""

    at: Duration
    every: Duration | None = None
    until: Duration | None = None
    event: dict[str, Any] | None = None
    twin: dict[str, Any] | None = None
    telemetry: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    ack: dict[str, Any] | None = None
    clear: dict[str, Any] | None = None
    tick: bool | None = None

    @model_validator(mode="after")
    def _one(self) -> Step:
        given = [k for k in ("event", "twin", "telemetry", "status", "ack", "clear", "tick") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("a step needs exactly one of event, twin, telemetry, status, ack, clear, tick")
        if (self.every is None) != (self.until is None):
            raise ValueError("'every' and 'until' go together (repeat the step)")
        return self


class ExpectedAlarm(_M):
    """An alarm that must have been raised."""

    rule: str
    subject: str | None = None
    kind: str | None = None
    severity: str | None = None
    state: Literal["raised", "active", "acknowledged", "cleared"] | None = None  # "active": the old name of raised
    message_contains: str | None = None
    after: Duration | None = None
    before: Duration | None = None


class Expect(_M):
    """What a case must (and must not) produce."""

    alarms: list[ExpectedAlarm] = Field(default_factory=list)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    fired: list[str] = Field(default_factory=list)
    not_fired: list[str] = Field(default_factory=list)
    absent_alarms: list[ExpectedAlarm] = Field(default_factory=list)
    only_listed: bool = True


class Case(_M):
    """One scenario."""

    name: str
    start: str | None = None
    twins: dict[str, dict[str, Any]] = Field(default_factory=dict)
    timeline: list[Step]
    run_until: Duration | None = None
    expect: Expect = Field(default_factory=Expect)


class Fixture(_M):
    """A fixture file: rule files, a community file and cases."""

    rules: list[str] | str = ".."
    site: str
    start: str = DEFAULT_START
    cases: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    """Outcome of one case."""

    file: str
    name: str
    failures: list[str] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    origin: float = 0.0

    @property
    def passed(self) -> bool:
        """No failures."""
        return not self.failures


class FixtureError(Exception):
    """The fixture file itself is broken."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(d.format() for d in diagnostics))
        self.diagnostics = diagnostics


def _load_fixture(path: Path) -> tuple[Fixture, Any]:
    try:
        doc = load_marked_file(path)
    except YamlLoadError as exc:
        raise FixtureError([Diagnostic(str(path), exc.line, None, exc.message)]) from exc
    try:
        return Fixture.model_validate(doc), doc
    except ValidationError as exc:
        diags = [
            Diagnostic(str(path), line_of(doc, tuple(e["loc"])), None, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
            for e in exc.errors()
        ]
        raise FixtureError(diags) from exc


#: Rule ids of the platform's own alarms (rule problems), which a fixture may name besides its rules.
PLATFORM_RULE_IDS = frozenset({SOURCE})
_INPUTS = ("event", "twin", "telemetry", "status")


def lint_fixture(fx: Fixture, doc: Any, file: str, rule_ids: set[str], devices: set[str]) -> list[Diagnostic]:
    """Names a fixture uses that do not exist: rule ids in expectations, devices in timelines.

    A misspelt id in ``not_fired`` would otherwise pass silently, and so would a timeline that feeds a
    device the site does not have. Events with ``kind: platform`` (the platform's own services, such
    as access control) may name any source.
    """
    out: list[Diagnostic] = []
    known = rule_ids | PLATFORM_RULE_IDS

    def rule(rid: str | None, loc: tuple[Any, ...], wildcard: bool = False) -> None:
        if rid is None or rid in known or (wildcard and rid in ("*", "all")):
            return
        close = difflib.get_close_matches(rid, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; the fixture's rules are {', '.join(sorted(rule_ids))}"
        out.append(Diagnostic(file, line_of(doc, loc), None, f"unknown rule id {rid!r}{hint}"))

    def device(dev: Any, loc: tuple[Any, ...]) -> None:
        if str(dev) in devices:
            return
        close = difflib.get_close_matches(str(dev), sorted(devices), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else " (devices and tags come from the community file)"
        out.append(Diagnostic(file, line_of(doc, loc), None, f"the site has no device {dev!r}{hint}"))

    for ci, case in enumerate(fx.cases):
        at = ("cases", ci)
        for dev in case.twins:
            device(dev, (*at, "twins", dev))
        for si, step in enumerate(case.timeline):
            for name in _INPUTS:
                body = getattr(step, name)
                # an event of kind "platform" comes from one of the platform's own services
                if body is not None and "device" in body and body.get("kind") != "platform":
                    device(body["device"], (*at, "timeline", si, name, "device"))
            for body, name in ((step.ack, "ack"), (step.clear, "clear")):
                if body is not None:
                    rule(str(body.get("rule")), (*at, "timeline", si, name, "rule"))
        exp = (*at, "expect")
        for key, wanted in (("alarms", case.expect.alarms), ("absent_alarms", case.expect.absent_alarms)):
            for ai, alarm in enumerate(wanted):
                rule(alarm.rule, (*exp, key, ai, "rule"))
        for ai, action in enumerate(case.expect.actions):
            rule(action.get("rule"), (*exp, "actions", ai, "rule"))
        for key, ids in (("fired", case.expect.fired), ("not_fired", case.expect.not_fired)):
            for ri, rid in enumerate(ids):
                rule(rid, (*exp, key, ri), wildcard=key == "not_fired")
    return out


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _subset(v, actual[k]) for k, v in expected.items())
    return bool(expected == actual)


async def run_fixture(path: Path) -> list[CaseResult]:
    """Run every case of one fixture file."""
    fx, doc = _load_fixture(path)
    base = path.parent
    site = load_site_plan(base / fx.site)
    rule_paths = [base / p for p in ([fx.rules] if isinstance(fx.rules, str) else fx.rules)]
    loaded = load_rules(rule_paths, site)
    if loaded.diagnostics:
        raise FixtureError(loaded.diagnostics)
    problems = lint_fixture(fx, doc, str(path), {r.id for r in loaded.rules}, set(site.devices) | set(site.tags))
    if problems:
        raise FixtureError(problems)
    return [
        await _run_case(str(path), case, loaded.rules, site, datetime.fromisoformat(case.start or fx.start).timestamp())
        for case in fx.cases
    ]


async def _run_case(file: str, case: Case, rules: list[Any], site: Any, t0: float) -> CaseResult:
    result = CaseResult(file, case.name, origin=t0)
    acts = RecordingActions(clock=t0, command_results={})
    counter = iter(range(1, 1_000_000))
    store = InMemoryAlarmStore()
    engine = RulesEngine(
        rules,
        site,
        actions=acts,
        alarm_store=store,
        webhooks=RecordingWebhookSender(),
        audit=InMemoryAuditLog(),
        trace_size=100_000,
        new_alarm_id=lambda: f"a{next(counter)}",
        observer=result.firings.append,
    )
    reported: dict[str, dict[str, Any]] = {d: dict(t.get("reported", {})) for d, t in case.twins.items()}
    steps: list[tuple[float, int, Step]] = []
    for i, step in enumerate(case.timeline):
        if step.every is not None and step.until is not None:
            n = 0
            while step.at + n * step.every <= step.until:
                steps.append((step.at + n * step.every, i, step))
                n += 1
        else:
            steps.append((step.at, i, step))
    steps.sort(key=lambda s: (s[0], s[1]))
    engine.start(t0)

    async def advance(to: float) -> None:
        while (due := engine.next_due()) is not None and due <= to:
            acts.clock = max(acts.clock, due)
            await engine.tick(acts.clock, acts)
        acts.clock = max(acts.clock, to)
        await engine.tick(acts.clock, acts)

    for seq, (at, _, step) in enumerate(steps, start=1):
        await advance(t0 + at)
        now = acts.clock
        if step.event is not None:
            ev = step.event
            dev = str(ev["device"])
            kind = str(ev.get("kind") or (site.devices[dev].kind if dev in site.devices else "platform"))
            await engine.on_event(
                DeviceEvent(
                    site.site, dev, kind, str(ev["type"]), str(ev.get("id", f"e{seq}")), now, dict(ev.get("data") or {})
                ),
                acts,
            )
        elif step.twin is not None:
            dev = str(step.twin["device"])
            prev = dict(reported.get(dev, {}))
            patch = dict(step.twin.get("reported") or {})
            reported[dev] = {**prev, **patch}
            kind = site.devices[dev].kind if dev in site.devices else str(step.twin.get("kind", ""))
            await engine.on_twin_change(
                TwinChange(site.site, dev, kind, seq, now, reported[dev], prev, {}, patch), acts
            )
        elif step.telemetry is not None:
            dev = str(step.telemetry["device"])
            kind = site.devices[dev].kind if dev in site.devices else ""
            await engine.on_telemetry(dev, kind, dict(step.telemetry.get("metrics") or {}), acts)
        elif step.status is not None:
            dev = str(step.status["device"])
            kind = site.devices[dev].kind if dev in site.devices else ""
            await engine.on_status(dev, kind, str(step.status["status"]), acts)
        elif step.ack is not None or step.clear is not None:
            spec = step.ack or step.clear or {}
            alarm = await store.find_active(str(spec["rule"]), str(spec["subject"]))
            if alarm is None:
                result.failures.append(
                    f"t={at:.0f}: no active alarm of {spec['rule']} for {spec['subject']} to "
                    f"{'ack' if step.ack else 'clear'}"
                )
            elif step.ack is not None:
                await engine.acknowledge(alarm.id, str(spec.get("by", "operator")), acts)
            else:
                await engine.clear_alarm(alarm.id, str(spec.get("by", "operator")), actions=acts)
    last = steps[-1][0] if steps else 0.0
    await advance(t0 + (case.run_until if case.run_until is not None else last + 1))
    alarms = await store.list(limit=100_000)
    result.trace = list(engine.trace)
    _check(case.expect, result, alarms, t0, engine)
    return result


def _check(exp: Expect, result: CaseResult, alarms: list[Alarm], t0: float, engine: RulesEngine) -> None:
    unmatched = list(alarms)
    for want in exp.alarms:
        hit = None
        for a in unmatched:
            if _alarm_matches(want, a, t0):
                hit = a
                break
        if hit is None:
            seen = [f"{a.rule_id}/{a.subject}@{a.raised_at - t0:.0f}s[{a.state}]" for a in alarms] or ["none"]
            result.failures.append(
                f"expected alarm {want.model_dump(exclude_none=True)} not raised "
                f"(alarms: {', '.join(seen)}); see --trace for {want.rule}"
            )
        else:
            unmatched.remove(hit)
    if exp.only_listed:
        for a in unmatched:
            result.failures.append(
                f"unexpected alarm {a.rule_id} for {a.subject} at t={a.raised_at - t0:.0f}s: {a.message!r}"
            )
    for absent in exp.absent_alarms:
        for a in alarms:
            if _alarm_matches(absent, a, t0):
                result.failures.append(f"alarm {a.rule_id} for {a.subject} at t={a.raised_at - t0:.0f}s must not exist")
    for want_action in exp.actions:
        fields = dict(want_action)
        rule = fields.pop("rule", None)
        found = any(
            (rule is None or f.rule_id == rule) and _subset(fields, plain(a)) for f in result.firings for a in f.actions
        )
        if not found:
            result.failures.append(f"expected action {want_action} not performed")
    fired_ids = {f.rule_id for f in result.firings}
    for rid in exp.fired:
        if rid not in fired_ids:
            why = [t.format(result.origin) for t in engine.explain(rid)][-3:]
            result.failures.append(f"rule {rid} did not fire; last trace: {why or ['never a candidate']}")
    for rid in exp.not_fired:
        for f in result.firings:
            if rid in ("*", "all") or f.rule_id == rid:
                result.failures.append(f"rule {f.rule_id} must not fire but fired at t={f.ts - t0:.0f}s on {f.input}")
    for rid, reason in engine.faults.items():
        result.failures.append(f"rule {rid} failed at run time: {reason}")


def _alarm_matches(want: ExpectedAlarm, a: Alarm, t0: float) -> bool:
    rel = a.raised_at - t0
    return (
        a.rule_id == want.rule
        and (want.subject is None or a.subject == want.subject)
        and (want.kind is None or a.kind == want.kind)
        and (want.severity is None or a.severity == want.severity)
        and (want.state is None or a.state == ("raised" if want.state == "active" else want.state))
        and (want.message_contains is None or want.message_contains in a.message)
        and (want.after is None or rel >= want.after)
        and (want.before is None or rel <= want.before)
    )


def fixture_files(path: Path) -> list[Path]:
    """Fixture files at ``path``: a file, a folder of fixtures, or a rules folder with ``tests/``."""
    if path.is_file():
        return [path]
    if (path / "tests").is_dir():
        path = path / "tests"
    return sorted(p for p in path.glob("*.yaml") if _is_fixture(p))


def _is_fixture(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8")
    except OSError:
        return False
    return "cases:" in head
