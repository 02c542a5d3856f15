"""Rule state kept in the registry beside the timers: ``count``/``within`` windows, cooldowns, threshold
sides and zone membership (issue 17 item 3).

The state lives in :class:`~rules.triggers.TriggerState` and the engine's cooldown table while the engine
runs. :class:`StateMirror` mirrors it into the engine's :class:`~rules.timerqueue.TimerQueue` as
``memo`` entries (never due; table ``rule_timers`` through the same :class:`~rules.timers.TimerStore`),
so the once-per-tick flush that makes timers durable makes this state durable too, in the same
transaction, and a restart or a takeover by another worker starts where the last flush left it: a
``count`` window neither forgets the denials before a crash nor a cooldown lets the alarm repeat.
A memo of a rule carries the rule's definition hash, so a changed rule starts afresh, as its timers do.
Only entries that changed since the last mirror are written.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rules.loader import Rule
from rules.model import EventTrigger
from rules.timerqueue import TimerQueue
from rules.timers import Timer
from rules.triggers.state import CountWindow, TriggerState

#: Timer kind (and state) of a mirrored piece of rule state.
MEMO = "memo"

Entry = tuple[str, str, Any]  # rule id, rule hash, value


class StateMirror:
    """Mirrors trigger state and cooldowns into memo timers, and restores them at start."""

    def __init__(self, timers: TimerQueue) -> None:
        self.timers = timers
        self._saved: dict[str, Entry] = {}

    def restore(self, state: TriggerState, last_fired: dict[tuple[str, str], float], rules: Mapping[str, Rule]) -> int:
        """Load the memo entries the timer queue holds into ``state`` and ``last_fired``; returns how many."""
        n = 0
        for timer in self.timers:
            if timer.kind != MEMO:
                continue
            value: Any = timer.context.get("value")
            part = timer.key.split("|")
            what = part[1]
            if what == "zone":
                state.membership[(part[2], part[3])] = bool(value)
            elif what == "cool":
                last_fired[(timer.rule_id, "|".join(part[3:]))] = float(value)
            elif what == "side":
                state.threshold[(timer.rule_id, int(part[3]), "|".join(part[4:]))] = bool(value)
            elif what == "count" and (rule := rules.get(timer.rule_id)) is not None:
                idx = int(part[3])
                spec = rule.triggers[idx].spec
                size = spec.count if isinstance(spec, EventTrigger) else None
                window = CountWindow(deque(map(float, value), maxlen=size))
                state.counts[(timer.rule_id, idx, "|".join(part[4:]))] = window
            else:
                continue
            self._saved[timer.key] = (timer.rule_id, timer.rule_hash, value)
            n += 1
        return n

    def save(
        self, state: TriggerState, last_fired: dict[tuple[str, str], float], rules: Mapping[str, Rule], now: float
    ) -> None:
        """Put the entries that changed since the last call into the timer queue; drop those gone."""
        current: dict[str, Entry] = {}

        def add(key: str, rule_id: str, value: Any) -> None:
            rule = rules.get(rule_id)
            current[key] = (rule_id, rule.hash if rule is not None else "", value)

        for (tag, zone), inside in state.membership.items():
            current[f"memo|zone|{tag}|{zone}"] = ("", "", inside)
        for (rule_id, idx, key), win in state.counts.items():
            if win.times:
                add(f"memo|count|{rule_id}|{idx}|{key}", rule_id, list(win.times))
        for (rule_id, idx, dev), side in state.threshold.items():
            add(f"memo|side|{rule_id}|{idx}|{dev}", rule_id, side)
        for (rule_id, dedupe), ts in last_fired.items():
            rule = rules.get(rule_id)
            if rule is not None and rule.cooldown and now - ts < rule.cooldown:
                add(f"memo|cool|{rule_id}|{dedupe}", rule_id, ts)
        for key, entry in current.items():
            if self._saved.get(key) != entry:
                rule_id, rule_hash, value = entry
                self.timers.put(Timer(key, rule_id, rule_hash, MEMO, 0.0, state=MEMO, context={"value": value}))
        for key in [k for k in self._saved if k not in current]:
            self.timers.drop(key)
        self._saved = current
