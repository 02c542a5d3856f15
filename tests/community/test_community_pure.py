"""Property and example tests of the pure modules: ID-card numbers, passes, crypto, template encoding."""

from __future__ import annotations

import base64
import datetime as dt

import numpy as np
import pytest
from community_testkit import template
from hypothesis import given
from hypothesis import strategies as st

from community.crypto import CryptoError, FieldCipher
from community.decisions import Capture, decide
from community.edge import decode_template, encode_template
from community.idcard import IdCardError, check_char, is_valid_id_number, mask_id_number, validate_id_number
from community.passes import PassClaims, PassError, parse_pass, sign_pass, verify_pass
from community.snapshot import DeviceInfo, PersonInfo, RegistrySnapshot

KEY = b"k" * 32

bodies = st.builds(
    lambda area, day, seq: f"{area:06d}{day:%Y%m%d}{seq:03d}",
    st.integers(110000, 659999),
    st.dates(dt.date(1900, 1, 1), dt.date(2025, 12, 31)),
    st.integers(0, 999),
)


@given(bodies)
def test_generated_id_numbers_validate(body: str) -> None:
    number = body + check_char(body)
    assert validate_id_number(number.lower()) == number


@given(bodies, st.sampled_from("0123456789X"))
def test_any_wrong_check_character_is_refused(body: str, c: str) -> None:
    if c == check_char(body):
        return
    with pytest.raises(IdCardError) as err:
        validate_id_number(body + c)
    assert err.value.reason == "check_digit_mismatch"


@given(bodies, st.integers(0, 16), st.integers(1, 9))
def test_single_digit_change_is_detected(body: str, pos: int, delta: int) -> None:
    number = body + check_char(body)
    changed = number[:pos] + str((int(number[pos]) + delta) % 10) + number[pos + 1 :]
    # ISO 7064 MOD 11-2 detects every single-digit substitution.
    assert not is_valid_id_number(changed)


def test_known_numbers_and_shapes() -> None:
    assert is_valid_id_number("11010519491231002X")
    assert not is_valid_id_number("110105194912310021")
    assert not is_valid_id_number("11010519491331002X")  # month 13
    assert not is_valid_id_number("1101051949123100")
    assert mask_id_number("11010519491231002X") == "110*************2X"


@given(st.text(max_size=200), st.text(max_size=20))
def test_field_cipher_roundtrip_and_context_binding(plain: str, ctx: str) -> None:
    c = FieldCipher(KEY)
    token = c.encrypt(plain, ctx)
    assert plain == c.decrypt(token, ctx)
    if len(plain) >= 8:
        assert plain not in token
    with pytest.raises(CryptoError):
        c.decrypt(token, ctx + "x")
    assert c.lookup_hash(plain, "phone") == FieldCipher(KEY).lookup_hash(plain, "phone")
    assert c.lookup_hash(plain, "phone") != FieldCipher(b"j" * 32).lookup_hash(plain, "phone")


claims_st = st.builds(
    PassClaims,
    pass_id=st.text("abcdef0123456789", min_size=4, max_size=16),
    site=st.just("s"),
    valid_from=st.integers(0, 10**9),
    valid_until=st.integers(10**9 + 1, 2 * 10**9),
    doors=st.lists(st.sampled_from(["door-a", "gate-b"]), min_size=1, unique=True).map(tuple),
    max_uses=st.integers(1, 100),
    plate=st.one_of(st.none(), st.just("赣G12345")),
)


@given(claims_st)
def test_pass_roundtrip(claims: PassClaims) -> None:
    payload = sign_pass(claims, KEY)
    assert parse_pass(payload) == claims
    assert verify_pass(payload, KEY, now=claims.valid_from, site="s", door=claims.doors[0]) == claims
    with pytest.raises(PassError) as err:
        verify_pass(payload, KEY, now=claims.valid_until, site="s")
    assert err.value.reason == "expired"
    with pytest.raises(PassError) as err:
        verify_pass(payload, b"x" * 32, now=claims.valid_from)
    assert err.value.reason == "bad_signature"


@given(claims_st, st.data())
def test_any_single_character_change_breaks_the_pass(claims: PassClaims, data: st.DataObject) -> None:
    payload = sign_pass(claims, KEY)
    i = data.draw(st.integers(0, len(payload) - 1))
    c = data.draw(st.sampled_from("AQgw.-_0x"))
    altered = payload[:i] + c + payload[i + 1 :]
    if altered == payload:
        return
    with pytest.raises(PassError) as err:
        verify_pass(altered, KEY, now=claims.valid_from)
    assert err.value.reason in {"bad_signature", "malformed"}


def test_template_encoding_is_compact_and_faithful() -> None:
    enc = encode_template(template(1))
    assert len(enc) < 400
    assert float(decode_template(enc) @ decode_template(encode_template(template(1)))) > 0.999


def _snapshot() -> RegistrySnapshot:
    snap = RegistrySnapshot(site="s", pass_key=KEY)
    snap.people["t"] = PersonInfo("t", "tenant", "h1", "b1", valid_from=1000.0, valid_until=2000.0)
    snap.people["o"] = PersonInfo("o", "owner", "h2", "b1")
    snap.people["s"] = PersonInfo("s", "staff", None, None)
    snap.cards.update({"CT": "t", "CO": "o", "CS": "s"})
    for dev, building in (("d1", "b1"), ("d2", "b2")):
        snap.devices[dev] = DeviceInfo(dev, "door_lock", building)
    snap.devices["g"] = DeviceInfo("g", "vehicle_gate")
    return snap


@given(st.floats(0, 3000), st.sampled_from(["d1", "d2", "g"]), st.sampled_from(["CT", "CO", "CS", "CX"]))
def test_decide_card_rules(now: float, device: str, card: str) -> None:
    snap = _snapshot()
    kind = snap.devices[device].kind
    d = decide(Capture(device, kind, "card", credential=card), snap, now)
    in_lease = 1000.0 <= now < 2000.0
    expected = {"CS": True, "CX": False, "CO": device != "d2", "CT": device != "d2" and in_lease}[card]
    assert d.allowed is expected
    assert d.target == device and (d.reason == "granted") is expected
    if card == "CT" and device != "d2" and not in_lease:
        assert d.reason in {"lease_ended", "lease_not_started"}


@given(st.floats(0, 1))
def test_decide_refuses_any_liveness_below_threshold(liveness: float) -> None:
    snap = _snapshot()
    snap.faces.add("o", template(1))
    d = decide(Capture("d1", "door_lock", "face", embedding=np.asarray(template(1)), liveness=liveness), snap, 0.0)
    assert d.allowed is (liveness >= 0.8)


def test_pass_with_absurd_numbers_is_malformed_not_a_crash() -> None:
    body = base64.urlsafe_b64encode(b'{"d":["a"],"f":1e999,"i":"x","s":"s","t":1,"u":1}').rstrip(b"=").decode()
    with pytest.raises(PassError) as err:
        verify_pass(f"AFP1.{body}.AAAA", KEY, now=0)
    assert err.value.reason == "bad_signature" and err.value.pass_id is None
    with pytest.raises(PassError) as err:
        parse_pass(f"AFP1.{body}.AAAA")
    assert err.value.reason == "malformed"
