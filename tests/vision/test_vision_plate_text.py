"""Plate text normalisation and tolerant matching (pure logic)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vision.plate_text import (
    PROVINCES,
    PlateFormatError,
    is_valid_plate,
    match_plate,
    match_read_plate,
    normalize_plate,
    plate_color,
    plate_tail,
)

LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I / O on plates
ALNUM = LETTERS + "0123456789"

provinces = st.sampled_from(PROVINCES)
blue_plates = st.builds(
    lambda p, c, t: p + c + t, provinces, st.sampled_from(LETTERS), st.text(ALNUM, min_size=5, max_size=5)
)
green_plates = st.builds(
    lambda p, c, t: p + c + t, provinces, st.sampled_from(LETTERS), st.text(ALNUM, min_size=6, max_size=6)
)
plates = st.one_of(blue_plates, green_plates)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("赣G·12345", "赣G12345"),
        ("赣g 12345", "赣G12345"),
        ("粤B-D12345", "粤BD12345"),
        ("京A.0O1I2", "京A00112"),
        ("沪Ａ１２３４５", "沪A12345"),  # full-width OCR output
    ],
)
def test_normalize_examples(raw: str, expected: str) -> None:
    assert normalize_plate(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("赣G1234", "7 or 8"),
        ("赣G1234567", "7 or 8"),
        ("XG12345", "province"),
        ("赣912345", "letter"),
        ("赣G12#45", "digits or letters"),
        ("", "7 or 8"),
    ],
)
def test_invalid_plates_say_why(raw: str, reason_part: str) -> None:
    with pytest.raises(PlateFormatError) as info:
        normalize_plate(raw)
    assert reason_part in info.value.reason
    assert info.value.text == raw
    assert not is_valid_plate(raw)


def test_colour_by_length() -> None:
    assert plate_color("赣G·12345") == "blue"
    assert plate_color("粤B·D12345") == "green"
    assert plate_tail("赣G·12345") == "G12345"


@given(plates, st.lists(st.sampled_from(["·", " ", "-", "."]), max_size=3))
def test_normalize_is_idempotent_and_strips_separators(plate: str, seps: list[str]) -> None:
    decorated = plate[:2] + "".join(seps) + plate[2:].lower()
    n = normalize_plate(decorated)
    assert n == plate
    assert normalize_plate(n) == n
    assert is_valid_plate(decorated)
    assert plate_color(n) == ("blue" if len(plate) == 7 else "green")


@given(plates, st.sampled_from(PROVINCES + "贛粵京滬X8"))
def test_wrong_province_still_matches_own_car_only(plate: str, wrong: str) -> None:
    registered = {plate, "京Q99999", "粤BD88888"}
    read = wrong + plate[1:]
    assert match_plate(read, registered) == plate


@given(plates)
def test_exact_match_wins_over_tail_ambiguity(plate: str) -> None:
    other_province = next(p for p in PROVINCES if p != plate[0])
    twin = other_province + plate[1:]
    assert match_plate(plate, [plate, twin]) == plate
    assert match_plate(twin, [plate, twin]) == twin


@given(plates)
def test_ambiguous_tail_matches_nobody(plate: str) -> None:
    a, b = (p + plate[1:] for p in [c for c in PROVINCES if c != plate[0]][:2])
    # The reading's province is neither a nor b: two registered cars share the tail → refuse.
    assert match_plate(plate, [a, b]) is None


@given(plates, plates)
def test_never_matches_a_car_with_a_different_tail(read: str, registered: str) -> None:
    if read[1:] != registered[1:]:
        assert match_plate(read, [registered]) is None


def test_lost_province_and_ocr_confusions() -> None:
    registered = ["赣G12345", "粤BD10101"]
    assert match_plate("G12345", registered) == "赣G12345"
    assert match_plate("?BDIOIOI", registered) == "粤BD10101"
    assert match_plate("赣G12346", registered) is None
    assert match_plate("", registered) is None
    assert match_plate("赣G12345", ["not a plate", "赣G12345"]) == "赣G12345"


@given(plates, st.integers(0, 7), st.sampled_from(PROVINCES + ALNUM), st.floats(0.9, 1.0))
def test_a_plate_differing_in_a_surely_read_character_never_matches(
    plate: str, pos: int, char: str, sure: float
) -> None:
    pos %= len(plate)
    read = plate[:pos] + char + plate[pos + 1 :]
    confs = [0.2] * len(read)
    confs[pos] = sure
    found = match_read_plate(read, [plate], confs, 0.5)
    assert found is None or (read == plate and not found.tolerant)


@given(plates, st.sampled_from(PROVINCES), st.floats(0.0, 0.89))
def test_an_unsure_province_is_tolerated_once_and_flagged(plate: str, province: str, unsure: float) -> None:
    read = province + plate[1:]
    found = match_read_plate(read, [plate], [unsure] + [0.99] * (len(read) - 1))
    assert found is not None and found.plate == plate and found.tolerant == (read != plate)
    # Two registered cars that the reading fits equally: neither is let in.
    other = ("京" if plate[0] != "京" else "沪") + plate[1:]
    if read not in (plate, other):
        assert match_read_plate(read, [plate, other], [unsure] + [0.99] * (len(read) - 1)) is None


def test_lost_province_is_tolerated_and_two_unsure_characters_are_not() -> None:
    assert match_read_plate("G12345", ["赣G12345"], confidence=0.99) is not None
    assert match_read_plate("粤G12346", ["赣G12345"], [0.3] * 7) is None
