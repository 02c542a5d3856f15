"""Provisioning registers every device and keeps the secrets private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from firmware_sim.community import Community
from firmware_sim.provision import SecretsError, load_secrets, provision, save_secrets, secrets_path


class FakeRegistrar:
    """In-memory device registry (the platform's real one is exercised via ``platform_stack``)."""

    def __init__(self) -> None:
        self.devices: dict[str, tuple[str, str, str, tuple[float, float]]] = {}

    async def ensure_device(
        self, site: str, device_id: str, kind: str, name: str, position: tuple[float, float] | None
    ) -> str:
        self.devices[device_id] = (site, kind, name, position or (0.0, 0.0))
        return "" if kind == "rfid_tag" else f"secret-{device_id}"


class FakePeople:
    """In-memory people registry."""

    def __init__(self) -> None:
        self.people: list[dict[str, object]] = []
        self.vehicles: list[tuple[str, str]] = []

    async def ensure_person(self, site: str, person: dict[str, object]) -> None:
        self.people.append(person)

    async def ensure_vehicle(self, site: str, plate: str, owner: str) -> None:
        self.vehicles.append((plate, owner))


async def test_provision_registers_every_device_and_person(youzheng: Community, tmp_path: Path) -> None:
    reg, people = FakeRegistrar(), FakePeople()
    secrets = await provision(youzheng, reg, people)
    assert set(secrets) == {d.id for d in youzheng.devices}
    assert set(reg.devices) == set(secrets) | {t.id for t in youzheng.tags}  # tags: virtual, no secret
    assert reg.devices[youzheng.tags[0].id][1] == "rfid_tag"
    assert reg.devices["gate-north"][:2] == ("youzheng", "vehicle_gate")
    assert len(people.people) == len(youzheng.people) and len(people.vehicles) == len(youzheng.vehicles)
    consenting = [p for p in people.people if p["face_consent"]]
    assert consenting and all(len(p["face_template"]) == 128 for p in consenting)  # type: ignore[arg-type]
    path = secrets_path(tmp_path, youzheng.site)
    save_secrets(path, secrets)
    assert path == tmp_path / "sim" / "youzheng-secrets.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secrets(path) == secrets


def test_missing_secrets_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SecretsError, match="anfang sim provision"):
        load_secrets(tmp_path / "nope.json")


@pytest.mark.timeout(300)  # provisions twice through `anfang site load` processes; slow when busy
def test_cli_provision_stores_secrets_from_the_platform_registry(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from firmware_sim.cli import app

    config = tmp_path / "anfang.yaml"
    config.write_text(f"site: youzheng\ndata_dir: {tmp_path / 'data'}\n")
    r = CliRunner().invoke(app, ["provision", "youzheng", "--config", str(config)])
    assert r.exit_code == 0, r.output
    assert "560 people" in r.output and "65 vehicles" in r.output and "3 watchlist entries" in r.output
    path = tmp_path / "data" / "sim" / "youzheng-secrets.json"
    secrets = load_secrets(path)
    assert len(secrets) == 60 and all(secrets.values())  # every physical device of the pilot
    again = CliRunner().invoke(app, ["provision", "youzheng", "--config", str(config)])
    assert again.exit_code == 0, again.output  # provisioning again updates, it does not fail
    assert "0 watchlist entries" in again.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
