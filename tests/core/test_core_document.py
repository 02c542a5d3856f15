"""Twin documents: merge, delta, versions, concurrency, limits, stale reports (pure, with hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twins.document import (
    Limits,
    Stamps,
    TwinDocument,
    apply_desired,
    apply_reported,
    compute_delta,
    expire_desired,
    inverse_patch,
    merge,
)
from twins.errors import BadRequest, StaleReport, TooLarge, VersionConflict

keys = st.sampled_from(["lock", "door", "hold", "cams", "a", "b", "c"])
scalars = st.one_of(st.integers(-5, 5), st.booleans(), st.sampled_from(["up", "down", "x"]))
values: st.SearchStrategy[Any] = st.recursive(
    scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=8
)
states = st.dictionaries(keys, values, max_size=5)
patches: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    keys, st.one_of(st.none(), values, st.dictionaries(keys, st.one_of(st.none(), values), max_size=3)), max_size=5
)


def _doc(**kw: Any) -> TwinDocument:
    return TwinDocument(device_id="door-1", kind="door_lock", site="s", **kw)


def _strip_empty(d: Any) -> Any:
    """Deleting the last child leaves an empty object; compare states ignoring those."""
    if isinstance(d, dict):
        return {k: _strip_empty(v) for k, v in d.items() if not (isinstance(v, dict) and not _strip_empty(v))}
    return d


@given(states, patches)
def test_patch_then_inverse_restores_state(state: dict[str, Any], patch: dict[str, Any]) -> None:
    state = merge({}, state)  # a stored state never holds nulls
    assert _strip_empty(merge(merge(state, patch), inverse_patch(state, patch))) == _strip_empty(state)


@given(states, patches)
def test_applying_a_patch_twice_equals_once(state: dict[str, Any], patch: dict[str, Any]) -> None:
    once = merge(state, patch)
    assert merge(once, patch) == once


@given(states, states)
def test_delta_is_empty_exactly_when_reported_matches_desired(
    desired: dict[str, Any], reported: dict[str, Any]
) -> None:
    desired = merge({}, desired)
    reported = merge({}, reported)

    def matches(want: dict[str, Any], have: dict[str, Any]) -> bool:
        for key, value in want.items():
            if isinstance(value, dict) and isinstance(have.get(key), dict):
                if not matches(value, have[key]):
                    return False
            elif have.get(key) != value:
                return False
        return True

    assert (compute_delta(desired, reported) == {}) == matches(desired, reported)
    assert compute_delta(desired, merge(reported, desired)) == {} or any(
        isinstance(v, dict) and not v for v in desired.values()
    )


@given(st.lists(st.tuples(st.booleans(), patches), max_size=15))
def test_versions_only_grow_by_one_per_accepted_change(steps: list[tuple[bool, dict[str, Any]]]) -> None:
    doc = _doc()
    seq = 0
    for is_report, patch in steps:
        before = doc.version
        if is_report:
            seq += 1
            applied = apply_reported(doc, patch, now=float(seq), seq=seq)
        else:
            applied = apply_desired(doc, patch, now=float(seq))
        doc = applied.document
        assert doc.version == before + (1 if applied.is_change else 0)


@given(st.lists(st.tuples(st.booleans(), patches), max_size=15))
def test_applying_changes_never_alters_an_earlier_document(steps: list[tuple[bool, dict[str, Any]]]) -> None:
    # documents share their dicts with earlier versions (and new ones share empty defaults): a change
    # made in place would alter every twin that has not reported yet
    history = [(doc := _doc(), repr(doc))]
    for seq, (is_report, patch) in enumerate(steps, start=1):
        applied = (
            apply_reported(doc, patch, now=float(seq), seq=seq)
            if is_report
            else apply_desired(doc, patch, now=float(seq))
        )
        doc = applied.document
        history.append((doc, repr(doc)))
    assert all(repr(d) == before for d, before in history)
    assert _doc() == _doc(desired={}, reported={}, metadata=Stamps({}, {}))


def test_null_deletes_and_nested_objects_merge() -> None:
    doc = apply_reported(
        _doc(), {"cameras": {"c1": {"online": True}, "c2": {"online": True}}, "lock": "locked"}, now=1, seq=1
    ).document
    doc = apply_reported(doc, {"cameras": {"c2": None, "c3": {"online": False}}, "lock": None}, now=2, seq=2).document
    assert doc.reported == {"cameras": {"c1": {"online": True}, "c3": {"online": False}}}
    assert doc.metadata.reported["cameras.c1.online"] == 1
    assert doc.metadata.reported["cameras.c3.online"] == 2
    assert "lock" not in doc.reported


def test_update_naming_another_version_is_409() -> None:
    doc = apply_desired(_doc(), {"lock": "unlocked"}, now=1).document
    with pytest.raises(VersionConflict) as err:
        apply_desired(doc, {"lock": "locked"}, now=2, expected_version=0)
    assert err.value.code == 409
    assert apply_desired(doc, {"lock": "locked"}, now=2, expected_version=1).document.version == 2


def test_older_report_does_not_overwrite_newer_state() -> None:
    doc = apply_reported(_doc(), {"lock": "unlocked"}, now=10, seq=5).document
    with pytest.raises(StaleReport):
        apply_reported(doc, {"lock": "locked"}, now=11, seq=4)
    with pytest.raises(StaleReport):
        apply_reported(doc, {"lock": "locked"}, now=11, seq=5)
    # by timestamp: a field stamped newer is kept, an untouched field is filled in
    doc = apply_reported(_doc(), {"lock": "unlocked"}, now=110, ts=100.0).document
    applied = apply_reported(doc, {"lock": "locked", "door": "closed"}, now=111, ts=50.0)
    assert applied.document.reported == {"lock": "unlocked", "door": "closed"}


def test_limits_on_size_and_depth() -> None:
    with pytest.raises(TooLarge) as big:
        apply_reported(_doc(), {"x": "y" * 2000}, now=1, limits=Limits(max_document_bytes=1000))
    assert big.value.code == 413 and "limit" in big.value.message
    deep: dict[str, Any] = {"a": 1}
    for _ in range(10):
        deep = {"n": deep}
    with pytest.raises(BadRequest) as nested:
        apply_reported(_doc(), deep, now=1)
    assert nested.value.code == 400 and "deeper" in nested.value.message
    with pytest.raises(BadRequest):
        apply_reported(_doc(), {"a.b": 1}, now=1)


def test_document_round_trips_through_json() -> None:
    doc = apply_reported(_doc(), {"lock": "locked"}, now=1, seq=3).document
    assert TwinDocument.from_json(doc.to_json()) == doc


def test_nested_report_older_than_a_whole_value_report_loses() -> None:
    doc = apply_reported(_doc(), {"pos": {"x": 1}}, now=1000, ts=100).document
    doc = apply_reported(doc, {"pos": 5}, now=1000, ts=200).document
    doc = apply_reported(doc, {"pos": {"x": 2}}, now=1000, ts=150).document
    assert doc.reported == {"pos": 5}
    # and a whole value older than a nested write keeps the newer part below it
    doc = apply_reported(_doc(), {"pos": {"x": 1, "y": 2}}, now=1000, ts=100).document
    doc = apply_reported(doc, {"pos": {"x": 3}}, now=1000, ts=200).document
    doc = apply_reported(doc, {"pos": 5}, now=1000, ts=150).document
    assert doc.reported == {"pos": {"x": 3}}


def test_a_report_stamped_in_the_future_is_clamped_and_does_not_freeze_the_twin() -> None:
    limits = Limits(max_clock_skew_s=60)
    applied = apply_reported(_doc(), {"lock": "locked"}, now=1000, seq=1, ts=1000 + 3600, limits=limits)
    assert applied.clamped and applied.document.metadata.reported["lock"] == 1000
    later = apply_reported(applied.document, {"lock": "unlocked"}, now=1010, seq=2, ts=1010, limits=limits)
    assert later.document.reported == {"lock": "unlocked"} and not later.clamped
    # within the allowed skew a device's own clock is kept
    ahead = apply_reported(_doc(), {"lock": "locked"}, now=1000, ts=1030, limits=limits)
    assert not ahead.clamped and ahead.document.metadata.reported["lock"] == 1030
    # a stamp stored before clamping existed does not freeze the twin either
    frozen = _doc(reported={"lock": "locked"}, metadata=Stamps({}, {"lock": 1000 + 3600}))
    assert apply_reported(frozen, {"lock": "unlocked"}, now=1010, ts=1010, limits=limits).document.reported == {
        "lock": "unlocked"
    }


# histories of timestamped reports: keys of two levels, scalars, deletions and nested objects
# (empty objects are left out: ``{}`` merges into an object without changing it, so it is not a write
# of a path and "newest write per path" says nothing about it; docs/protocol.md)
_tkeys = st.sampled_from(["p", "q", "r"])
_tvalues: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.integers(0, 3)),
    lambda inner: st.dictionaries(_tkeys, inner, min_size=1, max_size=2),
    max_leaves=6,
)
_treports = st.dictionaries(_tkeys, _tvalues, min_size=1, max_size=3)


@given(st.lists(_treports, min_size=1, max_size=7), st.randoms(use_true_random=False))
def test_any_arrival_order_gives_the_newest_write_per_path(reports: list[dict[str, Any]], rnd: Any) -> None:
    stamped = [(float(100 + i), report) for i, report in enumerate(reports)]
    expected: dict[str, Any] = {}
    for _, report in stamped:
        expected = merge(expected, report)
    rnd.shuffle(stamped)
    doc = _doc()
    for ts, report in stamped:
        doc = apply_reported(doc, report, now=1000.0, ts=ts).document
    assert doc.reported == expected


def test_momentary_desired_fields_expire_and_lasting_writes_clear_the_ttl() -> None:
    doc = apply_desired(_doc(), {"lock": "locked", "hold_seconds": 5}, now=100).document
    doc = apply_desired(doc, {"lock": "unlocked"}, now=200, ttl=5).document
    assert doc.desired["lock"] == "unlocked" and doc.next_expiry == 205
    assert TwinDocument.from_json(doc.to_json()) == doc
    assert expire_desired(doc, now=204.9).document is doc
    expired = expire_desired(doc, now=205)
    assert expired.document.desired == {"hold_seconds": 5} and expired.changed == {"lock": None}
    assert expired.document.next_expiry is None and expired.document.version == doc.version + 1
    # written again without a ttl, the field lasts
    lasting = apply_desired(doc, {"lock": "unlocked"}, now=201).document
    assert lasting.next_expiry is None and expire_desired(lasting, now=10_000).document is lasting
