"""Provisioning a simulated community: the site file the platform loads, and the device secrets it hands out.

The simulator provisions as an installer would: :func:`roster_document` is the community file with what
the simulated hardware needs registered — the face templates its cameras will present (consenting people,
the police watchlist) — and ``anfang sim provision`` hands it to the platform's own command,
``anfang site load FILE --roster --secrets-out {data_dir}/sim/{site}-secrets.json``, as a subprocess; the
simulated devices then connect with those secrets. :func:`save_secrets` and :func:`load_secrets` handle
that file (mode 0600).

:func:`provision` does the same registration against the :class:`DeviceRegistrar` /
:class:`PeopleRegistrar` protocols, for in-process harnesses (the tests' platform stacks) that have a
registry at hand.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol

from firmware_sim.community import Community, Person
from firmware_sim.identity import face_embedding

#: The platform's command line, run as a separate process (the simulator imports nothing of the platform).
PLATFORM_CLI = (sys.executable, "-m", "anfang.cli")


class DeviceRegistrar(Protocol):
    """The platform's device registry, as the simulator needs it."""

    async def ensure_device(
        self, site: str, device_id: str, kind: str, name: str, position: tuple[float, float] | None
    ) -> str:
        """Create the device if needed (or rotate its secret) and return its current secret ("" for a
        virtual device, which never connects)."""
        ...


class PeopleRegistrar(Protocol):
    """Residents and vehicles for access control (implemented by the access-control service)."""

    async def ensure_person(self, site: str, person: dict[str, object]) -> None:
        """Create or update a person from a community ``people`` entry (as a plain dict)."""
        ...

    async def ensure_vehicle(self, site: str, plate: str, owner: str) -> None:
        """Create or update a vehicle by normalised plate."""
        ...


class WatchlistRegistrar(Protocol):
    """The police watchlist (implemented over the access-control registry)."""

    async def ensure_watch(self, site: str, entry: dict[str, Any]) -> None:
        """Create the entry (a face of interest, keyed by its ``id``) unless it exists."""
        ...


class SecretsError(OSError):
    """The secrets file is missing, unreadable or too widely readable."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def person_entry(person: Person) -> dict[str, object]:
    """A community ``people`` entry as a dict, with the face template the simulated cameras match
    (:func:`firmware_sim.identity.face_embedding`) when the person consented to face recognition."""
    entry: dict[str, object] = person.model_dump(mode="json")
    if person.face_consent:
        entry["face_template"] = face_embedding(person.id)
    return entry


async def provision(
    community: Community,
    registrar: DeviceRegistrar,
    people: PeopleRegistrar | None = None,
    watchlist: WatchlistRegistrar | None = None,
    devices: set[str] | None = None,
) -> dict[str, str]:
    """Register the physical devices (all, or only ``devices``) and, with ``people``, residents with their
    cards and face templates and vehicles; with ``watchlist``, the police watchlist's faces.

    Returns ``{device_id: secret}``.  RFID tags are registered as virtual twins (the rules engine reports
    their estimated positions into them); they never connect, so they get no secret.
    """
    secrets: dict[str, str] = {}
    for d in community.devices:
        if devices is None or d.id in devices:
            secrets[d.id] = await registrar.ensure_device(
                community.site, d.id, d.kind, d.name, (d.position[0], d.position[1])
            )
    for t in community.tags:
        await registrar.ensure_device(community.site, t.id, "rfid_tag", f"{t.group} tag of {t.person}", None)
    if people is not None:
        for p in community.people:
            await people.ensure_person(community.site, person_entry(p))
        for v in community.vehicles:
            await people.ensure_vehicle(community.site, v.plate, v.owner)
    if watchlist is not None:
        for w in community.watchlist:
            await watchlist.ensure_watch(community.site, w.model_dump(mode="json"))
    return secrets


def roster_document(community: Community, people: bool = True) -> dict[str, Any]:
    """The site file ``anfang site load`` registers: the plan, and with ``people`` the roster with the face
    templates the simulated cameras present (consenting residents, the watchlist's faces)."""
    doc: dict[str, Any] = community.model_dump(mode="json", exclude={"paths", "people", "vehicles", "watchlist"})
    if people:
        doc["people"] = [person_entry(p) for p in community.people]
        doc["vehicles"] = [v.model_dump(mode="json") for v in community.vehicles]
        doc["watchlist"] = [
            {**w.model_dump(mode="json"), "face_template": face_embedding(w.id)} for w in community.watchlist
        ]
    return doc


def site_load_command(site_file: Path, secrets_out: Path, *, roster: bool, config: Path | None) -> list[str]:
    """``anfang site load`` for a provisioning run."""
    cmd = [*PLATFORM_CLI, "site", "load", str(site_file), "--secrets-out", str(secrets_out)]
    if roster:
        cmd.append("--roster")
    if config is not None:
        cmd += ["--config", str(config)]
    return cmd


def secrets_path(data_dir: Path, site: str) -> Path:
    """Where the simulator keeps a site's device secrets."""
    return data_dir / "sim" / f"{site}-secrets.json"


def save_private_json(path: Path, doc: Any) -> None:
    """Write JSON atomically with mode 0600 (never world- or group-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True, ensure_ascii=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def save_secrets(path: Path, secrets: dict[str, str]) -> None:
    """Write device secrets with mode 0600."""
    save_private_json(path, secrets)


def load_secrets(path: Path) -> dict[str, str]:
    """Read a secrets file written by :func:`save_secrets`."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SecretsError(path, "not found; run `anfang sim provision` first") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise SecretsError(path, str(exc)) from exc
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise SecretsError(path, "must map device ids to secret strings")
    return {str(k): v for k, v in doc.items()}
