"""The embedded broker's subscription table may change while amqtt is broadcasting."""

from __future__ import annotations

from broker.embedded import _SnapshotDict


def test_a_subscription_added_during_a_broadcast_does_not_break_the_broadcast() -> None:
    table = _SnapshotDict({"anfang/+/+/status": ["platform"]})
    seen = []
    for topic_filter, sessions in table.items():  # amqtt awaits inside this loop; others subscribe then
        table["anfang/youzheng/door-b1-u2/twin/desired"] = ["door-b1-u2"]
        seen.append((topic_filter, sessions))
    for topic_filter in table:  # amqtt removes empty filters this way
        if topic_filter == "anfang/+/+/status":
            del table[topic_filter]
    assert seen == [("anfang/+/+/status", ["platform"])]
    assert list(table) == ["anfang/youzheng/door-b1-u2/twin/desired"]
