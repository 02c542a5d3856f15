"""Twin documents: desired and reported state, delta, metadata, versions. Pure: no IO, no clock.

A document holds ``desired`` and ``reported`` JSON objects, per-field ``metadata`` timestamps
(flat dotted paths), a ``version`` that grows by one on every accepted change, and the last
applied report ``seq`` so a redelivered or reordered report never overwrites newer state.

Reports that carry a device ``ts`` are merged by time, per path: whatever order they arrive in,
the reported state is the one the reports give applied in ``ts`` order (a whole-value write
replaces what older writes put below it, and loses to newer writes below it). A ``ts`` more than
``Limits.max_clock_skew_s`` ahead of the platform clock is clamped to the platform clock, so a
device clock that jumps ahead cannot freeze its twin.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from twins import jsoncodec
from twins.errors import BadRequest, StaleReport, TooLarge, VersionConflict

JSON = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits of one twin document."""

    max_document_bytes: int = 128 * 1024
    max_depth: int = 8
    max_clock_skew_s: float = 60.0  # a report ``ts`` further ahead of the platform clock is clamped to it


class Stamps(NamedTuple):
    """Per-field timestamps (flat dotted paths) of the desired and the reported state.

    A tuple, not a dict of two dicts: a cached twin holds one, and a dict costs three times as much.
    """

    desired: dict[str, float]
    reported: dict[str, float]
    expires: dict[str, float] = {}  # noqa: RUF012 - shared, never changed in place; desired path -> expiry time

    def to_json(self) -> dict[str, dict[str, float]]:
        if self.expires:
            return {"desired": self.desired, "reported": self.reported, "expires": self.expires}
        return {"desired": self.desired, "reported": self.reported}


_NO_STAMPS = Stamps({}, {})
_EMPTY: JSON = {}  # shared by every document with nothing desired or reported; never changed in place


def _intern(value: str) -> str:
    # kinds, sites, statuses and device ids repeat across twins, device records and topics: one copy
    return sys.intern(value) if type(value) is str else value


def _owned(value: Any) -> JSON:
    """A decoded object as the document's own (a copy unless it is a fresh dict); empty ones shared."""
    return (value if type(value) is dict else dict(value)) if value else _EMPTY


def _compact_stamps(stamps: Mapping[str, Any] | None) -> dict[str, float]:
    """Stored stamps with equal times sharing one float (a report stamps all its fields alike)."""
    if not stamps:
        return {}
    seen: dict[float, float] = {}
    return {path: seen.setdefault(float(ts), float(ts)) for path, ts in stamps.items()}


class TwinDocument(NamedTuple):
    """One device's twin. Immutable: every change returns a new document.

    A NamedTuple rather than a frozen dataclass: a new document is built for every accepted report,
    and a frozen dataclass costs four times as much to build. The empty defaults are shared by
    every new document, which is safe because nothing changes a document's dicts in place (the
    functions below always build new ones).
    """

    device_id: str
    kind: str
    site: str
    desired: JSON = {}  # noqa: RUF012 - shared, never changed in place (see above)
    reported: JSON = {}  # noqa: RUF012
    metadata: Stamps = _NO_STAMPS
    version: int = 0
    last_seq: int | None = None
    status: str = "unknown"
    status_ts: float | None = None

    @property
    def next_expiry(self) -> float | None:
        """When the first momentary desired field expires (``None``: none has a time-to-live)."""
        return min(self.metadata.expires.values()) if self.metadata.expires else None

    @property
    def delta(self) -> JSON:
        return compute_delta(self.desired, self.reported)

    def to_json(self) -> JSON:
        """The document as sent on ``twin/document`` and stored."""
        return {
            "device_id": self.device_id,
            "kind": self.kind,
            "site": self.site,
            "version": self.version,
            "desired": self.desired,
            "reported": self.reported,
            "delta": self.delta,
            "metadata": self.metadata.to_json(),
            "last_seq": self.last_seq,
            "status": self.status,
            "status_ts": self.status_ts,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TwinDocument:
        meta = data.get("metadata") or {}
        return cls(
            device_id=_intern(data["device_id"]),
            kind=_intern(data["kind"]),
            site=_intern(data["site"]),
            desired=_owned(data.get("desired")),
            reported=_owned(data.get("reported")),
            metadata=Stamps(
                _compact_stamps(meta.get("desired")),
                _compact_stamps(meta.get("reported")),
                _compact_stamps(meta.get("expires")),
            ),
            version=int(data.get("version", 0)),
            last_seq=data.get("last_seq"),
            status=_intern(data.get("status", "unknown")),
            status_ts=data.get("status_ts"),
        )


class Applied(NamedTuple):
    """Result of applying a patch: the new document and the part of the patch that took effect.
    ``clamped``: the report's ``ts`` was too far ahead of the platform clock and was replaced by it."""

    document: TwinDocument
    changed: JSON
    clamped: bool = False

    @property
    def is_change(self) -> bool:
        return bool(self.changed)


def merge(state: Mapping[str, Any], patch: Mapping[str, Any]) -> JSON:
    """Merge ``patch`` into ``state``: nested objects merge, ``None`` deletes, anything else replaces."""
    out = dict(state)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = value
    return out


def inverse_patch(state: Mapping[str, Any], patch: Mapping[str, Any]) -> JSON:
    """The patch that undoes ``patch`` when applied to ``merge(state, patch)``."""
    inverse: JSON = {}
    for key, value in patch.items():
        if key not in state:
            inverse[key] = None
        elif isinstance(value, dict) and isinstance(state[key], dict):
            inverse[key] = inverse_patch(state[key], value)
        else:
            inverse[key] = state[key]
    return inverse


def compute_delta(desired: Mapping[str, Any], reported: Mapping[str, Any]) -> JSON:
    """Desired fields whose reported value differs (recursively for nested objects)."""
    delta: JSON = {}
    for key, want in desired.items():
        have = reported.get(key)
        if isinstance(want, dict) and isinstance(have, dict):
            sub = compute_delta(want, have)
            if sub:
                delta[key] = sub
        elif want != have:
            delta[key] = want
    return delta


def effective_changes(state: Mapping[str, Any], patch: Mapping[str, Any]) -> JSON:
    """The sub-patch that actually changes ``state`` (drops no-op sets and deletes)."""
    changes: JSON = {}
    for key, value in patch.items():
        if value is None:
            if key in state:
                changes[key] = None
        elif isinstance(value, dict) and isinstance(state.get(key), dict):
            sub = effective_changes(state[key], value)
            if sub:
                changes[key] = sub
        elif isinstance(value, dict) or state.get(key, _MISSING) != value:
            changes[key] = value
    return changes


_MISSING = object()


def leaf_paths(patch: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the leaves a patch touches (a deleted or replaced object counts as a leaf)."""
    for key, value in patch.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaf_paths(value, path + ".")
        else:
            yield path


def check_patch(patch: object, limits: Limits, *, what: str) -> JSON:
    """Validate a patch's shape: an object, string keys without dots, depth within the limit."""
    if not isinstance(patch, dict):
        raise BadRequest(f"{what} must be a JSON object, got {type(patch).__name__}")
    _check_depth(patch, limits.max_depth, what)
    return patch


def _check_depth(value: Mapping[str, Any], depth_left: int, path: str) -> None:
    if depth_left <= 0:
        raise BadRequest(f"{path} nests deeper than the limit")
    for key, sub in value.items():
        if not key or "." in key or key.startswith("$"):
            raise BadRequest(f"{path}: invalid key {key!r} (keys are non-empty and contain no '.')")
        if isinstance(sub, dict):
            _check_depth(sub, depth_left - 1, f"{path}.{key}")


def _check_size(doc: TwinDocument, limits: Limits) -> None:
    size = len(jsoncodec.dumps_bytes([doc.desired, doc.reported]))
    if size > limits.max_document_bytes:
        raise TooLarge(
            f"document would be {size} bytes, over the limit of {limits.max_document_bytes}",
            device_id=doc.device_id,
        )


def _by_time(
    patch: Mapping[str, Any],
    state: Mapping[str, Any],
    meta: Mapping[str, float],
    ts: float,
    horizon: float,
    prefix: str,
    out: list[str],
    objects: list[str],
) -> JSON:
    """The part of a report stamped ``ts`` that applying the reports in ``ts`` order would keep.

    A write under a path stamped newer is dropped; a write replacing an object keeps the object's
    parts stamped newer (their current values, or their deletion). ``out`` collects the leaf paths
    to stamp, ``objects`` those of them where the current value is an object (only there can stamps
    lie below). A stamp beyond ``horizon`` (from before clamping existed) is not trusted.
    """
    kept: JSON = {}
    for key, value in patch.items():
        path = prefix + key
        stamp = meta.get(path)
        if stamp is not None and ts < stamp <= horizon:
            continue
        current = state.get(key)
        if isinstance(value, dict):
            if value:
                below = current if isinstance(current, dict) else {}
                sub = _by_time(value, below, meta, ts, horizon, path + ".", out, objects)
                if sub:
                    kept[key] = sub
            elif not isinstance(current, dict):  # an empty object on an object changes nothing (merge)
                kept[key] = value
                out.append(path)
            continue
        if isinstance(current, dict):
            objects.append(path)
            newer = _newer_below(current, meta, ts, horizon, path + ".")
            if newer:
                value = _replacing(current, merge({}, newer))
        kept[key] = value
        out.append(path)
    return kept


def _newer_below(current: Mapping[str, Any], meta: Mapping[str, float], ts: float, horizon: float, prefix: str) -> JSON:
    """The writes below ``prefix`` stamped after ``ts``, as a patch of their current values."""
    patch: JSON = {}
    for path, stamp in meta.items():
        if ts < stamp <= horizon and path.startswith(prefix):
            parts = path[len(prefix) :].split(".")
            node: Any = current
            for part in parts:
                node = node.get(part, None) if isinstance(node, dict) else None
            target = patch
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = node
    return patch


def _replacing(current: Mapping[str, Any], target: Mapping[str, Any]) -> JSON:
    """The merge patch that turns object ``current`` into object ``target``."""
    patch: JSON = {key: None for key in current if key not in target}
    for key, value in target.items():
        old = current.get(key)
        patch[key] = _replacing(old, value) if isinstance(value, dict) and isinstance(old, dict) else value
    return patch


def _stamp_paths(meta: Mapping[str, float], paths: list[str], objects: list[str], ts: float) -> dict[str, float]:
    """Stamp ``paths`` with ``ts``; stamps below a replaced object that are not newer go with its old value."""
    stamped = dict(meta)
    for path in objects:
        below = path + "."
        for old in [p for p, t in stamped.items() if t <= ts and p.startswith(below)]:
            del stamped[old]
    stamped.update(dict.fromkeys(paths, ts))
    return stamped


def _stamp(meta: Mapping[str, float], patch: JSON, ts: float) -> dict[str, float]:
    stamped = dict(meta)
    for path in leaf_paths(patch):
        # a replaced or deleted object invalidates the stamps of its old children
        for old in [p for p in stamped if p.startswith(path + ".")]:
            del stamped[old]
        stamped[path] = ts
    return stamped


def _evolve(
    doc: TwinDocument,
    desired: JSON,
    reported: JSON,
    metadata: Stamps,
    version: int,
    last_seq: int | None,
) -> TwinDocument:
    return TwinDocument(
        doc.device_id, doc.kind, doc.site, desired, reported, metadata, version, last_seq, doc.status, doc.status_ts
    )


def apply_reported(
    doc: TwinDocument,
    patch: JSON,
    *,
    now: float,
    seq: int | None = None,
    ts: float | None = None,
    limits: Limits = Limits(),
    seq_reset: bool = False,
) -> Applied:
    """Apply a device's partial reported state.

    A report whose ``seq`` is not above the last applied one is stale (409), unless it says
    ``seq_reset`` (the device restarted its counter; docs/protocol.md); with a ``ts``, a
    field whose stored value is newer than the report is left alone.
    """
    check_patch(patch, limits, what="state")
    if seq is not None and not seq_reset and doc.last_seq is not None and seq <= doc.last_seq:
        raise StaleReport(
            f"stale report: seq {seq} <= last applied {doc.last_seq}; a device that restarted its "
            'counter sends "seq_reset": true with its first report',
            device_id=doc.device_id,
        )
    new_seq = doc.last_seq if seq is None else seq
    if ts is None:
        changed = effective_changes(doc.reported, patch)
        if not changed:
            return Applied(_evolve(doc, doc.desired, doc.reported, doc.metadata, doc.version, new_seq), {})
        reported_meta = _stamp(doc.metadata.reported, changed, now)
        return _applied(doc, changed, reported_meta, new_seq, limits, False)
    horizon = now + limits.max_clock_skew_s
    clamped = ts > horizon
    if clamped:
        ts = now
    paths: list[str] = []
    objects: list[str] = []
    kept = _by_time(patch, doc.reported, doc.metadata.reported, ts, horizon, "", paths, objects)
    changed = effective_changes(doc.reported, kept)
    # even a write that changes nothing is stamped: an older write arriving later must lose to it
    reported_meta = _stamp_paths(doc.metadata.reported, paths, objects, ts) if paths else doc.metadata.reported
    if not changed:
        metadata = doc.metadata if not paths else Stamps(doc.metadata.desired, reported_meta, doc.metadata.expires)
        return Applied(_evolve(doc, doc.desired, doc.reported, metadata, doc.version, new_seq), {}, clamped)
    return _applied(doc, changed, reported_meta, new_seq, limits, clamped)


def _applied(
    doc: TwinDocument,
    changed: JSON,
    reported_meta: dict[str, float],
    new_seq: int | None,
    limits: Limits,
    clamped: bool,
) -> Applied:
    metadata = Stamps(doc.metadata.desired, reported_meta, doc.metadata.expires)
    new = _evolve(doc, doc.desired, merge(doc.reported, changed), metadata, doc.version + 1, new_seq)
    _check_size(new, limits)
    return Applied(new, changed, clamped)


def apply_desired(
    doc: TwinDocument,
    patch: JSON,
    *,
    now: float,
    expected_version: int | None = None,
    ttl: float | None = None,
    limits: Limits = Limits(),
) -> Applied:
    """Apply a service's desired-state update with optimistic concurrency.

    With ``ttl`` (seconds) the fields the patch sets are momentary: :func:`expire_desired` deletes
    them once ``now + ttl`` has passed. A later write of a field without ``ttl`` makes it lasting.
    """
    check_patch(patch, limits, what="desired")
    if expected_version is not None and expected_version != doc.version:
        raise VersionConflict(
            f"version conflict: update names version {expected_version}, current is {doc.version}",
            device_id=doc.device_id,
        )
    changed = effective_changes(doc.desired, patch)
    expires = _expiries(doc.metadata.expires, patch, None if ttl is None else now + ttl)
    if not changed and expires == doc.metadata.expires:
        return Applied(doc, {})
    desired_meta = _stamp(doc.metadata.desired, changed, now) if changed else doc.metadata.desired
    metadata = Stamps(desired_meta, doc.metadata.reported, expires)
    new = _evolve(doc, merge(doc.desired, changed), doc.reported, metadata, doc.version + 1, doc.last_seq)
    _check_size(new, limits)
    return Applied(new, changed)


def _expiries(expires: dict[str, float], patch: JSON, at: float | None) -> dict[str, float]:
    """Expiry times after ``patch``: its paths (and all below them) lose theirs; with ``at`` the ones
    it sets get ``at``."""
    paths = list(_leaves(patch, ""))
    if not expires and at is None:
        return expires
    out = {p: t for p, t in expires.items() if not any(p == q or p.startswith(q + ".") for q, _ in paths)}
    if at is not None:
        out.update((path, at) for path, value in paths if value is not None)
    return out if out != expires else expires


def _leaves(patch: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    for key, value in patch.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def expire_desired(doc: TwinDocument, *, now: float) -> Applied:
    """Delete the momentary desired fields whose time-to-live has passed (no change if none has)."""
    due = [path for path, at in doc.metadata.expires.items() if at <= now]
    if not due:
        return Applied(doc, {})
    patch: JSON = {}
    for path in due:
        *parents, last = path.split(".")
        node = patch
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = None
    changed = effective_changes(doc.desired, patch)
    expires = {p: t for p, t in doc.metadata.expires.items() if t > now}
    desired_meta = _stamp(doc.metadata.desired, changed, now) if changed else doc.metadata.desired
    metadata = Stamps(desired_meta, doc.metadata.reported, expires)
    new = _evolve(doc, merge(doc.desired, changed), doc.reported, metadata, doc.version + 1, doc.last_seq)
    return Applied(new, changed)


def apply_status(doc: TwinDocument, status: str, *, now: float) -> TwinDocument:
    """Record the device's connection status (``online``/``offline``) from its status topic."""
    if status == doc.status:
        return doc
    return TwinDocument(
        doc.device_id,
        doc.kind,
        doc.site,
        doc.desired,
        doc.reported,
        doc.metadata,
        doc.version + 1,
        doc.last_seq,
        status,
        now,
    )
