"""Topics, payload parsing, device kind schemas and broker ACLs (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.acl import Identity, Role, covers, may_publish, may_subscribe
from broker.credentials import hash_secret, verify_secret
from twins import messages
from twins.errors import BadRequest, SchemaError, TooLarge
from twins.kinds import KINDS, validate_desired, validate_event, validate_reported
from twins.topics import Channel, parse

DOOR = Identity("door-1", Role.DEVICE, "site")


def test_topics_parse_into_value_objects() -> None:
    assert parse("anfang/site/door-1/twin/reported") == parse("anfang/site/door-1/twin/reported")
    t = parse("anfang/site/door-1/events/door_forced")
    assert t is not None and t.channel is Channel.EVENT and t.name == "door_forced"
    r = parse("anfang/site/door-1/cmd/open/result")
    assert r is not None and r.channel is Channel.CMD_RESULT and r.name == "open"
    for bad in [
        "anfang/site/door-1",
        "other/site/d/twin/reported",
        "anfang/Site/d/twin/reported",
        "anfang/site/alarms/twin/reported",
        "anfang/site/d/events/a/b",
        "anfang/site/d/twin/desired",
    ]:
        assert parse(bad) is None, bad


@given(st.text(max_size=80))
def test_parse_never_raises(topic: str) -> None:
    parse(topic)


def test_device_acl_is_own_topics_only() -> None:
    assert may_publish(DOOR, "anfang/site/door-1/twin/reported")
    assert may_publish(DOOR, "anfang/site/door-1/events/door_forced")
    assert may_publish(DOOR, "anfang/site/door-1/cmd/open/result")
    assert not may_publish(DOOR, "anfang/site/door-2/twin/reported")
    assert not may_publish(DOOR, "anfang/site/door-1/twin/desired")
    assert not may_publish(DOOR, "anfang/site/door-1/twin/update")
    assert not may_publish(DOOR, "anfang/other/door-1/twin/reported")
    assert may_subscribe(DOOR, "anfang/site/door-1/twin/desired")
    assert may_subscribe(DOOR, "anfang/site/door-1/cmd/#")
    assert not may_subscribe(DOOR, "anfang/site/door-1/#")
    assert not may_subscribe(DOOR, "anfang/site/+/twin/desired")
    assert not may_subscribe(DOOR, "#")
    op = Identity("op", Role.OPERATOR)
    assert may_publish(op, "anfang/site/door-1/twin/update") and not may_publish(op, "anfang/site/door-1/cmd/open")
    assert may_subscribe(Identity("p", Role.PLATFORM), "$share/g/anfang/+/+/twin/reported")


@given(
    st.lists(st.sampled_from(["a", "b", "+", "#"]), min_size=1, max_size=4),
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4),
)
def test_covers_agrees_with_matching(filter_levels: list[str], topic_levels: list[str]) -> None:
    if "#" in filter_levels[:-1]:
        return
    allowed = "/".join(filter_levels)
    topic = "/".join(topic_levels)
    if covers(allowed, topic):
        # a concrete topic covered by a filter must match it level by level
        for i, level in enumerate(filter_levels):
            if level == "#":
                break
            assert level == "+" or level == topic_levels[i]


def test_secret_hash_is_slow_salted_and_verifies() -> None:
    stored = hash_secret("s3cret", iterations=1000)
    assert stored.startswith("$7$1000$") and "s3cret" not in stored
    assert verify_secret("s3cret", stored) and not verify_secret("other", stored)
    assert hash_secret("s3cret", iterations=1000) != stored
    assert not verify_secret("s3cret", "$6$garbage")


def test_payload_errors_say_why() -> None:
    with pytest.raises(BadRequest, match="malformed JSON"):
        messages.parse_report(b"{")
    with pytest.raises(BadRequest, match="'state'"):
        messages.parse_report(b'{"seq": 1}')
    with pytest.raises(BadRequest, match="seq"):
        messages.parse_report(b'{"seq": "1", "state": {}}')
    with pytest.raises(TooLarge):
        messages.parse_report(b" " * (messages.MAX_PAYLOAD_BYTES + 1))
    with pytest.raises(BadRequest, match="id"):
        messages.parse_event(b'{"data": {}}')
    with pytest.raises(BadRequest, match="unknown metric"):
        messages.parse_telemetry(b'{"metrics": {"humidity": 3}}', frozenset({"battery"}))
    assert messages.parse_status(b"offline") == "offline"


def test_every_kind_validates_reports_with_the_path_of_the_first_error() -> None:
    assert len(KINDS) == 7
    validate_reported("vehicle_gate", {"barrier": "up", "cameras": {"cam-1": {"online": True}}})
    with pytest.raises(SchemaError) as err:
        validate_reported("vehicle_gate", {"cameras": {"cam-1": {"online": "yes"}}})
    assert err.value.path == "$.state.cameras.cam-1.online"
    with pytest.raises(SchemaError, match=r"\$\.state\.colour"):
        validate_reported("camera", {"colour": 1})
    validate_desired(
        "door_lock",
        {
            "allow_list": {
                "version": 1,
                "entries": [
                    {"subject": "p1", "kind": "face", "credential": "t", "valid_from": None, "valid_until": 5.0}
                ],
            }
        },
    )
    with pytest.raises(SchemaError, match=r"entries\[0\]\.kind"):
        validate_desired(
            "door_lock",
            {"allow_list": {"version": 1, "entries": [{"subject": "p1", "kind": "iris", "credential": "t"}]}},
        )
    validate_event("rfid_reader", "tag_seen", {"tag": "tag-1", "rssi": -70})
    with pytest.raises(SchemaError, match="emit no event"):
        validate_event("rfid_reader", "door_forced", {})
    with pytest.raises(SchemaError, match=r"\$\.data\.liveness"):
        validate_event("door_lock", "face_captured", {"liveness": 2})
    with pytest.raises(SchemaError, match=r"\$\.data\.mac"):
        validate_event("mac_sniffer", "mac_seen", {"mac": "zz", "rssi": -50})
