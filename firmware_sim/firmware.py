"""Pure device firmware state machines, one class per device kind.

A firmware object never touches a socket or a clock: the IO adapter (:mod:`firmware_sim.device`)
passes in incoming messages and the simulated time, and publishes the :class:`Publish` outputs it
gets back.  Delayed physical effects (a barrier arm travelling, a door relocking) are timers that
the adapter fires through :meth:`Firmware.tick`.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from firmware_sim.edge_access import EdgeDoor

log = logging.getLogger(__name__)

BARRIER_TRAVEL_S = 2.0
PTZ_TRAVEL_S = 0.5
REBOOT_S = 5.0


@dataclass(frozen=True, slots=True)
class Publish:
    """Publish ``payload`` on ``anfang/{site}/{device}/{suffix}``."""

    suffix: str
    payload: dict[str, Any] | str | bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class Reboot:
    """Ask the adapter to drop the connection and come back after ``seconds`` (simulated)."""

    seconds: float


Output = Publish | Reboot


@dataclass(order=True, slots=True)
class _Timer:
    due: float
    order: int
    action: str = field(compare=False)
    args: dict[str, Any] = field(compare=False, default_factory=dict)


class Firmware:
    """Behaviour shared by all kinds: twin sync, commands, events, telemetry, timers."""

    kind: ClassVar[str] = ""
    initial: ClassVar[dict[str, Any]] = {}
    desired_fields: ClassVar[frozenset[str]] = frozenset()
    commands: ClassVar[frozenset[str]] = frozenset({"reboot"})

    def __init__(
        self, device_id: str, *, seq_start: int, boot_ts: float, new_id: Callable[[], str] | None = None
    ) -> None:
        self.device_id = device_id
        self.seq = seq_start
        self.boot_ts = boot_ts
        self.reported: dict[str, Any] = json.loads(json.dumps(self.initial))
        self.desired: dict[str, Any] = {}
        self.desired_version = -1
        self.errors: list[dict[str, Any]] = []
        self._timers: list[_Timer] = []
        self._timer_order = 0
        self._new_id = new_id or (lambda: uuid.uuid4().hex)

    # --- outputs -----------------------------------------------------------------------------
    def report(self, patch: dict[str, Any], now: float) -> Publish:
        """Apply ``patch`` to reported state and return the ``twin/reported`` message."""
        self.reported.update(patch)
        self.seq += 1
        return Publish("twin/reported", {"seq": self.seq, "ts": now, "state": patch})

    def event(self, type_: str, data: dict[str, Any], now: float) -> Publish:
        """An ``events/{type}`` message with a fresh unique id."""
        return Publish(f"events/{type_}", {"id": self._new_id(), "ts": now, "data": data})

    def telemetry(self, now: float, rssi: float = -58.0) -> Publish:
        """A QoS 0 telemetry sample; battery drains slowly, temperature follows the day."""
        uptime = max(0.0, now - self.boot_ts)
        battery = max(0.0, 100.0 - uptime / 3600.0 * 0.05)
        temperature = 20.0 + 6.0 * math.sin((now % 86400.0) / 86400.0 * 2 * math.pi - math.pi / 2)
        metrics = {
            "battery": round(battery, 2),
            "rssi": round(rssi, 1),
            "temperature": round(temperature, 2),
            "uptime": round(uptime, 1),
        }
        return Publish("telemetry", {"ts": now, "metrics": metrics}, qos=0)

    def stimulate(self, suffix: str, payload: dict[str, Any], now: float) -> list[Output]:
        """Apply a behaviour-model action (something physical happened at the device).

        Keys starting with ``_`` are simulator-only hints (e.g. ``_credential``, the identity the
        terminal's local recogniser would find) and are never published.
        """
        if suffix == "telemetry":
            return [self.telemetry(now, float(payload.get("rssi", -58.0)))]
        if suffix == "twin/reported":
            return [self.report(dict(payload), now)]
        if suffix.startswith("events/"):
            return self.physical_event(suffix[len("events/") :], payload, now)
        raise ValueError(f"{self.device_id}: cannot simulate {suffix!r}")

    def physical_event(self, type_: str, data: dict[str, Any], now: float) -> list[Output]:
        """Emit an event; kinds with local reactions override this."""
        return [self.event(type_, public(data), now)]

    def on_connect(self, now: float) -> list[Output]:
        """On (re)connection: announce the full reported state."""
        return [self.report(dict(self.reported), now)]

    # --- timers ------------------------------------------------------------------------------
    def schedule(self, due: float, action: str, **args: Any) -> None:
        """Run ``action`` (a method ``_timer_{action}``) at simulated time ``due``."""
        self._timer_order += 1
        heapq.heappush(self._timers, _Timer(due, self._timer_order, action, args))

    def cancel(self, action: str) -> None:
        """Drop pending timers of one action."""
        self._timers = [t for t in self._timers if t.action != action]
        heapq.heapify(self._timers)

    def next_due(self) -> float | None:
        """When the next timer fires, or None."""
        return self._timers[0].due if self._timers else None

    def tick(self, now: float) -> list[Output]:
        """Fire every timer due at or before ``now``."""
        out: list[Output] = []
        while self._timers and self._timers[0].due <= now:
            t = heapq.heappop(self._timers)
            out += getattr(self, f"_timer_{t.action}")(t.due, **t.args)
        return out

    # --- incoming ----------------------------------------------------------------------------
    def on_message(self, suffix: str, payload: bytes, now: float) -> list[Output]:
        """Handle a message on one of the device's own topics."""
        if suffix not in ("twin/desired", "twin/delta", "errors") and not suffix.startswith("cmd/"):
            return []
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("%s: unparseable message on %s", self.device_id, suffix)
            return []
        if not isinstance(doc, dict):
            return []
        if suffix == "twin/desired":
            return self._on_desired(doc, full=True, now=now)
        if suffix == "twin/delta":
            return self._on_desired(doc, full=False, now=now)
        if suffix == "errors":
            self.errors.append(doc)
            log.info("%s: platform rejected %s: %s", self.device_id, doc.get("topic"), doc.get("message"))
            return []
        if suffix.startswith("cmd/") and not suffix.endswith("/result"):
            return self._on_command(suffix[4:], doc, now)
        return []

    def _on_desired(self, doc: dict[str, Any], *, full: bool, now: float) -> list[Output]:
        version = doc.get("version")
        state = doc.get("desired" if full else "delta")
        if not isinstance(version, int) or not isinstance(state, dict):
            return []
        if version < self.desired_version or (full and version == self.desired_version):
            return []
        self.desired_version = version
        if full:
            self.desired = dict(state)
        else:
            self.desired.update(state)
        out: list[Output] = []
        patch: dict[str, Any] = {}
        for key, value in state.items():
            if key not in self.desired_fields:
                continue
            out += self.apply_desired(key, value, now, patch)
        if patch:
            out.append(self.report(patch, now))
        return out

    def apply_desired(self, key: str, value: Any, now: float, patch: dict[str, Any]) -> list[Output]:
        """Apply one desired field; immediate state changes go into ``patch``."""
        if self.reported.get(key) != value:
            patch[key] = value
        return []

    def _on_command(self, name: str, doc: dict[str, Any], now: float) -> list[Output]:
        cid = doc.get("id")
        args = doc.get("args") if isinstance(doc.get("args"), dict) else {}
        assert isinstance(args, dict)
        out: list[Output] = []
        if name not in self.commands:
            error = f"unknown command {name!r}"
            result: dict[str, Any] = {"id": cid, "ok": False, "result": {}, "error": error}
            return [Publish(f"cmd/{name}/result", result)]
        try:
            res, extra = self.run_command(name, args, now)
        except (ValueError, TypeError, KeyError) as exc:
            return [Publish(f"cmd/{name}/result", {"id": cid, "ok": False, "result": {}, "error": str(exc)})]
        out.append(Publish(f"cmd/{name}/result", {"id": cid, "ok": True, "result": res, "error": None}))
        return out + extra

    def run_command(self, name: str, args: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Output]]:
        """Execute a known command; raise ValueError on bad arguments."""
        if name == "reboot":
            self.cancel("relock")
            return {"rebooting": True, "seconds": REBOOT_S}, [Reboot(REBOOT_S)]
        raise ValueError(f"unsupported command {name}")


def public(data: dict[str, Any]) -> dict[str, Any]:
    """Event data without simulator-only ``_`` keys."""
    return {k: v for k, v in data.items() if not k.startswith("_")}


class VehicleGate(Firmware):
    """A barrier arm with its capture cameras; the arm takes ``BARRIER_TRAVEL_S`` to move."""

    kind = "vehicle_gate"
    initial: ClassVar[dict[str, Any]] = {
        "barrier": "down",
        "mode": "auto",
        "open_seconds": 8,
        "access_mode": "central",
        "allow_list_version": 0,
        "cameras": {},
    }
    desired_fields = frozenset({"barrier", "mode", "open_seconds", "access_mode", "allow_list"})
    commands = frozenset({"reboot", "open"})

    def __init__(
        self, device_id: str, *, cameras: list[str] | None = None, edge_key: bytes | None = None, **kw: Any
    ) -> None:
        """``edge_key``: the door key issued at provisioning (opens sealed allow-lists in edge mode)."""
        super().__init__(device_id, **kw)
        self.reported["cameras"] = {c: {"online": True} for c in cameras or []}
        self.edge = EdgeDoor(edge_key)

    def apply_desired(self, key: str, value: Any, now: float, patch: dict[str, Any]) -> list[Output]:
        if key == "barrier":
            return self._move(value, now, by="platform") if self.reported["barrier"] != value else []
        if key == "allow_list":
            if isinstance(value, dict) and value.get("version") != self.reported.get("allow_list_version"):
                patch["allow_list_version"] = value.get("version")
            return []
        return super().apply_desired(key, value, now, patch)

    def _move(self, target: str, now: float, by: str) -> list[Output]:
        self.cancel("arrive")
        self.schedule(now + BARRIER_TRAVEL_S, "arrive", target=target, by=by)
        return [self.report({"barrier": "moving"}, now)]

    def _timer_arrive(self, now: float, target: str, by: str) -> list[Output]:
        out: list[Output] = [self.report({"barrier": target}, now)]
        out.append(
            self.event(
                "barrier_opened" if target == "up" else "barrier_closed", {"by": by} if target == "up" else {}, now
            )
        )
        if target == "up" and self.reported.get("mode") == "auto" and by != "platform":
            self.schedule(now + float(self.reported.get("open_seconds", 8)), "close")
        return out

    def _timer_close(self, now: float) -> list[Output]:
        return self._move("down", now, by="auto") if self.reported.get("mode") != "hold_open" else []

    def run_command(self, name: str, args: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Output]]:
        if name == "open":
            seconds = float(args.get("seconds", self.reported.get("open_seconds", 8)))
            if seconds <= 0 or seconds > 600:
                raise ValueError("seconds must be in (0, 600]")
            self.cancel("close")
            out = self._move("up", now, by=str(args.get("subject") or args.get("reason") or "command"))
            self.schedule(now + BARRIER_TRAVEL_S + seconds, "close")
            return {"barrier": "moving", "open_seconds": seconds}, out
        return super().run_command(name, args, now)

    def physical_event(self, type_: str, data: dict[str, Any], now: float) -> list[Output]:
        if type_ == "plate_captured":
            return self.capture_plate(
                str(data.get("camera", "")),
                str(data.get("direction", "in")),
                data.get("plate"),
                float(data.get("confidence", 0.9)),
                now,
            )
        if type_ == "qr_scanned" and self.reported.get("access_mode") == "edge":
            return [self.event(type_, public(data), now), *self._edge("qr", str(data.get("payload")), now)]
        return super().physical_event(type_, data, now)

    def capture_plate(
        self, camera: str, direction: str, plate: str | None, confidence: float, now: float
    ) -> list[Output]:
        """A vehicle in front of a capture camera."""
        data: dict[str, Any] = {"camera": camera, "direction": direction, "confidence": round(confidence, 3)}
        if plate is not None:
            data["plate"] = plate
        out: list[Output] = [self.event("plate_captured", data, now)]
        if self.reported.get("access_mode") == "edge" and plate is not None:
            out += self._edge("plate", plate, now)
        return out

    def _edge(self, kind: str, credential: str, now: float) -> list[Output]:
        d, locks = self.edge.decide(self.desired.get("allow_list"), kind, credential, now)
        out: list[Output] = [self.event("access_decided", d.as_event(), now)]
        out += [self.event("access_lockout", lock.as_event(), now) for lock in locks]
        if d.allowed:
            _, extra = self.run_command("open", {"subject": d.subject}, now)
            out += extra
        return out


class DoorLock(Firmware):
    """A unit-door face terminal with 3D liveness and an electric lock that relocks after its hold time."""

    kind = "door_lock"
    initial: ClassVar[dict[str, Any]] = {
        "lock": "locked",
        "door": "closed",
        "hold_seconds": 5,
        "access_mode": "central",
        "allow_list_version": 0,
        "liveness_threshold": 0.8,
    }
    desired_fields = frozenset({"lock", "hold_seconds", "access_mode", "liveness_threshold", "allow_list"})
    commands = frozenset({"reboot", "open"})

    def __init__(self, device_id: str, *, edge_key: bytes | None = None, **kw: Any) -> None:
        """``edge_key``: the door key issued at provisioning (opens sealed allow-lists in edge mode)."""
        super().__init__(device_id, **kw)
        self.edge = EdgeDoor(edge_key)

    def apply_desired(self, key: str, value: Any, now: float, patch: dict[str, Any]) -> list[Output]:
        if key == "allow_list":
            if isinstance(value, dict) and value.get("version") != self.reported.get("allow_list_version"):
                patch["allow_list_version"] = value.get("version")
            return []
        if key == "lock" and value == "locked":
            self.cancel("relock")
        return super().apply_desired(key, value, now, patch)

    def _open(self, by: str, subject: str | None, seconds: float, now: float) -> list[Output]:
        self.cancel("relock")
        self.cancel("close_door")
        data: dict[str, Any] = {"by": by}
        if subject:
            data["subject"] = subject
        out: list[Output] = [
            self.report({"lock": "unlocked", "door": "open"}, now),
            self.event("door_opened", data, now),
        ]
        self.schedule(now + seconds, "relock")
        return out

    def _timer_relock(self, now: float) -> list[Output]:
        if self.desired.get("lock") == "unlocked":
            return [self.report({"door": "closed"}, now)]
        return [self.report({"door": "closed", "lock": "locked"}, now)]

    def _timer_close_door(self, now: float) -> list[Output]:
        return [self.report({"door": "closed"}, now)]

    def run_command(self, name: str, args: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Output]]:
        if name == "open":
            seconds = float(args.get("seconds", self.reported.get("hold_seconds", 5)))
            if seconds <= 0 or seconds > 600:
                raise ValueError("seconds must be in (0, 600]")
            out = self._open("access", args.get("subject"), seconds, now)
            return {"lock": "unlocked", "hold_seconds": seconds}, out
        return super().run_command(name, args, now)

    # --- physical interactions driven by the behaviour model ------------------------------------
    def physical_event(self, type_: str, data: dict[str, Any], now: float) -> list[Output]:
        if type_ == "face_captured":
            return self.present(
                "face",
                str(data.get("_credential", "")),
                now,
                liveness=float(data.get("liveness", 0.97)),
                embedding=data.get("embedding"),
                image_jpeg_b64=data.get("image_jpeg_b64"),
            )
        simple = {"card_presented": ("card", "card"), "pin_entered": ("pin", "pin"), "qr_scanned": ("qr", "payload")}
        if type_ in simple:
            kind, key = simple[type_]
            return self.present(kind, str(data.get(key, "")), now)
        if type_ == "door_opened" and data.get("by") == "exit_button":
            return self.exit_button(now)
        if type_ == "door_forced":
            return self.force(now)
        return super().physical_event(type_, data, now)

    def present(
        self,
        kind: str,
        credential: str,
        now: float,
        *,
        liveness: float = 0.97,
        embedding: list[float] | None = None,
        image_jpeg_b64: str | None = None,
    ) -> list[Output]:
        """Someone presents a face / card / pin / QR code."""
        out: list[Output] = []
        if kind == "face":
            data: dict[str, Any] = {"liveness": round(liveness, 3)}
            if embedding is not None:
                data["embedding"] = embedding
            if image_jpeg_b64 is not None:
                data["image_jpeg_b64"] = image_jpeg_b64
            out.append(self.event("face_captured", data, now))
        elif kind == "card":
            out.append(self.event("card_presented", {"card": credential}, now))
        elif kind == "pin":
            # A door deciding itself never puts the typed PIN on the broker.
            edge = self.reported.get("access_mode") == "edge"
            out.append(self.event("pin_entered", {} if edge else {"pin": credential}, now))
        elif kind == "qr":
            out.append(self.event("qr_scanned", {"payload": credential}, now))
        else:
            raise ValueError(f"unknown credential kind {kind!r}")
        if self.reported.get("access_mode") == "edge":
            d, locks = self.edge.decide(
                self.desired.get("allow_list"),
                kind,
                credential,
                now,
                embedding=embedding,
                liveness=liveness,
                liveness_threshold=float(self.reported.get("liveness_threshold", 0.8)),
            )
            out.append(self.event("access_decided", d.as_event(), now))
            out += [self.event("access_lockout", lock.as_event(), now) for lock in locks]
            if d.allowed:
                out += self._open("access", d.subject, float(self.reported.get("hold_seconds", 5)), now)
        return out

    def exit_button(self, now: float) -> list[Output]:
        """A resident leaves with the exit button."""
        return self._open("exit_button", None, float(self.reported.get("hold_seconds", 5)), now)

    def force(self, now: float, open_seconds: float = 20.0) -> list[Output]:
        """The door is forced open while locked."""
        self.schedule(now + open_seconds, "close_door")
        return [self.report({"door": "open"}, now), self.event("door_forced", {}, now)]

    def held_open(self, seconds: float, now: float) -> list[Output]:
        """The door has been propped open for ``seconds``."""
        return [self.event("door_held_open", {"seconds": round(seconds, 1)}, now)]


class Camera(Firmware):
    """An HD capture camera."""

    kind = "camera"
    initial: ClassVar[dict[str, Any]] = {"recording": True, "fps": 25, "resolution": "1920x1080"}
    desired_fields = frozenset({"recording", "fps"})

    def motion(self, zone: str, now: float) -> list[Output]:
        """Motion detected in a zone of the picture."""
        return [self.event("motion", {"zone": zone}, now)]


class PtzTracker(Firmware):
    """A wide + PTZ tracker (灵瞳) that moves its head and tracks targets."""

    kind = "ptz_tracker"
    initial: ClassVar[dict[str, Any]] = {"pan": 0.0, "tilt": 0.0, "zoom": 1.0, "tracking": False, "target_id": None}
    desired_fields = frozenset({"pan", "tilt", "zoom", "tracking"})
    commands = frozenset({"reboot", "ptz_goto"})

    def apply_desired(self, key: str, value: Any, now: float, patch: dict[str, Any]) -> list[Output]:
        if key in ("pan", "tilt", "zoom"):
            self.schedule(now + PTZ_TRAVEL_S, "arrive", pose={key: float(value)})
            return []
        return super().apply_desired(key, value, now, patch)

    def _timer_arrive(self, now: float, pose: dict[str, float]) -> list[Output]:
        return [self.report(pose, now)]

    def run_command(self, name: str, args: dict[str, Any], now: float) -> tuple[dict[str, Any], list[Output]]:
        if name == "ptz_goto":
            pose = {k: float(args[k]) for k in ("pan", "tilt", "zoom") if k in args}
            if not pose:
                raise ValueError("ptz_goto needs pan, tilt or zoom")
            if not -180.0 <= pose.get("pan", 0.0) <= 180.0 or not -90.0 <= pose.get("tilt", 0.0) <= 90.0:
                raise ValueError("pan must be in [-180, 180], tilt in [-90, 90]")
            self.schedule(now + PTZ_TRAVEL_S, "arrive", pose=pose)
            return {"moving_to": pose}, []
        return super().run_command(name, args, now)

    def track(
        self, target_id: str, target_kind: str, x: float, y: float, confidence: float, now: float
    ) -> list[Output]:
        """The tracker follows a target on the site plan."""
        out: list[Output] = []
        if self.reported.get("target_id") != target_id:
            out.append(self.report({"tracking": True, "target_id": target_id}, now))
        out.append(
            self.event(
                "target_tracked",
                {
                    "target_id": target_id,
                    "target_kind": target_kind,
                    "x": round(x, 2),
                    "y": round(y, 2),
                    "confidence": round(confidence, 3),
                },
                now,
            )
        )
        return out


class MacSniffer(Firmware):
    """A WiFi probe sniffer."""

    kind = "mac_sniffer"
    initial: ClassVar[dict[str, Any]] = {"scanning": True, "channel": 6}
    desired_fields = frozenset({"scanning", "channel"})

    def seen(self, mac: str, rssi: float, randomized: bool, now: float) -> list[Output]:
        """A phone's probe request was heard."""
        if not self.reported.get("scanning", True):
            return []
        return [self.event("mac_seen", {"mac": mac, "rssi": round(rssi, 1), "randomized": randomized}, now)]


class RfidReader(Firmware):
    """An active-RFID reader on the perimeter."""

    kind = "rfid_reader"
    initial: ClassVar[dict[str, Any]] = {"scanning": True, "tx_power_dbm": 20.0}
    desired_fields = frozenset({"scanning", "tx_power_dbm"})

    def seen(self, tag: str, rssi: float, now: float) -> list[Output]:
        """A tag was heard."""
        if not self.reported.get("scanning", True):
            return []
        return [self.event("tag_seen", {"tag": tag, "rssi": round(rssi, 1)}, now)]


FIRMWARE: dict[str, type[Firmware]] = {
    cls.kind: cls for cls in (VehicleGate, DoorLock, Camera, PtzTracker, MacSniffer, RfidReader)
}
