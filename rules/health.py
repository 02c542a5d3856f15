"""What is wrong with the rules, for operators: invalid rule files and rules failing at run time.

Both are counted (``/metrics``), logged (a fault at most once a minute per rule, with how many were
not logged) and raised through the one alarm system as platform alarms: one ``rule_invalid`` alarm
per broken rule file naming ``file:line`` (cleared when the file is valid again) and one
``rule_fault`` alarm per failing rule (cleared when the rule is edited). A fault affects only the
evaluation it happened in: the rule keeps running for every other device, subject and input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from registry.alarms import AlarmManager, AlarmStoreError
from rules.loader import Diagnostic, Rule
from twins.hooks import PlatformActions

log = logging.getLogger(__name__)

#: The alarms' source (``rule_id``) and kinds.
SOURCE = "platform"
KIND_INVALID = "rule_invalid"
KIND_FAULT = "rule_fault"
LOG_EVERY_S = 60.0


def file_subject(file: str) -> str:
    """The subject of a broken file's alarm."""
    return f"rule-file:{file}"


def fault_subject(rule_id: str) -> str:
    """The subject of a failing rule's alarm."""
    return f"rule:{rule_id}"


@dataclass
class RuleFault:
    """Run-time failures of one rule."""

    rule_id: str
    where: str
    count: int = 0
    last: str = ""
    last_input: str = ""
    last_ts: float = 0.0
    logged_at: float | None = None
    unlogged: int = 0


class RuleHealth:
    """Problems and faults of the running rule set, and their operator alarms."""

    def __init__(self, alarms: AlarmManager) -> None:
        self.alarms = alarms
        self.problems: list[Diagnostic] = []
        self.stale: list[str] = []
        self.faults: dict[str, RuleFault] = {}
        self.fault_total = 0
        self.reloads = 0
        self._alarmed_files: set[str] = set()
        self._alarmed_faults: set[str] = set()
        self._cleared_faults: set[str] = set()
        self._checked_open = False

    def set_problems(self, problems: list[Diagnostic], stale: list[str]) -> None:
        """The diagnostics of the last load and the rules kept at their last valid version."""
        self.problems = list(problems)
        self.stale = list(stale)
        for d in problems:
            log.error("rule file problem: %s", d.format())

    def forget(self, rule_id: str) -> None:
        """A rule was edited or removed: its faults (and their alarm) end."""
        if self.faults.pop(rule_id, None) is not None:
            self._cleared_faults.add(rule_id)

    def fault(self, rule: Rule, label: str, exc: BaseException, now: float) -> str:
        """Count a run-time failure of ``rule`` on one input; log it at most once a minute per rule."""
        reason = f"{type(exc).__name__}: {exc}"
        f = self.faults.get(rule.id)
        if f is None:
            f = self.faults[rule.id] = RuleFault(rule.id, f"{rule.file}:{rule.line}")
        f.count += 1
        f.last, f.last_input, f.last_ts = reason, label, now
        self.fault_total += 1
        if f.logged_at is None or now - f.logged_at >= LOG_EVERY_S:
            more = f" ({f.unlogged} more since the last report)" if f.unlogged else ""
            log.error("rule %s (%s) failed on %s: %s%s", rule.id, f.where, label, reason, more)
            f.logged_at, f.unlogged = now, 0
        else:
            f.unlogged += 1
        return reason

    async def sync_alarms(self, actions: PlatformActions | None, now: float) -> None:
        """Raise the alarms of new problems and faults; clear those that ended. Store errors are logged."""
        try:
            await self._sync(actions, now)
        except AlarmStoreError as exc:
            log.error("rule health alarms not stored, retrying at the next tick: %s", exc)

    async def _sync(self, actions: PlatformActions | None, now: float) -> None:
        if not self._checked_open:
            # alarms left open by an earlier run whose problem was fixed while the platform was down
            for a in await self.alarms.store.list(active_only=True, kind=KIND_INVALID):
                if a.rule_id == SOURCE:
                    self._alarmed_files.add(a.subject.removeprefix("rule-file:"))
            self._checked_open = True
        by_file: dict[str, list[Diagnostic]] = {}
        for d in self.problems:
            by_file.setdefault(d.file, []).append(d)
        for file, diags in by_file.items():
            if file in self._alarmed_files:
                continue
            kept = [rid for rid in self.stale if rid]
            still = f"; still running the last valid version of {', '.join(kept)}" if kept else ""
            text = "; ".join(d.format() for d in diags[:3]) + (f" (+{len(diags) - 3} more)" if len(diags) > 3 else "")
            await self.alarms.raise_alarm(
                actions, rule_id=SOURCE, subject=file_subject(file), kind=KIND_INVALID, severity="high",
                message=f"invalid rule file: {text}{still}", now=now,
                data={"file": file, "lines": [d.line for d in diags], "problems": [d.format() for d in diags]},
            )  # fmt: skip
            self._alarmed_files.add(file)
        for file in sorted(self._alarmed_files - set(by_file)):
            await self.alarms.clear_for(
                actions, SOURCE, file_subject(file), by="rules", now=now, reason="the rule file is valid again"
            )
            self._alarmed_files.discard(file)
        for rid in sorted(self._cleared_faults):
            if rid in self._alarmed_faults:
                await self.alarms.clear_for(
                    actions, SOURCE, fault_subject(rid), by="rules", now=now, reason="the rule was edited"
                )
                self._alarmed_faults.discard(rid)
        self._cleared_faults.clear()
        for rid, f in self.faults.items():
            if rid in self._alarmed_faults:
                continue
            await self.alarms.raise_alarm(
                actions, rule_id=SOURCE, subject=fault_subject(rid), kind=KIND_FAULT, severity="high",
                message=f"rule {rid} ({f.where}) failed on {f.last_input}: {f.last}", now=now,
                data={"rule": rid, "where": f.where, "error": f.last},
            )  # fmt: skip
            self._alarmed_faults.add(rid)
