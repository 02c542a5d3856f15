"""The twins' version history: recorded by ingest (pure), written with the twins, read and bounded by the store,
and made by a running platform through a real broker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from platform_kit import Stack

from anfang.ingest import Inbound, process_batch
from registry.db import open_database
from registry.history import HistoryPolicy, HistoryStore
from registry.records import DeviceInfo
from registry.store import Registry, TwinStore
from twins import jsoncodec
from twins.document import Limits, TwinDocument, apply_reported
from twins.history import HistoryEntry, acting_as, current_actor, redact
from twins.topics import parse


def _msg(topic: str, body: object) -> Inbound:
    return Inbound(topic, parse(topic), body if isinstance(body, bytes) else jsoncodec.dumps_bytes(body))


def test_ingest_records_each_committed_change_in_order() -> None:
    devices = {"door-1": DeviceInfo("door-1", "door_lock", site="s")}
    batch = [
        _msg("anfang/s/door-1/twin/reported", {"seq": 1, "state": {"lock": "locked", "door": "closed"}}),
        _msg("anfang/s/door-1/twin/reported", {"seq": 2, "state": {"lock": "locked"}}),  # no change: no entry
        _msg("anfang/s/door-1/twin/reported", {"seq": 3, "state": {"lock": "unlocked"}}),
        _msg("anfang/s/door-1/twin/update", {"desired": {"hold_seconds": 5}}),
        _msg("anfang/s/door-1/status", b"online"),
        _msg("anfang/s/door-1/twin/reported", {"seq": 3, "state": {"lock": "locked"}}),  # stale: rejected
    ]
    out = process_batch(batch, devices, {}, set(), now=100.0, limits=Limits())
    assert [(h.version, h.source, h.actor, h.changed) for h in out.history] == [
        (1, "reported", "device", {"lock": "locked", "door": "closed"}),
        (2, "reported", "device", {"lock": "unlocked"}),  # a report that changes nothing keeps the version
        (3, "desired", "service", {"hold_seconds": 5}),
        (4, "status", "device", {"status": "online"}),
    ]
    assert out.history[-1].version == out.twins["door-1"].version


_credential = st.text(alphabet="abcdef0123456789", min_size=24, max_size=64)


@given(st.lists(_credential, min_size=1, max_size=5), st.integers(min_value=0, max_value=10**9))
def test_an_allow_list_is_recorded_as_version_and_size_only(credentials: list[str], version: int) -> None:
    entries = [{"subject": f"p{i}", "kind": "card", "credential": c} for i, c in enumerate(credentials)]
    changed = {"access_mode": "edge", "allow_list": {"version": version, "seal": "anfang-edge-v1", "entries": entries}}
    kept = jsoncodec.dumps(redact(changed))
    assert not any(c in kept for c in credentials)
    assert redact(changed)["allow_list"] == {"redacted": True, "version": version, "entries": len(entries)}
    assert redact(changed)["access_mode"] == "edge"


def test_the_actor_is_the_innermost_caller() -> None:
    assert current_actor() == "platform"
    with acting_as("staff:p-1"):
        with acting_as("rule:r1"):
            assert current_actor() == "rule:r1"
        assert current_actor() == "staff:p-1"
    assert current_actor() == "platform"


async def test_history_commits_with_the_twins_and_is_bounded_by_the_prune(db_url: str) -> None:
    async with open_database(db_url) as conn:
        store = TwinStore(conn, postgres=db_url.startswith("postgres"))
        registry = Registry(hash_iterations=1000)
        for dev in ("door-1", "door-2"):
            await registry.add_device("youzheng", dev, "door_lock")
        await registry.add_device("other", "door-9", "door_lock")
        docs = {d: TwinDocument(device_id=d, kind="door_lock", site="youzheng") for d in ("door-1", "door-2", "door-9")}
        for step in range(1, 8):
            batch, entries = [], []
            for dev, doc in docs.items():
                applied = apply_reported(doc, {"lock": "locked" if step % 2 else "unlocked"}, now=step, seq=step)
                docs[dev] = applied.document
                batch.append(applied.document)
                entries.append(HistoryEntry(dev, applied.document.version, 1000.0 * step, "reported", "device",
                                            applied.changed))  # fmt: skip
            await store.commit(batch, history=entries)
        # a takeover re-committing a version adds nothing
        await store.commit([docs["door-1"]], history=[HistoryEntry("door-1", 7, 1.0, "reported", "x", {})])

        history = HistoryStore(conn, "youzheng")
        recent = await history.recent("door-1", limit=3)
        assert [h.version for h in recent] == [7, 6, 5]
        assert recent[0] == HistoryEntry("door-1", 7, 7000.0, "reported", "device", {"lock": "locked"})
        assert await history.recent("door-9") == []  # another site's device
        assert len(await history.changes_before(3500.0)) == 6  # steps 1-3 of both devices, oldest first

        # nothing older than 4,500 s before "now" (8,000): versions 1-3 go; the newest 3 per device: 4 goes too
        removed = await history.prune(HistoryPolicy(keep_versions=3, keep_days=4500 / 86400), now=8000.0)
        assert removed == 2 * 4
        assert [h.version for h in await history.recent("door-2")] == [7, 6, 5]
        removed = await history.prune(HistoryPolicy(keep_versions=0, keep_days=2500 / 86400), now=9000.0)
        assert removed == 2 * 2
        assert [h.version for h in await history.recent("door-2")] == [7]
        assert len(await HistoryStore(conn, "other").recent("door-9")) == 7  # other sites are theirs to prune

        await registry.delete_device("door-1")
        rows = await conn.execute_query_dict("SELECT COUNT(*) AS n FROM twin_history WHERE device_id = 'door-1'")
        assert int(rows[0]["n"]) == 0


async def test_a_running_platform_records_reports_updates_and_handlers_changes(platform_stack: Stack) -> None:
    secret = await platform_stack.add_device("gate-north", "vehicle_gate")
    dev = await platform_stack.device("gate-north", secret)
    await dev.published(dev.publish("twin/reported", {"seq": 1, "state": {"barrier": "down"}}))
    op = await platform_stack.operator()
    await op.subscribe("anfang/youzheng/gate-north/twin/update/+")
    op.publish("anfang/youzheng/gate-north/twin/update", {"desired": {"barrier": "up"}}, raw_topic=True)
    await op.expect(r"/twin/update/accepted$")
    with acting_as("rule:open-for-ambulance"):
        version = await platform_stack.platform.set_desired("gate-north", {"open_seconds": 30})

    history = HistoryStore(platform_stack.platform.store.connection, platform_stack.site)
    entries = await history.recent("gate-north")
    assert entries[0].version == version
    mine = [(h.source, h.actor, h.changed) for h in reversed(entries) if h.source != "status"]
    assert mine == [
        ("reported", "device", {"barrier": "down"}),
        ("desired", "service", {"barrier": "up"}),
        ("desired", "rule:open-for-ambulance", {"open_seconds": 30}),
    ]
