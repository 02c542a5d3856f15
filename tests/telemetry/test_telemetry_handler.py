"""What the platform's events and calls turn into (through the real writer into a FileSink)."""

from __future__ import annotations

from pathlib import Path

from rules.recording import RecordingActions
from telemetry.handler import TelemetryHandler
from telemetry.schema import GeoOrigin
from telemetry.sinks import FileSink
from telemetry.writer import TelemetryWriter
from twins.hooks import DeviceEvent, PlatformHandler, TwinChange


async def _run(tmp_path: Path, body: object) -> list[str]:
    path = tmp_path / "t.lp"
    writer = TelemetryWriter(FileSink(path), batch_size=1000, flush_interval=0.01)
    handler = TelemetryHandler(writer, site="s1", tag_groups={"tag-9": "child"}, origin=GeoOrigin(30.0, 120.0))
    _: PlatformHandler = handler  # satisfies the platform's protocol
    actions = RecordingActions(clock=1000.0)
    async with handler:
        await body(handler, actions)  # type: ignore[operator]
    return path.read_text().splitlines()


async def test_events_become_access_passage_vehicle_and_dwell_points(tmp_path: Path) -> None:
    async def body(h: TelemetryHandler, actions: RecordingActions) -> None:
        def ev(device: str, kind: str, etype: str, ts: float, data: dict[str, object]) -> DeviceEvent:
            return DeviceEvent("s1", device, kind, etype, f"e{ts}", ts, data)

        await h.on_event(ev("door-1", "door_lock", "access_decided", 1.0, {"allowed": False, "subject": "Wang Wei",
                            "credential_kind": "face", "reason": "liveness too low"}), actions)  # fmt: skip
        await h.on_event(ev("door-1", "door_lock", "door_opened", 2.0, {"by": "exit_button"}), actions)
        await h.on_event(
            ev(
                "gate-1",
                "vehicle_gate",
                "plate_captured",
                3.0,
                {"camera": "c", "direction": "in", "plate": "京A1", "confidence": 0.9},
            ),
            actions,
        )
        await h.on_event(
            ev("gate-1", "vehicle_gate", "plate_captured", 63.0, {"camera": "c", "direction": "out", "plate": "京A1"}),
            actions,
        )
        await h.on_event(ev("mac-1", "mac_sniffer", "mac_seen", 4.0, {"mac": "aa", "rssi": -50}), actions)

    lines = await _run(tmp_path, body)
    assert lines[0] == ('access,credential=face,device=door-1,direction=in,kind=door_lock,result=deny,site=s1 '
                        'count=1i,reason="liveness too low" 1000000000')  # fmt: skip
    assert lines[1] == "passage,device=door-1,direction=out,kind=door_lock,site=s1,via=exit_button count=1i 2000000000"
    assert lines[2].startswith("vehicle,device=gate-1,direction=in,plate_read=yes,site=s1 ")
    assert 'plate="京A1"' in lines[2]
    assert lines[3].startswith("passage,device=gate-1,direction=in,kind=vehicle_gate,site=s1,via=plate ")
    assert lines[-1] == "vehicle_dwell,device=gate-1,site=s1 dwell_s=60.0 63000000000"
    assert not any("Wang" in line or "mac" in line for line in lines)  # no subject, no MACs
    assert len(lines) == 7


async def test_twin_changes_status_alarms_and_health(tmp_path: Path) -> None:
    async def body(h: TelemetryHandler, actions: RecordingActions) -> None:
        await h.on_twin_change(TwinChange("s1", "tag-9", "rfid_tag", 3, 5.0,
                                          {"position": {"x": 100.0, "y": 0.0}, "rssi": -61.0, "reader": "r1"},
                                          {}, {}, {"position": {"x": 100.0, "y": 0.0}}), actions)  # fmt: skip
        await h.on_twin_change(TwinChange("s1", "door-1", "door_lock", 3, 6.0, {"lock": "unlocked"}, {}, {},
                                          {"lock": "unlocked"}), actions)  # fmt: skip
        h.record_status("s1", "cam-1", "camera", 7.0, online=True)
        h.record_status("s1", "cam-1", "camera", 8.0, online=False)
        h.record_status("s1", "cam-1", "camera", 9.0, online=True)
        h.record_alarm("s1", "a1", "r-fence", "geofence_exit", "high", "raised", 10.0)
        h.record_alarm("s1", "a2", "r-door", "door_forced", "critical", "raised", 11.0)
        h.record_alarm("s1", "a1", "r-fence", "geofence_exit", "high", "cleared", 12.0)
        h.record_health(13.0, {"msgs_in": 10.0, "queue_depth": 2.0})

    lines = await _run(tmp_path, body)
    tag = lines[0]
    assert tag.startswith("tag_position,site=s1,tag=tag-9,tag_group=child ")
    lon = float(tag.split("lon=")[1].split(",")[0].split(" ")[0])
    assert abs(lon - (120.0 + 100 / (111_195 * 0.866))) < 1e-5
    assert lines[1] == "twin_state,device=door-1,kind=door_lock,site=s1 lock_unlocked=1i 6000000000"
    assert [ln.split(" ")[1] for ln in lines[2:5]] == ["online=1i,reconnect=0i", "online=0i,reconnect=0i",
                                                       "online=1i,reconnect=1i"]  # fmt: skip
    assert ["active_total=" + ln.split("active_total=")[1].split(",")[0] for ln in lines[5:8]] == [
        "active_total=1i", "active_total=2i", "active_total=1i"]  # fmt: skip
    assert lines[8].startswith("platform_health,site=s1,worker=platform msgs_in=10.0,queue_depth=2.0,telemetry_")
