"""One site model (issue 14 item 3): the plan is validated once (``twins.site``), kept in the registry by
``anfang site load``, and the registry, rules, access control, console and simulator read that model."""

from __future__ import annotations

import ast
import json
import stat
from pathlib import Path

import pytest
import yaml

from anfang.config import Settings
from anfang.site_cli import load_site, read_site
from anfang.site_setup import current_site, rules_plan
from firmware_sim.community import Community, bundled_community_path, load_community
from registry.sites import load_site_model
from twins.site import DeviceInfo, SiteError, SiteModel, load_site_file, site_from_mapping

ROOT = Path(__file__).resolve().parents[2]
PILOT = bundled_community_path("youzheng")
PLATFORM = ("anfang", "community", "registry", "rules", "twins", "telemetry", "vision", "privacy", "viewlib", "broker")


def test_there_is_one_device_info_type() -> None:
    defined = []
    for folder in (*PLATFORM, "firmware_sim"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and node.name == "DeviceInfo":
                    defined.append(str(path.relative_to(ROOT)))
    assert defined == ["twins/site.py"]


def test_the_pilot_file_is_one_site_model_and_the_simulator_extends_it() -> None:
    model = load_site_file(PILOT)
    community = load_community(PILOT)
    assert isinstance(community, SiteModel) and isinstance(community, Community)
    assert community.plan() == model, "the simulator's community is the site model plus roster and paths"
    assert model.fences() and model.entrances() and {d.kind for d in model.entrances()} == {"door_lock", "vehicle_gate"}
    assert "people" not in model.plan_document(), "the roster is personal data: never part of the stored model"
    infos = model.device_infos()
    door = next(d for d in model.devices if d.kind == "door_lock")
    assert infos[door.id] == DeviceInfo(door.id, "door_lock", door.building, door.unit, None, door.name, "youzheng",
                                        door.position)  # fmt: skip
    assert all(infos[t.id].virtual for t in model.tags)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"devices": [{"id": "cam-1", "kind": "camera", "gate": "gate-missing"}]}, "unknown gate"),
        ({"devices": [{"id": "d", "kind": "door_lock"}, {"id": "d", "kind": "door_lock"}]}, "duplicate device"),
        ({"zones": [{"id": "z", "kind": "moat", "polygon": [[0, 0], [1, 0], [1, 1]]}]}, "kind"),
        ({"households": [{"id": "h-1", "building": "b9"}]}, "unknown building"),
        ({"pickup_windows": [{"start": "25:00", "end": "26:00"}]}, "HH:MM"),
        ({"devices": [{"id": "d", "kind": "door_lock", "colour": "red"}]}, "colour"),
    ],
)
def test_an_inconsistent_site_file_is_refused_naming_what_is_wrong(change: dict[str, object], reason: str) -> None:
    doc: dict[str, object] = {"site": "s1", "buildings": [{"id": "b1"}], **change}
    with pytest.raises(SiteError) as err:
        site_from_mapping(doc, "plan.yaml")
    assert err.value.path == "plan.yaml" and reason in err.value.reason


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings.model_validate({"site": "youzheng", "data_dir": str(tmp_path / "data"), **extra})


async def test_site_load_keeps_the_model_in_the_registry_and_registers_devices_roster_and_secrets(
    tmp_path: Path,
) -> None:
    settings = _settings(tmp_path)
    rep = await load_site(settings, *read_site(PILOT), roster=True, secrets=True)
    model = load_site_file(PILOT)
    physical = [d for d in model.devices]
    assert rep.version == 1 and rep.devices_created == len(physical) + len(model.tags)
    assert set(rep.secrets) == {d.id for d in physical}, "every physical device gets a secret, tags none"
    assert rep.people == len(load_community(PILOT).people) and rep.vehicles > 0 and rep.watchlist == 0

    again = await load_site(settings, *read_site(PILOT), roster=True, secrets=False)
    assert again.version == 1 and again.devices_created == 0 and again.secrets == {}, "loading again changes nothing"

    from anfang.app import community_services, open_registry

    async with open_registry(settings) as (registry, _twins):
        stored = await load_site_model("youzheng")
        assert stored is not None and stored.model == model
        running = await current_site(settings, registry)
        assert running.model == model and running.source.startswith("registry")
        plan = await rules_plan(running, registry, community_services(settings).store)
    elderly = next(p for p in load_community(PILOT).people if p.tag and p.role == "elderly_alone")
    person = plan.people[elderly.id]
    assert person.name == elderly.name and person.tag == elderly.tag, "people come from the access registry"
    assert set(plan.devices) >= {d.id for d in physical}


async def test_a_configured_site_file_is_read_at_start_and_stored_a_registered_device_is_on_the_rules_plan(
    tmp_path: Path,
) -> None:
    plan_file = tmp_path / "plan.yaml"
    doc = {
        "site": "youzheng",
        "zones": [{"id": "fence", "kind": "fence", "polygon": [[0, 0], [100, 0], [100, 100], [0, 100]]}],
        "devices": [{"id": "gate-1", "kind": "vehicle_gate", "position": [50, 0]}],
    }
    plan_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    settings = _settings(tmp_path, community_file=str(plan_file))
    from anfang.app import community_services, open_registry

    async with open_registry(settings) as (registry, _twins):
        await registry.add_device("youzheng", "door-extra", "door_lock", "not in the file", None)
        running = await current_site(settings, registry)
        assert [d.id for d in running.model.devices] == ["gate-1"]
        stored = await load_site_model("youzheng")
        assert stored is not None and stored.model == running.model and stored.version == 1
        plan = await rules_plan(running, registry, community_services(settings).store)
        assert {"gate-1", "door-extra"} <= set(plan.devices), "silent/offline rules watch every registered device"
        doc["devices"].append({"id": "gate-2", "kind": "vehicle_gate"})  # type: ignore[attr-defined]
        plan_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
        await current_site(settings, registry)
        stored = await load_site_model("youzheng")
        assert stored is not None and stored.version == 2 and len(stored.model.devices) == 2


def test_site_load_writes_the_secrets_file_private(tmp_path: Path) -> None:
    from anfang.site_cli import write_secrets

    out = tmp_path / "sim" / "secrets.json"
    write_secrets(out, {"door-1": "s3cret"})
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and json.loads(out.read_text()) == {"door-1": "s3cret"}
