"""The disk spool: order, acknowledgement, the size cap and crash recovery."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry.dwell import DwellTracker
from telemetry.spool import Spool


def _batch(start: int, n: int) -> list[str]:
    return [f"m v={i:06d}i {i:09d}" for i in range(start, start + n)]


def test_replays_in_order_across_restart_and_deletes_only_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(_batch(0, 3))
    spool.append(_batch(3, 3))
    spool.append(_batch(6, 3))
    first = spool.peek(6)
    assert Spool.read(first) == _batch(0, 6)
    spool.ack(first)
    (tmp_path / "00000000000000000099-5.tmp").write_text("half written")  # crash mid-append
    reopened = Spool(tmp_path, 1 << 20)
    assert reopened.lines == 3 and reopened.segments == 1
    assert Spool.read(reopened.peek(100)) == _batch(6, 3)
    reopened.append(_batch(9, 1))
    assert Spool.read(reopened.peek(100)) == _batch(6, 4)
    assert not list(tmp_path.glob("*.tmp"))


def test_cap_drops_oldest_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one = len(("\n".join(_batch(0, 10)) + "\n").encode())
    spool = Spool(tmp_path, one * 3)
    with caplog.at_level(logging.ERROR):
        for k in range(5):
            spool.append(_batch(k * 10, 10))
    assert spool.dropped_lines == 20 and spool.dropped_segments == 2
    assert spool.bytes <= one * 3
    assert Spool.read(spool.peek(1000)) == _batch(20, 30)
    assert "DROPPED 10 points" in caplog.text


def test_ack_out_of_order_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    spool.append(_batch(0, 1))
    spool.append(_batch(1, 1))
    second = spool.peek(2)[1:]
    with pytest.raises(ValueError, match="out of order"):
        spool.ack(second)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["append", "drain", "reopen"]), st.integers(1, 30)), max_size=25))
def test_spool_behaves_like_a_fifo(tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]) -> None:
    directory = tmp_path_factory.mktemp("spool")
    spool = Spool(directory, 1 << 22)
    model: list[str] = []
    sent: list[str] = []
    counter = 0
    for op, n in ops:
        if op == "append":
            batch = _batch(counter, n)
            counter += n
            spool.append(batch)
            model.extend(batch)
        elif op == "drain" and spool:
            segments = spool.peek(n)
            lines = Spool.read(segments)
            spool.ack(segments)
            sent.extend(lines)
        elif op == "reopen":
            spool = Spool(directory, 1 << 22)
    sent.extend(Spool.read(spool.peek(10**9)))
    assert sent == model


@given(st.lists(st.tuples(st.sampled_from(["A1", "B2", "C3", ""]), st.sampled_from(["in", "out"]),
                          st.floats(0, 1e6)), max_size=40))  # fmt: skip
def test_dwell_is_non_negative_and_memory_bounded(captures: list[tuple[str, str, float]]) -> None:
    tracker = DwellTracker(max_plates=2)
    for plate, direction, ts in captures:
        dwell = tracker.observe(plate, direction, ts)
        assert dwell is None or dwell >= 0
        assert dwell is None or direction == "out"
        assert len(tracker) <= 2


def test_dwell_pairs_exit_with_entry() -> None:
    tracker = DwellTracker()
    assert tracker.observe("沪a12345", "in", 100.0) is None
    assert tracker.observe("沪A12345 ", "out", 460.0) == 360.0
    assert tracker.observe("沪A12345", "out", 500.0) is None
