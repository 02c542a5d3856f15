"""A report's seq cannot lock a device out: it has an upper bound, and a device that restarted its counter
says so once with ``seq_reset`` (pure)."""

from __future__ import annotations

import json

import pytest

from twins.document import TwinDocument, apply_reported
from twins.errors import BadRequest, StaleReport
from twins.messages import MAX_SEQ, parse_report


def _report(**fields: object) -> bytes:
    return json.dumps({"state": {"lock": "locked"}, **fields}).encode()


def test_seq_beyond_the_bound_is_refused() -> None:
    assert parse_report(_report(seq=MAX_SEQ)).seq == MAX_SEQ
    for bad in (MAX_SEQ + 1, 2**64 - 1, -1, True, 1.5):
        with pytest.raises(BadRequest, match="seq must be"):
            parse_report(_report(seq=bad))
    with pytest.raises(BadRequest, match="seq_reset"):
        parse_report(_report(seq_reset=True))  # a reset names the seq it restarts from
    with pytest.raises(BadRequest, match="seq_reset"):
        parse_report(_report(seq=1, seq_reset="yes"))


def test_a_device_at_the_top_of_its_counter_recovers_with_seq_reset() -> None:
    doc = TwinDocument(device_id="door-1", kind="door_lock", site="youzheng")
    doc = apply_reported(doc, {"lock": "locked"}, now=1.0, seq=MAX_SEQ).document
    with pytest.raises(StaleReport, match="seq_reset") as refused:
        apply_reported(doc, {"lock": "unlocked"}, now=2.0, seq=5)
    assert refused.value.code == 409
    report = parse_report(_report(seq=5, seq_reset=True))
    doc = apply_reported(doc, {"lock": "unlocked"}, now=2.0, seq=report.seq, seq_reset=report.seq_reset).document
    assert doc.last_seq == 5 and doc.reported == {"lock": "unlocked"}
    assert apply_reported(doc, {"lock": "locked"}, now=3.0, seq=6).document.last_seq == 6
