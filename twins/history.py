"""A twin's version history: what each committed change changed, when, on which side and by whom. Pure.

Every committed twin change becomes one :class:`HistoryEntry`: the new version, the platform time,
the side (``reported``, ``desired`` or the connection ``status``), who or what made it where the
platform knows (``device``, ``service`` for a ``twin/update`` over MQTT, ``expiry``, ``rule:<id>``,
``access``, ``staff:<person>``, else ``platform``) and the changed fields with their new values (a
merge patch: ``null`` removes a field; ``twins.document.merge`` applies one). The store writes the
entries in the same transaction as the twins; a periodic job bounds them per device
(:mod:`registry.history`).

Credentials never land here: a desired ``allow_list`` (sealed entries: credential MACs and sealed face
templates, docs/protocol.md) is recorded as its version and entry count only (:func:`redact`).

Who acts is carried by a context variable (:func:`acting_as`), so the callers of
``PlatformActions.set_desired`` (the console, rules, access control) name themselves without the
seam's signature changing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple

__all__ = [
    "LOCATION_KINDS",
    "REDACTED_FIELDS",
    "HistoryEntry",
    "acting_as",
    "current_actor",
    "describe",
    "redact",
]

JSON = dict[str, Any]

#: Device kinds whose history is a track of where a person was (a worn tag's positions): reading it is audited.
LOCATION_KINDS = frozenset({"rfid_tag"})

#: Fields whose values are recorded as a summary only (they carry sealed credentials).
REDACTED_FIELDS = frozenset({"allow_list"})

_ACTOR: ContextVar[str] = ContextVar("anfang_twin_actor", default="platform")


class HistoryEntry(NamedTuple):  # one per committed change on the hot path: cheaper than a dataclass
    """One committed twin change."""

    device_id: str
    version: int
    ts: float
    source: str  # reported | desired | status
    actor: str
    changed: JSON


def current_actor() -> str:
    """Who the code running now acts for (``platform`` unless a caller said otherwise)."""
    return _ACTOR.get()


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Twin changes made inside the block are recorded as made by ``actor``."""
    token = _ACTOR.set(actor[:80])
    try:
        yield
    finally:
        _ACTOR.reset(token)


def redact(changed: Mapping[str, Any]) -> JSON:
    """``changed`` without credentials: a redacted field becomes ``{"redacted": true, ...summary}``."""
    if REDACTED_FIELDS.isdisjoint(changed):
        return changed if type(changed) is dict else dict(changed)
    out = dict(changed)
    for key in REDACTED_FIELDS & out.keys():
        out[key] = _summary(out[key])
    return out


def _summary(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return None if value is None else {"redacted": True}
    entries = value.get("entries")
    return {
        "redacted": True,
        "version": value.get("version"),
        "entries": len(entries) if isinstance(entries, list) else None,
    }


def describe(changed: Mapping[str, Any], width: int = 80) -> list[tuple[str, str]]:
    """The changed fields as (field, compact JSON value) pairs for people to read, long values cut."""
    out = []
    for key, value in sorted(changed.items()):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        out.append((key, text if len(text) <= width else text[: width - 1] + "…"))
    return out
