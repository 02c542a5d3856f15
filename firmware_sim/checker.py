"""Decide which scenario expectations the observed MQTT traffic met (pure; times passed in)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from firmware_sim.scenarios import Expect, Scenario

Status = Literal["met", "missing", "pending", "skipped", "violated"]
_SUBJECT_KEYS = ("subject", "device_id", "device", "person", "person_id", "tag", "tag_id")


@dataclass(frozen=True, slots=True)
class Seen:
    """A message the operator watcher received (``t`` real monotonic seconds)."""

    t: float
    topic: str
    payload: bytes
    retained: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one expectation fared."""

    index: int
    expect: Expect
    status: Status
    detail: str = ""

    def line(self) -> str:
        """A one-line human summary."""
        mark = {"met": "ok", "missing": "MISSING", "pending": "...", "skipped": "SKIPPED", "violated": "UNEXPECTED"}[
            self.status
        ]
        return f"[{mark}] {self.expect.description}" + (f" — {self.detail}" if self.detail else "")


def _json(payload: bytes) -> Any:
    try:
        return json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _contains(data: Any, match: dict[str, Any]) -> bool:
    return isinstance(data, dict) and all(data.get(k) == v for k, v in match.items())


def matches(e: Expect, site: str, m: Seen) -> bool:
    """Whether message ``m`` is the kind of reaction ``e`` waits for."""
    dev = f"anfang/{site}/{e.device}/"
    if e.kind == "alarm":
        if not m.topic.startswith(f"anfang/{site}/alarms/"):
            return False
        doc = _json(m.payload)
        if not isinstance(doc, dict) or doc.get("state") == "cleared" or doc.get("active") is False:
            return False  # a clearing is not the alarm being raised
        if e.name is not None and e.name not in (doc.get("kind"), doc.get("type")):
            return False
        return not e.subjects or any(doc.get(k) in e.subjects for k in _SUBJECT_KEYS)
    if e.kind == "command":
        if m.topic != f"{dev}cmd/{e.name}":
            return False
        doc = _json(m.payload) if e.match else None
        return not e.match or (isinstance(doc, dict) and _contains(doc.get("args"), e.match))
    if e.kind == "status":
        return m.topic == f"{dev}status" and m.payload.decode("utf-8", "replace") == e.value
    if e.kind == "error":
        doc = _json(m.payload)
        return m.topic == f"{dev}errors" and isinstance(doc, dict) and doc.get("code") == e.code
    if e.kind == "event":
        if m.topic != f"{dev}events/{e.name}":
            return False
        doc = _json(m.payload)
        return isinstance(doc, dict) and _contains(doc.get("data"), e.match)
    if e.kind == "absent":
        return m.topic == f"{dev}{e.topic}" and (e.value or "").encode() in m.payload
    return False


def platform_skip_reason(scenario: Scenario, features: frozenset[str] | None) -> str | None:
    """Why platform-level expectations cannot be checked, or None when they can."""
    if features is None:
        return "no platform answered on _platform/features"
    missing = [f for f in scenario.requires if f not in features]
    if missing:
        return f"platform lacks feature(s) {', '.join(missing)} (has: {', '.join(sorted(features)) or 'none'})"
    return None


def evaluate(
    scenario: Scenario,
    site: str,
    seen: list[Seen],
    *,
    t_start: float,
    t_steps_done: float | None,
    now: float,
    features: frozenset[str] | None,
    patience: float = 1.0,
) -> list[Outcome]:
    """Judge every expectation given the traffic so far.

    ``t_start`` is when playing began (earlier and retained messages are ignored); deadlines run
    ``within * patience`` seconds from ``t_steps_done`` (None while steps are still playing).
    """
    live = [m for m in seen if not m.retained and m.t >= t_start]
    skip = platform_skip_reason(scenario, features)
    first_t: dict[int, float] = {}
    outcomes: list[Outcome] = []
    for i, e in enumerate(scenario.expects):
        if e.level == "platform" and skip is not None:
            outcomes.append(Outcome(i, e, "skipped", skip))
            continue
        hits = [m for m in live if matches(e, site, m)]
        if e.after is not None:
            hits = [] if e.after not in first_t else [m for m in hits if m.t >= first_t[e.after]]
        if hits:
            first_t[i] = hits[0].t
        overdue = t_steps_done is not None and now >= t_steps_done + e.within * patience
        if e.kind == "absent":
            outcomes.append(
                Outcome(i, e, "violated", f"seen on {hits[0].topic}")
                if hits
                else Outcome(i, e, "met" if overdue else "pending")
            )
            continue
        if e.count is None:
            if hits:
                outcomes.append(Outcome(i, e, "met"))
            else:
                outcomes.append(
                    Outcome(
                        i,
                        e,
                        "missing" if overdue else "pending",
                        f"nothing within {e.within * patience:g} s" if overdue else "",
                    )
                )
            continue
        if len(hits) > e.count:
            outcomes.append(Outcome(i, e, "violated", f"seen {len(hits)} times, expected {e.count}"))
        elif not overdue:
            outcomes.append(Outcome(i, e, "pending"))
        elif len(hits) == e.count:
            outcomes.append(Outcome(i, e, "met"))
        else:
            outcomes.append(Outcome(i, e, "missing", f"seen {len(hits)} times, expected {e.count}"))
    return outcomes


def passed(outcomes: list[Outcome]) -> bool:
    """True when nothing is missing, violated or still pending."""
    return all(o.status in ("met", "skipped") for o in outcomes)
