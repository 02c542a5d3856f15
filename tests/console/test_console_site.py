"""The community map and the device view: devices coloured by state, twin fields, staff set desired."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from community_testkit import NOW, SITE, Community, community_fixture, db_fixture  # noqa: F401 (pytest fixtures)
from console_kit import Console, console_fixture  # noqa: F401 (pytest fixture)
from hypothesis import given
from hypothesis import strategies as st

from anfang.console.sitemap import DeviceMark, Plan, TagMark, device_state, render_svg
from community.models import AuditRow
from twins.history import current_actor
from twins.hooks import CommandResult

PLAN = Plan(
    [
        ("community", "围墙", "fence", [(0, 0), (100, 0), (100, 80), (0, 80)]),
        ("kg", "幼儿园", "kindergarten", [(60, 5), (90, 5), (90, 30), (60, 30)]),
    ],
    [("b1", "1栋", (30.0, 50.0))],
)


class RecordingActions:
    """Stands in for the platform worker: records desired patches."""

    def __init__(self) -> None:
        self.desired: list[tuple[str, dict[str, Any]]] = []
        self.actors: list[str] = []  # who each desired change was made for (recorded in the twin's history)
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        self.desired.append((device_id, patch))
        self.actors.append(current_actor())
        return 1

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        self.commands.append((device_id, name, args))
        return CommandResult("c1", True, {"opened": True}, None)


async def _devices(console: Console) -> None:
    sql = console.services.store.sql
    await sql.execute("INSERT INTO sites (id, name, created_at) VALUES (?, ?, ?)", [SITE, SITE, NOW])
    for device_id, kind, xy, status in (
        ("gate-north", "vehicle_gate", (50, 80), "online"),
        ("door-b1-u1", "door_lock", (30, 45), "online"),
        ("rfid-01", "rfid_reader", (5, 5), "offline"),
    ):
        await sql.execute(
            "INSERT INTO devices (id, site_id, kind, name, x, y, created_at, updated_at, last_seen) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [device_id, SITE, kind, device_id, xy[0], xy[1], NOW, NOW, NOW - 3],
        )
        doc = {
            "device_id": device_id,
            "kind": kind,
            "site": SITE,
            "version": 3,
            "reported": {"lock": "locked"},
            "desired": {"lock": "unlocked"},
            "delta": {"lock": "unlocked"},
            "metadata": {"reported": {"lock": NOW - 5}, "desired": {"lock": NOW - 1}},
            "status": status,
            "status_ts": NOW - 60,
        }
        await sql.execute(
            "INSERT INTO twins (device_id, version, doc, updated_at) VALUES (?, ?, ?, ?)",
            [device_id, 3, json.dumps(doc), NOW],
        )


async def test_the_map_colours_devices_by_state_and_links_each_to_its_twin(console: Console) -> None:
    console.services.plan = PLAN
    await _devices(console)
    await console.community.alarms.raise_alarm(
        None,
        rule_id="door-forced",
        subject="door-b1-u1",
        kind="door_forced",
        severity="high",
        message="forced",
        now=NOW,
    )
    client, _ = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        page = await client.get("/console/map")
        assert page.status_code == 200
        for device_id, state in (("gate-north", "online"), ("door-b1-u1", "alarm"), ("rfid-01", "offline")):
            assert f'id="dev-{device_id}" data-state="{state}"' in page.text, device_id
        assert 'id="zone-kg"' in page.text and 'id="building-b1"' in page.text
        assert 'href="/console/devices/gate-north"' in page.text


async def test_the_device_view_shows_the_twin_and_staff_set_a_desired_field(console: Console) -> None:
    await _devices(console)
    actions = RecordingActions()
    console.services.actions = lambda: actions  # type: ignore[assignment,return-value]
    await console.services.store.sql.execute(
        "INSERT INTO twin_history (device_id, version, ts, source, actor, changed) VALUES (?, ?, ?, ?, ?, ?)",
        ["door-b1-u1", 3, NOW - 1, "desired", "rule:night-lock", json.dumps({"lock": "unlocked"})],
    )
    client, csrf = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        view = await client.get("/console/devices/door-b1-u1")
        assert view.status_code == 200
        assert '<tr data-version="3" data-source="desired">' in view.text and "rule:night-lock" in view.text
        assert "lock=&#34;unlocked&#34;" in view.text
        assert 'id="reported"' in view.text and "&#34;locked&#34;" in view.text and 'id="delta"' in view.text
        assert "online" in view.text and 'id="set-desired"' in view.text
        assert 'id="last-seen"' in view.text  # any traffic from the device, kept by the platform
        r = await client.post(
            "/console/devices/door-b1-u1/desired", data={"field": "hold_seconds", "value": "5", "csrf": csrf}
        )
        assert r.status_code == 303
    assert actions.desired == [("door-b1-u1", {"hold_seconds": 5})]
    assert len(actions.actors) == 1 and actions.actors[0].startswith("staff:")
    police, csrf = await console.signed_in("police")
    async with contextlib.aclosing(police):
        view = await police.get("/console/devices/door-b1-u1")
        assert view.status_code == 200 and 'id="set-desired"' not in view.text
        refused = await police.post(
            "/console/devices/door-b1-u1/desired", data={"field": "x", "value": "1", "csrf": csrf}
        )
        assert refused.status_code == 403
    assert len(actions.desired) == 1


@given(st.sampled_from(["online", "offline", "unknown", None]), st.booleans())
def test_an_alarm_shows_over_offline_over_online(status: str | None, alarmed: bool) -> None:
    state = device_state(status, alarmed)
    assert state == ("alarm" if alarmed else "online" if status == "online" else "offline")


def test_the_svg_flips_y_and_escapes_names() -> None:
    svg = render_svg(
        Plan([], [("b<1>", "<script>", (0.0, 0.0))]),
        [DeviceMark("d1", "camera", "a&b", (0.0, 10.0), "online")],
        device_href="/console/devices/",
        counts={"online": 1},
    )
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "a&amp;b" in svg
    # north (y=10) is drawn above the building at y=0: a smaller SVG y
    assert 'cy="12.0"' in svg and 'y="16.0"' in svg.split('id="building-b&lt;1&gt;"')[1]


async def _tag(console: Console, tag_id: str, position: tuple[float, float], seen: float) -> None:
    sql = console.services.store.sql
    await sql.execute(
        "INSERT INTO devices (id, site_id, kind, name, x, y, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [tag_id, SITE, "rfid_tag", tag_id, None, None, NOW, NOW],
    )
    reported = {"last_seen": seen, "reader": "rfid-01", "position": {"x": position[0], "y": position[1]}}
    doc = {
        "device_id": tag_id,
        "kind": "rfid_tag",
        "site": SITE,
        "version": 1,
        "status": "online",
        "reported": reported,
    }
    await sql.execute(
        "INSERT INTO twins (device_id, version, doc, updated_at) VALUES (?, ?, ?, ?)",
        [tag_id, 1, json.dumps(doc), NOW],
    )


async def test_the_map_shows_worn_tags_seen_lately_to_staff_and_police_and_the_view_is_audited(
    console: Console,
) -> None:
    console.services.plan = PLAN
    await _devices(console)
    await _tag(console, "tag-elder-7", (40.0, 20.0), NOW - 30)  # seen half a minute ago
    await _tag(console, "tag-child-3", (70.0, 10.0), NOW - 3600)  # an hour ago: not where the child is now
    for role in ("staff", "police"):
        client, _ = await console.signed_in(role)
        async with contextlib.aclosing(client):
            page = await client.get("/console/map")
            assert page.status_code == 200
            assert 'id="tag-tag-elder-7"' in page.text and "tag-child-3" not in page.text
            assert "worn tags 1" in page.text and 'hx-get="/console/map/live"' in page.text
            live = await client.get("/console/map/live")  # what the open page redraws itself with
            assert live.status_code == 200 and 'id="tag-tag-elder-7"' in live.text
    views = await AuditRow.filter(action="console_view_tag_positions")
    assert sorted(v.actor for v in views) == ["p-police", "p-staff"]


async def test_staff_send_a_command_from_the_device_view_and_see_what_it_answered(console: Console) -> None:
    await _devices(console)
    await console.services.store.sql.execute(
        "INSERT INTO commands(id, device_id, name, args, status, result, created_at, finished_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ["c0", "door-b1-u1", "open", '{"hold_seconds": 5}', "done", '{"opened": true}', NOW - 10, NOW - 9],
    )
    actions = RecordingActions()
    console.services.actions = lambda: actions  # type: ignore[assignment,return-value]
    client, csrf = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        view = await client.get("/console/devices/door-b1-u1")
        assert 'id="commands"' in view.text and "hold_seconds" in view.text and "opened" in view.text
        sent = await client.post(
            "/console/devices/door-b1-u1/command", data={"name": "open", "args": '{"hold_seconds": 3}', "csrf": csrf}
        )
        assert sent.status_code == 303 and "error" not in sent.headers["location"]
        bad = await client.post(
            "/console/devices/door-b1-u1/command", data={"name": "open", "args": "[1, 2]", "csrf": csrf}
        )
        assert "JSON+object" in bad.headers["location"]
    assert actions.commands == [("door-b1-u1", "open", {"hold_seconds": 3})]
    police, csrf = await console.signed_in("police")
    async with contextlib.aclosing(police):
        view = await police.get("/console/devices/door-b1-u1")
        assert 'id="send-command"' not in view.text
        refused = await police.post("/console/devices/door-b1-u1/command", data={"name": "open", "csrf": csrf})
        assert refused.status_code == 403
    assert len(actions.commands) == 1


@given(st.floats(-500, 500), st.floats(-500, 500))
def test_a_tag_off_the_plan_is_drawn_on_its_edge(x: float, y: float) -> None:
    svg = render_svg(PLAN, [], device_href="/d/", counts={}, tags=[TagMark("t1", (x, y), 5.0)])
    box = [float(v) for v in svg.split('viewBox="')[1].split('"')[0].split()]
    rect = svg.split('id="tag-t1" ')[1]
    rx, ry = float(rect.split('x="')[1].split('"')[0]) + 1.2, float(rect.split('y="')[1].split('"')[0]) + 1.2
    assert -0.01 <= rx <= box[2] + 0.01 and -0.01 <= ry <= box[3] + 0.01


async def test_opening_a_worn_tags_history_is_audited_and_a_doors_is_not(console: Console) -> None:
    await _devices(console)
    await _tag(console, "tag-elder-7", (40.0, 20.0), NOW - 30)
    for device_id, changed in (("tag-elder-7", {"position": {"x": 40.0, "y": 20.0}}), ("door-b1-u1", {"door": "open"})):
        await console.services.store.sql.execute(
            "INSERT INTO twin_history (device_id, version, ts, source, actor, changed) VALUES (?, ?, ?, ?, ?, ?)",
            [device_id, 1, NOW - 30, "reported", "platform", json.dumps(changed)],
        )
    client, _ = await console.signed_in("staff")
    async with contextlib.aclosing(client):
        door = await client.get("/console/devices/door-b1-u1")
        assert door.status_code == 200 and "door=&#34;open&#34;" in door.text
        assert await AuditRow.filter(action="console_view_tag_history").count() == 0
        tag = await client.get("/console/devices/tag-elder-7")
        assert tag.status_code == 200 and "position=" in tag.text
    assert [a.target for a in await AuditRow.filter(action="console_view_tag_history")] == ["tag-elder-7"]
