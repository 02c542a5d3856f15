"""The twin platform through a real broker: embedded amqtt and Mosquitto (each test runs on both)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from platform_kit import Stack, running_platform
from testkit import Device

from anfang import gmqtt_adapter
from anfang.service import Platform
from twins.document import TwinDocument


async def _wait_twin(
    stack: Stack, device_id: str, predicate: Callable[[TwinDocument], bool], timeout: float = 10.0
) -> TwinDocument:
    """Wait for the commit after which the device's twin satisfies ``predicate``."""

    def holds(platform: Platform) -> bool:
        doc = platform.cached_twin(device_id)
        return doc is not None and predicate(doc)

    await stack.platform.wait_until(holds, timeout)
    return await stack.platform.twin(device_id)


async def test_wrong_secret_is_refused(platform_stack: Stack) -> None:
    await platform_stack.add_device("door-b1-u1", "door_lock")
    intruder = Device(platform_stack.host, platform_stack.port, "door-b1-u1", "not-the-secret", site="youzheng")
    assert await intruder.connect() != 0
    intruder.close()
    stranger = Device(platform_stack.host, platform_stack.port, "nobody", "x", site="youzheng")
    assert await stranger.connect() != 0
    stranger.close()


async def test_report_changes_twin(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("door-b1-u1", "door_lock")
    dev = await platform_stack.device("door-b1-u1", secret)
    info = dev.publish("twin/reported", {"seq": 1, "state": {"lock": "locked", "door": "closed"}})
    await dev.published(info)
    doc = await _wait_twin(platform_stack, "door-b1-u1", lambda d: d.version >= 1)
    assert doc.reported == {"lock": "locked", "door": "closed"}
    assert doc.last_seq == 1
    assert set(doc.metadata.reported) == {"lock", "door"}


async def test_desired_change_reaches_device_as_desired_and_delta(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("gate-north", "vehicle_gate")
    dev = await platform_stack.device("gate-north", secret)
    await dev.subscribe(dev.topic("twin/desired"), dev.topic("twin/delta"))
    await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"barrier": "down"}}))
    await _wait_twin(platform_stack, "gate-north", lambda d: d.version >= 1)

    op = await platform_stack.operator()
    await op.subscribe("anfang/youzheng/gate-north/twin/update/+")
    op.publish(
        "anfang/youzheng/gate-north/twin/update",
        {"desired": {"barrier": "up", "open_seconds": 8}, "client_token": "t1"},
        raw_topic=True,
    )
    _, accepted = await op.expect(r"/twin/update/accepted$")
    assert accepted["client_token"] == "t1" and accepted["version"] == 2

    _, desired = await dev.expect(r"/twin/desired$")
    assert desired == {"version": 2, "desired": {"barrier": "up", "open_seconds": 8}, "ts": desired["ts"]}
    _, delta = await dev.expect(r"/twin/delta$")
    assert delta["delta"] == {"barrier": "up", "open_seconds": 8}

    # the device applies it; the twin's delta empties
    await dev.published(dev.publish("twin/reported", {"seq": 2, "state": {"barrier": "up", "open_seconds": 8}}))
    doc = await _wait_twin(platform_stack, "gate-north", lambda d: d.version >= 3)
    assert doc.delta == {}


async def test_reconnecting_device_gets_retained_desired_at_once(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("door-b2-u1", "door_lock")
    await platform_stack.platform.set_desired("door-b2-u1", {"lock": "unlocked", "hold_seconds": 6})
    dev = await platform_stack.device("door-b2-u1", secret)
    await dev.subscribe(dev.topic("twin/desired"))
    _, desired = await dev.expect(r"/twin/desired$")
    assert desired["desired"] == {"lock": "unlocked", "hold_seconds": 6}


async def test_stale_version_is_rejected_with_409(platform_stack: Stack) -> None:
    await platform_stack.add_device("door-b1-u2", "door_lock")
    op = await platform_stack.operator()
    await op.subscribe("anfang/youzheng/door-b1-u2/twin/update/+")
    op.publish(
        "anfang/youzheng/door-b1-u2/twin/update",
        {"desired": {"hold_seconds": 5}, "version": 0, "client_token": "a"},
        raw_topic=True,
    )
    _, ok = await op.expect(r"/accepted$")
    assert ok["version"] == 1
    op.publish(
        "anfang/youzheng/door-b1-u2/twin/update",
        {"desired": {"hold_seconds": 9}, "version": 0, "client_token": "b"},
        raw_topic=True,
    )
    topic, rejected = await op.expect(r"/twin/update/(accepted|rejected)$")
    assert topic.endswith("/rejected")
    assert rejected["code"] == 409 and rejected["client_token"] == "b"
    assert "version" in rejected["message"]
    assert (await platform_stack.platform.twin("door-b1-u2")).desired == {"hold_seconds": 5}


async def test_device_cannot_touch_another_devices_topics(platform_stack: Stack) -> None:
    secret_a = await platform_stack.add_device("door-b3-u1", "door_lock")
    await platform_stack.add_device("door-b3-u2", "door_lock")
    a = await platform_stack.device("door-b3-u1", secret_a)
    # publish as another door, and ask for its desired state: the broker drops both
    a.publish("anfang/youzheng/door-b3-u2/twin/reported", {"seq": 1, "state": {"lock": "unlocked"}}, raw_topic=True)
    a.publish("anfang/youzheng/door-b3-u2/twin/update", {"desired": {"lock": "unlocked"}}, raw_topic=True)
    a.publish("anfang/youzheng/door-b3-u2/events/door_forced", {"id": "e1", "data": {}}, raw_topic=True)
    # a report on its own topic afterwards is the marker that the others were processed (or dropped)
    await a.published(a.publish("twin/reported", {"seq": 1, "state": {"lock": "locked"}}))
    await _wait_twin(platform_stack, "door-b3-u1", lambda d: d.version >= 1)
    other = await platform_stack.platform.twin("door-b3-u2")
    assert other.version == 0 and other.reported == {} and other.desired == {}


async def test_dropped_device_becomes_offline(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("rfid-01", "rfid_reader")
    dev = await platform_stack.device("rfid-01", secret)
    await dev.published(dev.publish("status", "online", retain=True))
    await _wait_twin(platform_stack, "rfid-01", lambda d: d.status == "online")
    dev.drop_connection()
    doc = await _wait_twin(platform_stack, "rfid-01", lambda d: d.status == "offline", timeout=15)
    assert doc.status_ts is not None


async def test_bad_report_is_answered_on_errors_topic_and_counted(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("door-b4-u1", "door_lock")
    dev = await platform_stack.device("door-b4-u1", secret)
    await dev.subscribe(dev.topic("errors"))
    dev.publish("twin/reported", {"seq": 1, "state": {"lock": "wide-open"}})
    _, err = await dev.expect(r"/errors$")
    assert err["code"] == 422 and err["message"].startswith("$.state.lock") and err["ref"] == 1
    dev.publish("twin/reported", b"{not json")
    _, err = await dev.expect(r"/errors$")
    assert err["code"] == 400 and "malformed JSON" in err["message"]
    dev.publish("events/door_forced", {"id": "x1", "data": {"extra": 1}})
    _, err = await dev.expect(r"/errors$")
    assert err["code"] == 422 and err["ref"] == "x1"
    assert platform_stack.platform.counters.rejected[422] == 2
    assert platform_stack.platform.counters.rejected[400] == 1


async def test_redelivered_event_is_processed_once(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("door-b5-u1", "door_lock")
    dev = await platform_stack.device("door-b5-u1", secret)
    event = {"id": "evt-42", "ts": 1.0, "data": {}}
    for _ in range(3):
        await dev.published(dev.publish("events/door_forced", event))
    await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"lock": "locked"}}))
    await _wait_twin(platform_stack, "door-b5-u1", lambda d: d.version >= 1)
    assert platform_stack.platform.counters.duplicates == 2
    rows = await platform_stack.platform.store._conn.execute_query_dict(
        "SELECT event_id FROM device_events WHERE device_id = 'door-b5-u1'"
    )
    assert [r["event_id"] for r in rows] == ["evt-42"]


async def test_a_report_redelivered_after_its_commit_is_a_duplicate_not_an_error(tmp_path: Path) -> None:
    """A worker that committed a report but lost its connection before the PUBACK gets the report
    again from the broker, flagged DUP: the device sees no error and the twin does not move."""
    async with running_platform(tmp_path, "mosquitto") as stack:
        secret = await stack.add_device("door-b6-u1", "door_lock")
        dev = await stack.device("door-b6-u1", secret)
        await dev.subscribe(dev.topic("errors"))
        link = stack.platform.link
        send_puback = link._puback
        link._puback = lambda mid: None  # type: ignore[method-assign]  # committed, never acknowledged
        await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"lock": "locked"}}))
        await _wait_twin(stack, "door-b6-u1", lambda d: d.version >= 1)
        link._puback = send_puback  # type: ignore[method-assign]
        gmqtt_adapter.drop_transport(link._client)  # gmqtt reconnects; Mosquitto resends the report
        await stack.platform.wait_until(lambda p: p.counters.duplicates >= 1, timeout=15)

        dev.publish("twin/reported", {"seq": 0, "state": {"lock": "unlocked"}})  # stale, not a redelivery
        _, err = await dev.expect(r"/errors$")
        assert err["code"] == 409 and err["ref"] == 0, err  # the first error: none for the redelivery
        assert stack.platform.counters.rejected[409] == 1
        doc = await stack.platform.twin("door-b6-u1")
        assert doc.version == 1 and doc.reported == {"lock": "locked"}


async def test_command_result_and_timeout(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("gate-south", "vehicle_gate")
    dev = await platform_stack.device("gate-south", secret)
    await dev.subscribe(dev.topic("cmd/#"))

    async def answer() -> None:
        _topic, cmd = await dev.expect(r"/cmd/open$")
        dev.publish("cmd/open/result", {"id": cmd["id"], "ok": True, "result": {"opened": True}})

    responder = asyncio.create_task(answer())
    result = await platform_stack.platform.send_command("gate-south", "open", {"seconds": 5}, timeout=10)
    await responder
    assert result.ok and result.result == {"opened": True} and not result.timed_out
    silent = await platform_stack.platform.send_command("gate-south", "reboot", {}, timeout=0.5)
    assert silent.timed_out and not silent.ok
    stored = await platform_stack.platform.store.command(silent.id)
    assert stored is not None and stored["status"] == "timeout"
    assert json.loads((await platform_stack.platform.store.command(result.id) or {})["result"]) == {"opened": True}


async def test_twin_cli_goes_through_the_mqtt_api(platform_stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from anfang.cli import app

    await platform_stack.add_device("door-b6-u1", "door_lock")
    monkeypatch.setenv("ANFANG_DATA_DIR", str(platform_stack.settings.data_dir))
    if platform_stack.broker == "amqtt":
        monkeypatch.setenv("ANFANG_BROKER_BIND", platform_stack.settings.broker.bind)
    else:
        monkeypatch.setenv("ANFANG_EMBEDDED_BROKER", "false")
        monkeypatch.setenv("ANFANG_MQTT_PORT", str(platform_stack.port))
    runner = CliRunner()
    args = ["twin", "set", "door-b6-u1", "lock=unlocked", "hold_seconds=7"]
    result = await asyncio.to_thread(runner.invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "accepted: version 1" in result.output
    stale = await asyncio.to_thread(runner.invoke, app, ["twin", "set", "door-b6-u1", "lock=locked", "--version", "0"])
    assert stale.exit_code == 1 and "409" in stale.output
    bad = await asyncio.to_thread(runner.invoke, app, ["twin", "set", "door-b6-u1", "lock=ajar"])
    assert bad.exit_code == 1 and "422" in bad.output and "$.desired.lock" in bad.output
    shown = await asyncio.to_thread(runner.invoke, app, ["twin", "get", "door-b6-u1"])
    assert shown.exit_code == 0 and '"hold_seconds": 7' in shown.output


@pytest.mark.parametrize("broker_kind", ["mosquitto"], indirect=True)
async def test_mqtt5_requester_gets_answer_on_its_response_topic(platform_stack: Stack) -> None:
    import gmqtt

    await platform_stack.add_device("door-b7-u1", "door_lock")
    user, password = platform_stack.operator_credentials
    answers: asyncio.Queue[tuple[str, bytes, dict[str, object]]] = asyncio.Queue()
    client = gmqtt.Client("op-mqtt5")
    client.set_auth_credentials(user, password)
    client.on_message = lambda c, topic, payload, qos, props: answers.put_nowait((topic, payload, props)) or 0
    await client.connect(platform_stack.host, platform_stack.port, version=gmqtt.constants.MQTTv50)
    reply_topic = "anfang/youzheng/_replies/op-mqtt5"
    subscribed = asyncio.Event()
    client.on_subscribe = lambda *args: subscribed.set()
    client.subscribe(reply_topic, qos=1)
    await asyncio.wait_for(subscribed.wait(), 10)
    client.publish(
        "anfang/youzheng/door-b7-u1/twin/get", b"{}", qos=1, response_topic=reply_topic, correlation_data=b"req-1"
    )
    try:
        topic, payload, props = await asyncio.wait_for(answers.get(), 10)
    finally:
        await client.disconnect()
    assert topic == reply_topic
    assert json.loads(payload)["device_id"] == "door-b7-u1"
    assert props["correlation_data"] == [b"req-1"]


async def test_sender_gone_before_commit_does_not_stop_the_platform(platform_stack: Stack) -> None:
    await platform_stack.add_device("door-b8-u1", "door_lock")
    topic = "anfang/youzheng/door-b8-u1/twin/reported"
    async with platform_stack.platform._write_lock:  # hold the ingest loop before its commit
        gone = asyncio.create_task(platform_stack.platform.ingest(topic, b'{"seq": 1, "state": {"lock": "locked"}}'))
        await asyncio.sleep(0)  # let the message reach the inbox
        gone.cancel()  # as amqtt does when the device's connection closes
    await platform_stack.platform.ingest(topic, b'{"seq": 2, "state": {"lock": "unlocked"}}')
    doc = await platform_stack.platform.twin("door-b8-u1")
    assert doc.reported == {"lock": "unlocked"} and doc.last_seq == 2


async def test_device_never_receives_other_devices_retained_messages(platform_stack: Stack) -> None:
    secret_a = await platform_stack.add_device("door-b9-u1", "door_lock")
    secret_b = await platform_stack.add_device("door-b9-u2", "door_lock")
    await platform_stack.platform.set_desired("door-b9-u2", {"lock": "unlocked"})  # retained for B
    b = await platform_stack.device("door-b9-u2", secret_b)
    await b.published(b.publish("status", "online", retain=True))
    await platform_stack.platform.set_desired("door-b9-u1", {"hold_seconds": 4})
    a = await platform_stack.device("door-b9-u1", secret_a)
    await a.subscribe(a.topic("twin/desired"))
    _, own = await a.expect(r"/twin/desired$")  # its own retained desired document arrives
    assert own["desired"] == {"hold_seconds": 4}
    # a second, ordered marker: nothing of B's may have arrived before or with it
    await a.published(a.publish("twin/reported", {"seq": 1, "state": {"lock": "locked"}}))
    await platform_stack.platform.set_desired("door-b9-u1", {"hold_seconds": 5})
    _, marker = await a.expect(r"/twin/desired$")
    assert marker["desired"]["hold_seconds"] == 5
    assert not [t for t in a.seen if "door-b9-u2" in t], a.seen
