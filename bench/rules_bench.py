"""Rules-engine throughput with 10, 100 and 1,000 rules loaded.

Most rules cannot match the benchmark events (other event types, other devices, twin fields,
telemetry metrics, zones); three always match. The engine's trigger index should keep the cost
per event flat. Run from the repo root: ``python -m bench.rules_bench [--events N] [--runs N]
[--out FILE]``; writes ``bench/results/rules.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rules.engine import RulesEngine
from rules.loader import load_rule_docs
from rules.site import SitePlan, load_site_plan
from rules.yamlmarks import load_marked
from twins.hooks import CommandResult, DeviceEvent

SITE = Path(__file__).parents[1] / "rules" / "builtin" / "tests" / "site.yaml"
OUT = Path(__file__).parent / "results" / "rules.json"
SIZES = (10, 100, 1000)
EVENTS = 3000
RUNS = 7

MATCHING = """
  - id: m-forced
    when: [{event: {type: door_forced, kind: door_lock}}]
    then: [{audit: {message: "forced {{ device.id }}"}}]
  - id: m-opened-by-access
    when: [{event: {type: door_opened, kind: door_lock, where: "event.data.by == 'access'"}}]
    if: "not time.night or subject.role != ''"
    then: [{audit: {message: "{{ subject.id }} passed {{ device.name }}"}}]
  - id: m-any-door
    when: [{event: {type: door_opened, device: door-b1-u1}}]
    then: [{audit: {message: "door {{ event.data.by }}"}}]
"""

FILLERS = [
    "  - id: f{i}\n    when: [{{event: {{type: door_opened, device: door-x{i}}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
    "  - id: f{i}\n    when: [{{event: {{type: plate_captured, kind: vehicle_gate}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
    "  - id: f{i}\n    when: [{{twin: {{kind: door_lock, field: lock, to: unlocked, device: door-x{i}}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
    "  - id: f{i}\n    when: [{{threshold: {{metric: temperature, above: {i}, hysteresis: 1}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
    "  - id: f{i}\n    when: [{{zone: {{zone: kindergarten, on: enter, tag: tag-x{i}}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
    "  - id: f{i}\n    when: [{{event: {{type: face_captured, device: door-x{i},"
    " where: 'event.data.liveness < 0.5'}}}}]\n"
    "    then: [{{audit: {{message: x}}}}]\n",
]


class NullActions:
    """PlatformActions that do nothing (we measure the engine, not the platform)."""

    def __init__(self) -> None:
        self.clock = 1_793_584_800.0

    def now(self) -> float:
        return self.clock

    async def set_desired(self, device_id: str, patch: dict[str, Any]) -> int:
        return 1

    async def send_command(
        self, device_id: str, name: str, args: dict[str, Any], timeout: float = 10.0
    ) -> CommandResult:
        return CommandResult("x", True, {}, None)

    async def publish(self, topic: str, payload: dict[str, Any] | str, *, retain: bool = False, qos: int = 1) -> None:
        return None

    async def report_virtual(self, device_id: str, state: dict[str, Any]) -> None:
        return None


def rule_text(n: int) -> str:
    fillers = "".join(FILLERS[i % len(FILLERS)].format(i=i) for i in range(n - 3))
    return "rules:\n" + MATCHING + fillers


def build(n: int, site: SitePlan) -> tuple[RulesEngine, float]:
    t = time.perf_counter()
    result = load_rule_docs(load_marked(rule_text(n)), "bench.yaml", None)
    load_s = time.perf_counter() - t
    if result.diagnostics or len(result.rules) != n:
        raise SystemExit(f"bench rules invalid: {[d.format() for d in result.diagnostics][:3]}")
    return RulesEngine(result.rules, site), load_s


def events(k: int) -> list[DeviceEvent]:
    out = []
    for i in range(k):
        if i % 3 == 0:
            out.append(DeviceEvent("testsite", "door-b1-u1", "door_lock", "door_forced", f"e{i}", 0.0, {}))
        else:
            data = {"by": "access", "subject": "p0001"} if i % 3 == 1 else {"by": "exit_button"}
            out.append(DeviceEvent("testsite", "door-b1-u1", "door_lock", "door_opened", f"e{i}", 0.0, data))
    return out


async def run_once(engine: RulesEngine, evs: list[DeviceEvent]) -> float:
    acts = NullActions()
    t = time.perf_counter()
    for ev in evs:
        acts.clock += 0.01
        await engine.on_event(ev, acts)
    return len(evs) / (time.perf_counter() - t)


async def main(n_events: int = EVENTS, n_runs: int = RUNS) -> dict[str, Any]:
    """Measure every size, interleaved; the result document."""
    site = load_site_plan(SITE)
    evs = events(n_events)
    engines: dict[int, RulesEngine] = {}
    loads: dict[int, float] = {}
    for n in SIZES:
        engines[n], loads[n] = build(n, site)
        await run_once(engines[n], evs[:200])  # warm-up
    # interleave the sizes run by run, so a noisy neighbour on the box hits them all alike
    rates: dict[int, list[float]] = {n: [] for n in SIZES}
    for _ in range(n_runs):
        for n in SIZES:
            rates[n].append(await run_once(engines[n], evs))
    for engine in engines.values():
        if engine.faults:
            raise SystemExit(f"rules disabled during the bench: {engine.faults}")
    rows: list[dict[str, Any]] = [
        {"rules": n, "events_per_s": statistics.median(rates[n]), "runs": rates[n], "load_s": loads[n]} for n in SIZES
    ]
    base = float(rows[0]["events_per_s"])
    for row in rows:
        row["cost_ratio_vs_10"] = base / row["events_per_s"]
    result = {
        "benchmark": "rules engine events/s (3 matching rules, the rest cannot match)",
        "events_per_run": n_events,
        "runs": n_runs,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "rows": rows,
        "flat_within_2x": all(r["cost_ratio_vs_10"] <= 2.0 for r in rows),
    }
    return result


def print_table(result: dict[str, Any]) -> None:
    print(f"{'rules':>6} {'events/s (median)':>18} {'cost vs 10':>11} {'load s':>8}")
    for r in result["rows"]:
        print(f"{r['rules']:>6} {r['events_per_s']:>18,.0f} {r['cost_ratio_vs_10']:>10.2f}x {r['load_s']:>8.3f}")
    print(f"flat within 2x: {result['flat_within_2x']}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=EVENTS, help="events per run")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--out", type=Path, default=OUT)
    cli = ap.parse_args()
    res = asyncio.run(main(cli.events, cli.runs))
    print_table(res)
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {cli.out}")
