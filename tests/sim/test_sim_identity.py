"""Synthetic identifiers look and validate like real ones."""

from __future__ import annotations

import datetime as dt
import math
import random

from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.identity import (
    face_embedding,
    gb11643_check_digit,
    is_valid_id_number,
    is_valid_plate,
    make_id_number,
    make_mac,
    make_plate,
)


def test_check_digit_matches_the_standard_example() -> None:
    assert gb11643_check_digit("11010519491231002") == "X"
    assert is_valid_id_number("11010519491231002X")
    assert not is_valid_id_number("110105194912310021")


@given(st.integers(0, 2**32), st.dates(dt.date(1920, 1, 1), dt.date(2025, 12, 31)), st.booleans())
def test_generated_id_numbers_are_valid_xunyang_numbers(seed: int, birth: dt.date, male: bool) -> None:
    n = make_id_number(random.Random(seed), birth, male)
    assert len(n) == 18 and n.startswith("360403") and is_valid_id_number(n)
    assert n[6:14] == birth.strftime("%Y%m%d")
    assert int(n[16]) % 2 == (1 if male else 0)


@given(st.integers(0, 2**32), st.booleans())
def test_plates_are_normalised_blue_or_green(seed: int, green: bool) -> None:
    plate = make_plate(random.Random(seed), green)
    assert is_valid_plate(plate)
    assert len(plate) == (8 if green else 7) and plate.startswith("赣G")


@given(st.integers(0, 2**32))
def test_randomised_macs_have_the_local_bit(seed: int) -> None:
    mac = make_mac(random.Random(seed), randomized=True)
    assert int(mac[:2], 16) & 0x02 and not int(mac[:2], 16) & 0x01
    assert not int(make_mac(random.Random(seed))[:2], 16) & 0x03


def test_embeddings_identify_the_same_person() -> None:
    rng = random.Random(1)
    a, b = face_embedding("p0001", 0.05, rng), face_embedding("p0001", 0.05, rng)
    other = face_embedding("p0002")
    assert len(a) == 128 and math.isclose(sum(v * v for v in a), 1.0, rel_tol=1e-4)
    same = sum(x * y for x, y in zip(a, b, strict=True))
    diff = sum(x * y for x, y in zip(a, other, strict=True))
    assert same > 0.9 and abs(diff) < 0.4
