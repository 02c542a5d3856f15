"""Rule state kept in the registry beside the timers (issue 17 item 3): ``count``/``within`` windows,
distinct counts, sequences in progress, cooldowns, threshold sides and zone membership with its dwell.

The state lives in :class:`~rules.triggers.TriggerState` and the engine's cooldown table while the engine
runs. :class:`StateMirror` mirrors it into the engine's :class:`~rules.timerqueue.TimerQueue` as
``memo`` entries (never due; table ``rule_timers`` through the same :class:`~rules.timers.TimerStore`),
so the once-per-tick flush that makes timers durable makes this state durable too, in the same
transaction, and a restart or a takeover by another worker starts where the last flush left it: a
``count`` window neither forgets the denials before a crash nor a cooldown lets the alarm repeat.
A memo of a rule carries the rule's definition hash, so a changed rule starts afresh, as its timers do.
Only entries that changed since the last mirror are written. Expectations (``expect``) and the other
waiting triggers are timers already and need no memo.

A memo's key is ``memo|<what>|<scope>`` and its value (``context["value"]``) plain JSON, written by
the ``encode_*`` functions here and read back by their ``decode_*`` inverses.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from typing import Any

from rules.catch_up import MARK_KEY, InputMark
from rules.loader import Rule
from rules.model import EventTrigger
from rules.patterns import DistinctWindow, SeqState
from rules.timerqueue import TimerQueue
from rules.timers import Timer
from rules.triggers.state import CountWindow, TriggerState

log = logging.getLogger(__name__)

#: Timer kind (and state) of a mirrored piece of rule state.
MEMO = "memo"

Entry = tuple[str, str, Any]  # rule id, rule hash, value


def encode_count(win: CountWindow) -> list[float]:
    """A ``count`` window: its times, oldest first."""
    return list(win.times)


def decode_count(value: Any, size: int | None) -> CountWindow:
    """Inverse of :func:`encode_count`; ``size`` is the trigger's ``count`` (the window's bound)."""
    return CountWindow(deque(map(float, value), maxlen=size))


def encode_distinct(win: DistinctWindow) -> dict[str, float]:
    """A distinct count: each value seen (as text, as the trigger keeps it) and when it was last seen."""
    return {str(v): float(t) for v, t in win.last.items()}


def decode_distinct(value: Any) -> DistinctWindow:
    """Inverse of :func:`encode_distinct`."""
    return DistinctWindow({str(v): float(t) for v, t in dict(value).items()})


def encode_seq(state: SeqState) -> list[float]:
    """A sequence in progress: the step it waits for, how often that step was seen, since when."""
    return [state.step, state.seen, state.started]


def decode_seq(value: Any) -> SeqState:
    """Inverse of :func:`encode_seq`."""
    step, seen, started = value
    return SeqState(int(step), int(seen), float(started))


def expire(
    state: TriggerState, last_fired: dict[tuple[str, str], float], rules: Mapping[str, Rule], now: float, skew: float
) -> int:
    """Forget the state no input can use any more; returns how many entries went.

    Windows and sequences are in event time, which trails ``now`` by at most ``skew`` (an older event
    counts at ``now``: :class:`~rules.event_time.EventClock`): every input still to come has a time at
    or after ``now - skew``. A count or distinct window forgets the times before its ``within``
    reaching back from there, a sequence whose window ends before it would start afresh anyway, and a
    cooldown that has run out holds nothing. Without this, a key seen once (a plate, a phone) would
    keep its entry, in memory and in ``rule_timers``, for ever.
    """
    before = now - skew
    gone = 0

    def within(rule_id: str, idx: int) -> float | None:
        rule = rules.get(rule_id)
        spec = rule.triggers[idx].spec if rule is not None and idx < len(rule.triggers) else None
        value = getattr(spec, "within", None)
        return float(value) if value else None

    for k, win in list(state.counts.items()):
        if (w := within(k[0], k[1])) is not None:
            while win.times and win.times[0] <= before - w:
                win.times.popleft()
        if not win.times:
            del state.counts[k]
            gone += 1
    for k, dwin in list(state.distinct.items()):
        if (w := within(k[0], k[1])) is not None:
            for v in [v for v, t in dwin.last.items() if t <= before - w]:
                del dwin.last[v]
        if not dwin.last:
            del state.distinct[k]
            gone += 1
    for k, seq in list(state.sequences.items()):
        if (w := within(k[0], k[1])) is not None and before - seq.started > w:
            del state.sequences[k]
            gone += 1
    for fk, ts in list(last_fired.items()):
        rule = rules.get(fk[0])
        if rule is None or not rule.cooldown or now - ts >= rule.cooldown:
            del last_fired[fk]
            gone += 1
    return gone


class StateMirror:
    """Mirrors trigger state and cooldowns into memo timers, and restores them at start."""

    def __init__(self, timers: TimerQueue) -> None:
        self.timers = timers
        self._saved: dict[str, Entry] = {}
        #: How far the engine has processed the stored events, written with the state it produced.
        self.mark = InputMark()

    def restore(self, state: TriggerState, last_fired: dict[tuple[str, str], float], rules: Mapping[str, Rule]) -> int:
        """Load the memo entries the timer queue holds into ``state`` and ``last_fired``; returns how many.

        A memo that cannot be read (written by another version, or of a rule no longer loaded) is dropped.
        """
        n = 0
        for timer in self.timers:
            if timer.kind != MEMO:
                continue
            value: Any = timer.context.get("value")
            try:
                if timer.key == MARK_KEY:
                    self.mark = InputMark.decode(value)
                    self._saved[timer.key] = ("", "", value)
                    n += 1
                    continue
                known = _restore_one(state, last_fired, rules, timer, value)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                log.warning("rule state %s not restored (%s): started afresh", timer.key, exc)
                known = False
            if not known:
                self.timers.drop(timer.key)
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

        if self.mark.at is not None:
            current[MARK_KEY] = ("", "", self.mark.encode())
        for (tag, zone), inside in state.membership.items():
            current[f"memo|zone|{tag}|{zone}"] = ("", "", inside)
        for (tag, zone), since in state.zones.pending.items():
            current[f"memo|dwell|{tag}|{zone}"] = ("", "", since)
        for (rule_id, idx, key), win in state.counts.items():
            if win.times:
                add(f"memo|count|{rule_id}|{idx}|{key}", rule_id, encode_count(win))
        for (rule_id, idx, key), dwin in state.distinct.items():
            if dwin.last:
                add(f"memo|distinct|{rule_id}|{idx}|{key}", rule_id, encode_distinct(dwin))
        for (rule_id, idx, key), seq in state.sequences.items():
            add(f"memo|seq|{rule_id}|{idx}|{key}", rule_id, encode_seq(seq))
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


def _restore_one(
    state: TriggerState, last_fired: dict[tuple[str, str], float], rules: Mapping[str, Rule], timer: Timer, value: Any
) -> bool:
    """Put one memo back; False for a memo of an unknown sort or of a rule not loaded."""
    part = timer.key.split("|")
    what = part[1]
    if what in ("zone", "dwell"):
        tag, zone = "|".join(part[2:-1]), part[-1]
        if what == "zone":
            state.membership[(tag, zone)] = bool(value)
        else:
            state.zones.pending[(tag, zone)] = float(value)
        return True
    if timer.rule_id not in rules:
        return False
    if what == "cool":
        last_fired[(timer.rule_id, "|".join(part[3:]))] = float(value)
        return True
    sk = (timer.rule_id, int(part[3]), "|".join(part[4:]))
    if what == "side":
        state.threshold[sk] = bool(value)
    elif what == "count":
        spec = rules[timer.rule_id].triggers[sk[1]].spec
        state.counts[sk] = decode_count(value, spec.count if isinstance(spec, EventTrigger) else None)
    elif what == "distinct":
        state.distinct[sk] = decode_distinct(value)
    elif what == "seq":
        state.sequences[sk] = decode_seq(value)
    else:
        return False
    return True
