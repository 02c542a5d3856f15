"""Safe reload (pure): an invalid edit keeps the last valid version of the rules it touches.

A rule file with a problem (a YAML error, a rule that fails validation, a duplicate id) does not
remove the rules it held at the last valid load: each of them that does not load now keeps running
at its last valid version until the file is valid again. A file that is deleted, or a rule removed
from a valid file, is a removal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.loader import Diagnostic, LoadResult, Rule


@dataclass
class ReloadReport:
    """What a reload changed; ``stale`` are rules kept at their last valid version."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    problems: list[Diagnostic] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the log."""
        parts = [
            f"{name} {', '.join(ids)}"
            for name, ids in (
                ("added", self.added),
                ("changed", self.changed),
                ("removed", self.removed),
                ("kept at the last valid version", self.stale),
            )
            if ids
        ]
        return "; ".join(parts) or "no rule changed"


def merge_reload(current: dict[str, Rule], loaded: LoadResult) -> tuple[list[Rule], list[str]]:
    """The rule set to run after a reload, and the ids kept at their last valid version.

    ``current`` is the running set (id → rule); ``loaded`` the fresh load with its diagnostics.
    """
    bad_files = {d.file for d in loaded.diagnostics}
    valid = {r.id: r for r in loaded.rules}
    rules = list(loaded.rules)
    stale: list[str] = []
    for rid, old in current.items():
        if rid not in valid and old.file in bad_files:
            rules.append(old)
            stale.append(rid)
    return rules, stale


def diff(current: dict[str, Rule], new: list[Rule]) -> ReloadReport:
    """Which rule ids were added, removed, changed (definition hash) or kept."""
    report = ReloadReport()
    by_id = {r.id: r for r in new}
    for rid, old in current.items():
        if rid not in by_id:
            report.removed.append(rid)
        elif by_id[rid].hash != old.hash:
            report.changed.append(rid)
        else:
            report.kept.append(rid)
    report.added = [rid for rid in by_id if rid not in current]
    return report
