"""Play the pilot community's behaviour model through the pure device firmware into a rules engine on a
simulated clock (no broker, no database): what the built-in rules make of a whole day.

The firmware turns each behaviour action into the messages a real device publishes (events, reported
twin patches, telemetry); they reach the engine as the platform would hand them over, with the
platform clock equal to the simulated clock (``skew`` shifts the platform clock from the devices')."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.behaviour import Action, BehaviourModel
from firmware_sim.community import Community, load_community
from firmware_sim.firmware import Firmware, Publish
from firmware_sim.runner import make_firmware
from registry.alarms import Alarm, InMemoryAlarmStore
from rules.engine import RulesEngine
from rules.loader import load_rules
from rules.recording import RecordingActions
from rules.site import SitePlan
from twins.hooks import DeviceEvent, TwinChange

ROOT = Path(__file__).resolve().parents[2]
PILOT = ROOT / "firmware_sim" / "communities" / "youzheng.yaml"
BUILTIN = ROOT / "rules" / "builtin"
SEED = 20260901


@dataclass
class DayPlayer:
    """The pilot's devices (pure firmware) feeding a rules engine on the simulated clock."""

    community: Community
    start: float
    skew: float = 0.0  # platform clock minus device clock
    max_event_skew: float = 300.0  # the engine's rules_event_skew_s
    engine: RulesEngine = field(init=False)
    actions: RecordingActions = field(init=False)
    store: InMemoryAlarmStore = field(init=False)
    played: int = 0

    def __post_init__(self) -> None:
        plan = SitePlan.from_community(self.community)
        loaded = load_rules(BUILTIN, plan)
        assert not loaded.diagnostics, loaded.diagnostics
        self.plan = plan
        self.store = InMemoryAlarmStore()
        self.actions = RecordingActions(clock=self.start + self.skew, command_results={"track": {"ok": True}})
        self.engine = RulesEngine(
            loaded.rules,
            plan,
            actions=self.actions,
            alarm_store=self.store,
            trace_size=500_000,
            max_event_skew=self.max_event_skew,
        )
        self.fw: dict[str, Firmware] = {
            d.id: make_firmware(d, self.start, wall_ms=1) for d in self.community.devices if _simulated(d.kind)
        }
        self.kinds = {d.id: d.kind for d in self.community.devices}
        self.reported: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self._fw_timers: list[tuple[float, str]] = []
        self.engine.start(self.actions.clock)

    @classmethod
    async def pilot(cls, start: float, skew: float = 0.0, max_event_skew: float = 300.0) -> DayPlayer:
        """The committed pilot community, every device announcing its state at ``start``."""
        player = cls(load_community(PILOT), start, skew, max_event_skew)
        for dev_id, fw in player.fw.items():
            await player._deliver(dev_id, fw.on_connect(start))
        return player

    def model_actions(self, start: float, end: float) -> list[Action]:
        """The behaviour model's actions of the window (the pilot's seed)."""
        return list(BehaviourModel(self.community, SEED).actions(start, end))

    async def advance(self, to: float) -> None:
        """Fire the firmware's and the engine's timers due up to device time ``to``."""
        while True:
            fw_due = self._fw_timers[0][0] if self._fw_timers else None
            rule_due = self.engine.next_due()
            rule_due = None if rule_due is None else rule_due - self.skew
            due = min((d for d in (fw_due, rule_due) if d is not None), default=None)
            if due is None or due > to:
                break
            if fw_due is not None and fw_due == due:
                _, dev_id = heapq.heappop(self._fw_timers)
                await self._deliver(dev_id, self.fw[dev_id].tick(due))
            else:
                self.actions.clock = max(self.actions.clock, due + self.skew)
                await self.engine.tick(self.actions.clock, self.actions)
        self.actions.clock = max(self.actions.clock, to + self.skew)
        await self.engine.tick(self.actions.clock, self.actions)

    async def play(self, actions: list[Action], until: float | None = None) -> None:
        """Play actions in time order (and the timers between them), then run the clock to ``until``."""
        for action in actions:
            await self.advance(action.ts)
            await self.stimulate(action.device_id, action.suffix, action.payload, action.ts)
        if until is not None:
            await self.advance(until)

    async def stimulate(self, device_id: str, suffix: str, payload: dict[str, Any], ts: float) -> None:
        """Something physical happened at a device at device time ``ts``."""
        fw = self.fw.get(device_id)
        if fw is None:
            return
        await self._deliver(device_id, fw.stimulate(suffix, payload, ts))
        self.played += 1

    async def _deliver(self, device_id: str, outputs: list[Any]) -> None:
        fw = self.fw[device_id]
        if (due := fw.next_due()) is not None and (due, device_id) not in self._fw_timers:
            heapq.heappush(self._fw_timers, (due, device_id))
        kind = self.kinds[device_id]
        site = self.plan.site
        for out in outputs:
            if not isinstance(out, Publish) or not isinstance(out.payload, dict):
                continue
            doc = out.payload
            ts = float(doc.get("ts", self.actions.clock - self.skew))
            if out.suffix.startswith("events/"):
                event = DeviceEvent(site, device_id, kind, out.suffix[7:], str(doc["id"]), ts, dict(doc["data"]))
                await self.engine.on_event(event, self.actions)
            elif out.suffix == "telemetry":
                await self.engine.on_telemetry(device_id, kind, dict(doc["metrics"]), self.actions)
            elif out.suffix == "twin/reported":
                prev = dict(self.reported.get(device_id, {}))
                patch = dict(doc["state"])
                now = {**prev, **patch}
                changed = {k: v for k, v in patch.items() if prev.get(k) != v}
                if not changed:
                    continue
                self.reported[device_id] = now
                self.versions[device_id] = self.versions.get(device_id, 0) + 1
                change = TwinChange(site, device_id, kind, self.versions[device_id], ts, now, prev, {}, changed)
                await self.engine.on_twin_change(change, self.actions)

    async def status(self, device_id: str, status: str) -> None:
        """The device's status topic changed (its last will, or it is back)."""
        await self.engine.on_status(device_id, self.kinds[device_id], status, self.actions)

    async def alarms(self) -> list[Alarm]:
        """Every alarm raised so far."""
        return await self.store.list(limit=100_000)


def _simulated(kind: str) -> bool:
    return kind not in ("platform", "rfid_tag")


def describe(alarms: list[Alarm]) -> list[str]:
    """One line per alarm, for assertion messages."""
    return [f"{a.rule_id} {a.subject}: {a.message}" for a in alarms]
