"""Routing rule evaluations to partition owners (rules.routing): pure properties, the classification of
the built-in rules, and the main property — N engines, each fed its partition's inputs and what the
others forward to it, fire exactly what one engine fed everything fires."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from anfang.partitions import partition_of
from registry.records import DeviceInfo
from rules.engine import RulesEngine
from rules.loader import load_rules
from rules.recording import RecordingActions
from rules.routing import Ownership, Scope, is_wide, owner_of, route_rule, rule_entity, wide_needs
from rules.site import load_site_plan
from rules.timers import InMemoryTimerStore, Timer
from rules.trace import Firing
from twins.hooks import DeviceEvent

ROOT = Path(__file__).parents[2]
SITE_FILE = ROOT / "rules" / "builtin" / "tests" / "site.yaml"

ids = st.text(alphabet="abcdefgh-0123456789", min_size=1, max_size=12)


@given(ids, st.integers(min_value=1, max_value=16))
def test_every_entity_has_exactly_one_owner(entity: str, partitions: int) -> None:
    owners = [p for p in range(partitions) if Ownership(p, partitions).owns(entity)]
    assert owners == [owner_of(entity, partitions)]
    assert 0 <= owners[0] < partitions


@given(ids, st.integers(min_value=1, max_value=16), st.booleans())
def test_a_device_entity_is_owned_by_its_partition(device_id: str, partitions: int, virtual: bool) -> None:
    device = DeviceInfo(device_id, "rfid_tag" if virtual else "door_lock", site="testsite")
    own = Ownership(0, partitions, {device_id} if virtual else set())
    assert own.owner(device_id) == partition_of(device, partitions)


def test_one_partition_owns_everything() -> None:
    assert Ownership().single and Ownership().owns("anything") and Ownership().owns(rule_entity("r"))


def test_builtin_rules_are_routed_by_what_their_state_is_keyed_on() -> None:
    site = load_site_plan(SITE_FILE)
    rules = {r.id: r for r in load_rules(ROOT / "rules" / "builtin", site).rules}
    route = {rid: route_rule([t.spec for t in r.triggers], r.raw, r.dedupe is not None) for rid, r in rules.items()}
    assert route["door-forced"].scopes == (Scope.SUBJECT,)
    assert route["low-battery"].scopes == (Scope.DEVICE, Scope.DEVICE)
    assert route["device-offline"].scopes == (Scope.DEVICE, Scope.SUBJECT)
    assert route["elderly-not-seen"].scopes == (Scope.SUBJECT,)
    assert route["elderly-left-fence"].scopes == (Scope.SUBJECT,)
    assert route["repeated-denials"].scopes == (Scope.RULE,)  # group_by (and dedupe) keys on an expression
    kindergarten = route["child-left-kindergarten"]  # guardian_nearby reads other tags' positions
    assert kindergarten.needs == {"tags"} and kindergarten.scopes == (Scope.RULE,)  # every tag sighting
    assert not any(r.wide for rid, r in route.items() if rid != "child-left-kindergarten")


def test_wide_calls_are_those_reading_other_entities() -> None:
    assert is_wide({"if": "twin_of('door-b1-u2').door == 'open'"})
    assert is_wide({"if": "online('door-b1-u2')"})
    assert is_wide({"if": "in_zone('community', 'tag-e001')"})
    assert not is_wide({"if": "in_zone('community')"})
    assert not is_wide({"if": "not in_maintenance()"})
    assert is_wide({"if": "in_maintenance('door-b1-u2')"})
    assert not is_wide({"if": "device.online and twin.door != 'closed'"})
    assert wide_needs({"if": "twin_of('a').door == 'open' and online('b')"}) == {"twins", "all"}


PER_SUBJECT = """
rules:
  - id: denied-person
    description: A person denied three times within five minutes, at any doors.
    when:
      - event: {type: access_decided, kind: platform, where: "not event.data.allowed", count: 3, within: 5m}
    cooldown: 10m
    then:
      - raise_alarm: {kind: denied_person, severity: high}
"""

DOORS = ["door-b1-u1", "door-b1-u2", "gate-north"]
PEOPLE = ["p0001", "p0100", "p0201"]


def _rules(tmp: Path) -> list:  # type: ignore[type-arg]
    site = load_site_plan(SITE_FILE)
    (tmp / "per_subject.yaml").write_text(PER_SUBJECT)
    for name in ("repeated_denials.yaml", "door_forced.yaml", "low_battery.yaml"):
        (tmp / name).write_text((ROOT / "rules" / "builtin" / name).read_text())
    return load_rules(tmp, site).rules


Step = tuple[int, int, int, bool]  # kind of input, door, person, allowed


async def _run(rules: list, steps: list[Step], partitions: int) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    """Fire the steps through ``partitions`` engines; returns the (rule, subject) of every firing."""
    fired: list[tuple[str, str]] = []

    def seen(firing: Firing) -> None:
        fired.append((firing.rule_id, firing.subject))

    acts = RecordingActions(clock=1_800_000_000.0)
    engines = [
        RulesEngine(rules, load_site_plan(SITE_FILE), actions=acts, observer=seen, ownership=Ownership(p, partitions))
        for p in range(partitions)
    ]
    for n, (what, door, person, allowed) in enumerate(steps):
        acts.clock += 20
        device = DOORS[door]
        if what == 0:
            data = {"device": device, "allowed": allowed, "subject": PEOPLE[person]}
            event = DeviceEvent("testsite", device, "platform", "access_decided", f"e{n}", acts.clock, data)
        elif what == 1:
            event = DeviceEvent("testsite", device, "door_lock", "door_forced", f"e{n}", acts.clock, {})
        else:
            data = {"battery": 10.0 if allowed else 90.0}
            event = DeviceEvent("testsite", device, "door_lock", "telemetry", f"e{n}", acts.clock, data)
        owner = engines[owner_of(device, partitions)]
        targets = owner.forward_targets(event)
        for engine in [owner, *(engines[t] for t in sorted(targets))]:
            if event.type == "telemetry":
                await engine.on_telemetry(device, event.kind, event.data, acts)
            else:
                await engine.on_event(event, acts)
    return sorted(fired)


steps_strategy = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, len(DOORS) - 1), st.integers(0, len(PEOPLE) - 1), st.booleans()),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(steps_strategy, st.integers(min_value=2, max_value=4))
def test_partitioned_engines_fire_what_one_engine_fires(tmp_path_factory, steps: list[Step], partitions: int) -> None:  # type: ignore[no-untyped-def]
    rules = _rules(tmp_path_factory.mktemp("rules"))
    one = asyncio.run(_run(rules, steps, 1))
    assert asyncio.run(_run(rules, steps, partitions)) == one


def test_a_persons_denials_at_doors_of_two_partitions_alarm_once(tmp_path: Path) -> None:
    rules = _rules(tmp_path)
    # the premise: two doors of two partitions, the person's state with a third
    assert [owner_of(x, 3) for x in ("door-b1-u1", "gate-north", "p0100")] == [1, 0, 2]
    steps: list[Step] = [(0, 0, 1, False), (0, 2, 1, False), (0, 0, 1, False), (0, 2, 1, False)]
    fired = asyncio.run(_run(rules, steps, 3))
    assert fired == [("denied-person", "p0100")]


def test_an_engine_keeps_only_the_state_of_what_its_partition_owns(tmp_path: Path) -> None:
    """A store shared by engines of three partitions (as after ``workers.partitions`` changed): each keeps
    the timers and cooldowns of its own entities at start, and arms silences only for its own devices."""
    (tmp_path / "device_offline.yaml").write_text((ROOT / "rules" / "builtin" / "device_offline.yaml").read_text())
    rules = _rules(tmp_path)
    by_id = {r.id: r for r in rules}
    store = InMemoryTimerStore()
    forced, denied = by_id["door-forced"], by_id["denied-person"]
    for door in DOORS:
        store.save(Timer(f"memo|cool|door-forced|{door}", "door-forced", forced.hash, "memo", 0.0, state="memo",
                         context={"value": 1_800_000_000.0}))  # fmt: skip
    store.save(Timer("memo|count|denied-person|0|p0100", "denied-person", denied.hash, "memo", 0.0, state="memo",
                     context={"value": [1_800_000_000.0]}))  # fmt: skip
    for part in range(3):
        engine = RulesEngine(rules, load_site_plan(SITE_FILE), timer_store=_Copy(store), ownership=Ownership(part, 3))
        engine.start(1_800_000_010.0)
        watched = {d for clock in engine.timers.clocks() for d in clock}
        assert watched and all(owner_of(d, 3) == part for d in watched)  # silences of its own devices only
        kept = {t.key for t in engine.timers if t.kind != "silence"}
        assert kept == {f"memo|cool|door-forced|{d}" for d in DOORS if owner_of(d, 3) == part} | (
            {"memo|count|denied-person|0|p0100"} if owner_of("p0100", 3) == part else set()
        )


class _Copy(InMemoryTimerStore):
    """Each engine's own view of the same stored timers."""

    def __init__(self, source: InMemoryTimerStore) -> None:
        super().__init__()
        self.timers = dict(source.timers)
