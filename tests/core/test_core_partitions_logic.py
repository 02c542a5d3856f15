"""The pure parts of several active workers: who serves which device, the feed's codec, the
supervisor's command line."""

from __future__ import annotations

from typing import cast

from hypothesis import given
from hypothesis import strategies as st

from anfang.feed import FeedWriter, decode, encode
from anfang.mqtt_link import MqttLink
from anfang.partitions import device_filters, partition_client_id, partition_of
from anfang.remote_twins import RemoteTwins
from anfang.supervisor import without_workers_option
from registry.records import DeviceInfo
from twins.hooks import DeviceEvent, TwinChange

ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)


@given(ids, st.integers(1, 16))
def test_every_device_has_exactly_one_partition_and_keeps_it(device_id: str, partitions: int) -> None:
    device = DeviceInfo(device_id, "door_lock", name=device_id, site="youzheng")
    part = partition_of(device, partitions)
    assert 0 <= part < partitions
    assert partition_of(device, partitions) == part  # stable: the same in every worker and after restarts


def test_devices_spread_over_partitions_and_virtual_ones_stay_with_the_leader() -> None:
    devices = [DeviceInfo(f"reader-{i:04d}", "rfid_reader", name="", site="youzheng") for i in range(1000)]
    counts = [sum(partition_of(d, 4) == p for d in devices) for p in range(4)]
    assert min(counts) > 200, counts  # roughly even: no worker gets most of the site
    virtual = DeviceInfo("tag-elder-001", "rfid_tag", name="", site="youzheng")  # its twin is derived by the leader
    assert virtual.virtual and partition_of(virtual, 4) == 0


def test_a_single_partition_keeps_the_plain_client_id_and_device_filters_name_the_device() -> None:
    assert partition_client_id("anfang-platform", 0, 1) == "anfang-platform"
    assert partition_client_id("anfang-platform", 1, 2) == "anfang-platform-p1"
    filters = device_filters("youzheng", ["door-1"])
    assert "anfang/youzheng/door-1/twin/reported" in filters
    # its owner takes its events and telemetry too (no leader takes them site-wide)
    assert {"anfang/youzheng/door-1/events/#", "anfang/youzheng/door-1/telemetry"} <= set(filters)
    assert all(f.startswith("anfang/youzheng/door-1/") for f in filters)


# integers as twins hold them: every state was read by twins.jsoncodec, which reads integers beyond
# 64 bits as floats (documented there)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=5),
    lambda inner: st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
docs = st.dictionaries(st.text(max_size=5), json_values, max_size=4)


@given(docs, docs, docs, st.integers(0, 10**9))
def test_feed_items_survive_the_round_trip(reported: dict, previous: dict, changed: dict, version: int) -> None:  # type: ignore[type-arg]
    change = TwinChange(
        "youzheng", "door-1", "door_lock", version, 1.5, reported, previous, {"lock": "locked"}, changed
    )
    event = DeviceEvent("youzheng", "door-1", "door_lock", "status", "status-3", 2.0, {"state": "offline"})
    assert decode(encode(change)) == change
    assert decode(encode(event)) == event


def test_a_forwarded_capture_leaves_its_image_out() -> None:
    capture = DeviceEvent("youzheng", "d", "door_lock", "face_captured", "f", 1.0, {"image_jpeg_b64": "AAAA", "x": 1})
    assert decode(encode(capture)).data == {"x": 1}


def test_feed_rows_are_numbered_per_target_from_its_head_and_only_routed_inputs_are_written() -> None:
    routed = DeviceEvent("youzheng", "d", "door_lock", "access_decided", "a", 1.0, {"subject": "p1"})
    local = DeviceEvent("youzheng", "d", "door_lock", "status", "s", 1.0, {})
    writer = FeedWriter("youzheng", 1, {0: 41, 2: 7}, lambda item: {0, 2} if item is routed else set())
    rows = writer.rows([routed, local, routed])
    assert [(r[1], r[2], r[3]) for r in rows] == [(1, 0, 42), (1, 2, 8), (1, 0, 43), (1, 2, 9)]
    assert writer.rows([local]) == []
    assert writer.rows([routed])[0][3] == 44


def test_children_get_the_parents_arguments_without_workers() -> None:
    argv = ["--config", "a.yaml", "--workers", "2", "--site", "x", "--workers=3"]
    assert without_workers_option(argv) == ["--config", "a.yaml", "--site", "x"]


def test_a_malformed_or_unexpected_reply_to_the_leader_is_ignored() -> None:
    remote = RemoteTwins(cast(MqttLink, None), "anfang/youzheng/_platform/replies/anfang-platform")
    for payload in (b"not json", b"[1, 2]", b'{"client_token": 7}', b'{"client_token": "leader-gone", "version": 3}'):
        remote.on_reply(payload)  # logged, not raised: a stray message must not stop the leader
