"""The pilot community file and the generator behind it."""

from __future__ import annotations

import collections
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon
from typer.testing import CliRunner

from firmware_sim.cli import app
from firmware_sim.community import Community, bundled_community_path, load_community
from firmware_sim.generator import YOUZHENG, Params, dump_yaml, generate
from firmware_sim.identity import is_valid_id_number, is_valid_plate

YOUZHENG_FILE = bundled_community_path("youzheng")


def test_pilot_community_has_what_the_pilot_has(youzheng: Community) -> None:
    c = youzheng
    kinds = collections.Counter(d.kind for d in c.devices)
    assert c.site == "youzheng" and abs(c.origin.lat - 29.70) < 0.05 and abs(c.origin.lon - 115.99) < 0.05
    assert len(c.buildings) == 9 and len(c.households) == 206
    assert 540 <= len(c.people) <= 580
    assert kinds["vehicle_gate"] == 2 and kinds["camera"] == 6 and kinds["door_lock"] == 14
    assert kinds["ptz_tracker"] == 2 and kinds["mac_sniffer"] >= 2 and kinds["rfid_reader"] >= 10
    assert all(len(g.cameras) == 3 for g in c.devices_of("vehicle_gate"))
    roles = collections.Counter(p.role for p in c.people)
    assert {"owner", "family", "tenant", "elderly_alone", "child", "staff", "police"} <= set(roles)
    assert all(p.lease is not None for p in c.people if p.role == "tenant")
    assert all(p.tag is not None for p in c.people if p.role in ("elderly_alone", "child"))
    assert all(is_valid_id_number(p.id_number) and p.id_number.startswith("360403") for p in c.people)
    assert all(len(p.phone) == 11 for p in c.people)
    plates = [v.plate for v in c.vehicles]
    assert all(is_valid_plate(p) for p in plates) and len(set(plates)) == len(plates)
    assert any(len(p) == 8 for p in plates) and any(len(p) == 7 for p in plates)
    zones = {z.kind for z in c.zones}
    assert {"fence", "kindergarten"} <= zones


def test_rfid_readers_cover_perimeter_and_kindergarten(youzheng: Community) -> None:
    fence = Polygon(youzheng.zone("community").polygon)
    kg = Polygon(youzheng.zone("kindergarten").polygon)
    readers = [Point(r.position) for r in youzheng.devices_of("rfid_reader")]
    assert sum(1 for r in readers if fence.exterior.distance(r) < 1.0) >= 8
    # in the kindergarten's yard (not on its corners): a child playing there is estimated inside
    assert sum(1 for r in readers if kg.contains(r) and kg.exterior.distance(r) >= 10.0) >= 4
    for gate in youzheng.devices_of("vehicle_gate"):  # so that a tag walking out is estimated outside
        outside = [
            r
            for r in readers
            if not fence.covers(r) and 15 <= fence.exterior.distance(r) <= 25 and r.distance(Point(gate.position)) <= 35
        ]
        assert len(outside) >= 2, gate.id


def test_committed_file_is_the_generators_output() -> None:
    assert load_community(YOUZHENG_FILE) == generate(YOUZHENG)


def test_cli_generate_is_deterministic(tmp_path: Path) -> None:
    runner = CliRunner()
    outs = []
    for name in ("a.yaml", "b.yaml"):
        r = runner.invoke(
            app, ["generate", "--buildings", "3", "--households", "40", "--seed", "5", "--out", str(tmp_path / name)]
        )
        assert r.exit_code == 0, r.output
        outs.append((tmp_path / name).read_text())
    assert outs[0] == outs[1]
    c = load_community(tmp_path / "a.yaml")
    assert len(c.buildings) == 3 and len(c.households) == 40


def test_cli_preset_reproduces_the_pilot_file(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["generate", "--preset", "youzheng", "--out", str(tmp_path / "y.yaml")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "y.yaml").read_text() == YOUZHENG_FILE.read_text()


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 12), st.integers(5, 150), st.integers(0, 10**6))
def test_any_size_generates_a_consistent_community(buildings: int, households: int, seed: int) -> None:
    c = generate(Params(buildings=buildings, households=households, seed=seed))
    assert len(c.buildings) == buildings and len(c.households) == households
    doors = {(d.building, d.unit) for d in c.devices_of("door_lock")}
    assert all((h.building, h.unit) in doors for h in c.households)
    assert c == generate(Params(buildings=buildings, households=households, seed=seed))
    assert dump_yaml(c)
