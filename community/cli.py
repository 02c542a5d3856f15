"""Operator commands for community access control (mounted as ``anfang community``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from anfang.console.cli import users_app
from community.errors import CommunityError
from community.importer import import_community
from community.records import AccessRecords, Retention
from community.store import CommunityStore
from community.store.people import NewPerson
from privacy.audit import plate_ref
from twins.site import SiteError

__all__ = ["app"]

app = typer.Typer(
    help="Community access control: registry, visitor passes, decisions, watchlist.", no_args_is_help=True
)
person_app = typer.Typer(help="Residents, staff and police.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants (leases).", no_args_is_help=True)
vehicle_app = typer.Typer(help="Vehicles.", no_args_is_help=True)
pass_app = typer.Typer(help="Visitor passes.", no_args_is_help=True)
decisions_app = typer.Typer(help="Access decisions.", no_args_is_help=True)
watch_app = typer.Typer(help="Police watchlist.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
for _name, _sub in (
    ("person", person_app),
    ("tenant", tenant_app),
    ("vehicle", vehicle_app),
    ("pass", pass_app),
    ("decisions", decisions_app),
    ("watchlist", watch_app),
    ("token", token_app),
    ("users", users_app),
):
    app.add_typer(_sub, name=_name)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a command body gets."""

    store: CommunityStore
    records: AccessRecords
    operator: str
    now: float


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (default: ./anfang.yaml), the same as `anfang run` reads"),
]


@app.callback()
def _main(
    ctx: typer.Context,
    config: ConfigOpt = None,
    site: Annotated[str | None, typer.Option(help="Site id (default: the configured site)")] = None,
) -> None:
    """Community access control, on the database and site of the platform's configuration."""
    from anfang.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if site:
        settings.site = site
    ctx.obj = settings


def _run(ctx: typer.Context, body: Callable[[Ctx], Awaitable[T]]) -> T:
    from anfang.app import community_services, open_registry

    settings = ctx.obj

    async def go() -> T:
        async with open_registry(settings):
            services = community_services(settings)
            return await body(Ctx(services.store, services.records, f"cli:{getpass.getuser()}", time.time()))

    try:
        return asyncio.run(go())
    except CommunityError as exc:
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except SiteError as exc:  # a community file's plan sections are the site model
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _echo(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@app.command("import")
def import_cmd(ctx: typer.Context, path: Path) -> None:
    """Load a community YAML file: its buildings and devices become the site model (as `anfang site load`),
    its households, people and vehicles go into the access registry."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))

    async def body(c: Ctx) -> None:
        rep = await import_community(data, c.store, now=c.now, operator=c.operator)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="import_community", target=None, now=c.now,
            detail={"people": rep.people, "vehicles": rep.vehicles},
        )  # fmt: skip
        _echo(
            {
                "buildings": rep.buildings,
                "households": rep.households,
                "devices": rep.devices,
                "people": rep.people,
                "vehicles": rep.vehicles,
                "faces": rep.faces,
                "generated_pins": rep.pins,
            }
        )

    _run(ctx, body)


@person_app.command("add")
def person_add(
    ctx: typer.Context,
    role: str,
    household: Annotated[str | None, typer.Option(help="Household id (residents)")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Person id (default: generated)")] = None,
    name: Annotated[str | None, typer.Option(help="Full name")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number (stored encrypted)")] = None,
    id_number: Annotated[str | None, typer.Option(help="ID-card number (stored encrypted)")] = None,
    face_consent: Annotated[bool, typer.Option(help="Agrees to face recognition (else a PIN)")] = False,
    card: Annotated[str | None, typer.Option(help="Access card number (stored as a keyed hash)")] = None,
) -> None:
    """Register a resident (owner, family, elderly_alone, child), staff member or police officer."""

    async def body(c: Ctx) -> None:
        pid = await c.store.people.add_person(
            NewPerson(id, role, household, name, phone, id_number, face_consent), registered_by=c.operator, now=c.now
        )
        if card:
            await c.store.credentials.add_credential(pid, "card", card, now=c.now)
        pin = None if face_consent else await c.store.credentials.ensure_alternative_credential(pid, now=c.now)
        await c.records.audit(actor=c.operator, actor_role="operator", action="register_person", target=pid, now=c.now)
        _echo({"id": pid, "pin": pin})

    _run(ctx, body)


@tenant_app.command("add")
def tenant_add(
    ctx: typer.Context,
    household: str,
    lease_start: str,
    lease_end: str,
    by: Annotated[str, typer.Option(help="Registering staff member's person id")],
    id: Annotated[str | None, typer.Option("--id", help="Person id (default: generated)")] = None,
    name: Annotated[str | None, typer.Option(help="Full name")] = None,
    phone: Annotated[str | None, typer.Option(help="Phone number (stored encrypted)")] = None,
    id_number: Annotated[str | None, typer.Option(help="ID-card number (stored encrypted)")] = None,
    card: Annotated[str | None, typer.Option(help="Access card number (stored as a keyed hash)")] = None,
) -> None:
    """Register a tenant against a room with a lease (dates YYYY-MM-DD, end inclusive)."""

    async def body(c: Ctx) -> None:
        new = NewPerson(
            id,
            "tenant",
            household,
            name,
            phone,
            id_number,
            False,
            dt.date.fromisoformat(lease_start),
            dt.date.fromisoformat(lease_end),
        )
        pid = await c.store.people.add_tenant(new, registered_by=by, now=c.now)
        if card:
            await c.store.credentials.add_credential(pid, "card", card, now=c.now)
        pin = await c.store.credentials.ensure_alternative_credential(pid, now=c.now)
        await c.records.audit(actor=c.operator, actor_role="operator", action="register_tenant", target=pid, now=c.now)
        _echo({"id": pid, "pin": pin})

    _run(ctx, body)


@vehicle_app.command("add")
def vehicle_add(ctx: typer.Context, plate: str, owner: Annotated[str, typer.Option(help="Owner's person id")]) -> None:
    """Register a vehicle (blue 7-character or green 8-character plate) to a person."""

    async def body(c: Ctx) -> None:
        norm = await c.store.vehicles.add_vehicle(plate, owner, now=c.now)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="register_vehicle", target=owner, now=c.now
        )
        _echo({"plate": norm, "owner": owner})

    _run(ctx, body)


@pass_app.command("issue")
def pass_issue(
    ctx: typer.Context,
    issuer: Annotated[str, typer.Option(help="Resident issuing the pass (person id)")],
    hours: Annotated[float, typer.Option(help="Valid for this many hours from now")] = 24.0,
    door: Annotated[list[str] | None, typer.Option(help="Door/gate id (repeatable)")] = None,
    uses: Annotated[int, typer.Option(help="How many times the pass opens")] = 1,
    plate: Annotated[str | None, typer.Option(help="Visitor's vehicle plate")] = None,
    phone: Annotated[str | None, typer.Option(help="Visitor's phone number")] = None,
    name: Annotated[str | None, typer.Option(help="Visitor's name")] = None,
) -> None:
    """Issue a visitor pass for a resident; prints the signed QR payload."""

    async def body(c: Ctx) -> None:
        row, payload = await c.store.passes.issue_pass(
            issuer,
            valid_from=c.now,
            valid_until=c.now + hours * 3600,
            doors=door,
            max_uses=uses,
            now=c.now,
            visitor_name=name,
            visitor_phone=phone,
            plate=plate,
        )
        await c.records.audit(actor=c.operator, actor_role="operator", action="issue_pass", target=row.id, now=c.now,
                              detail={"issuer": issuer, "uses": uses})  # fmt: skip
        _echo({"id": row.id, "payload": payload, "valid_until": row.valid_until, "doors": json.loads(row.doors)})

    _run(ctx, body)


@decisions_app.command("list")
def decisions_list(
    ctx: typer.Context,
    since_hours: Annotated[float, typer.Option(help="Decisions of the last N hours")] = 24.0,
    device: Annotated[str | None, typer.Option(help="Only at this door or gate")] = None,
    plate: Annotated[str | None, typer.Option(help="Only for this plate")] = None,
    subject: Annotated[str | None, typer.Option(help="Only for this person id")] = None,
    limit: Annotated[int, typer.Option(help="At most N rows")] = 50,
) -> None:
    """List recent access decisions (the read is written to the audit log)."""

    async def body(c: Ctx) -> None:
        rows = await c.records.search_decisions(
            since=c.now - since_hours * 3600, device=device, plate=plate, subject=subject, limit=limit
        )
        await c.records.audit(
            actor=c.operator,
            actor_role="operator",
            action="search_decisions",
            target=subject or (plate_ref(c.store.cipher.lookup_hash, plate) if plate else None),
            now=c.now,
            detail={"results": len(rows)},
        )
        _echo(
            [
                {
                    "ts": r.ts,
                    "device": r.device_id,
                    "mode": r.mode,
                    "allowed": r.allowed,
                    "reason": r.reason,
                    "subject": r.subject_id,
                    "role": r.subject_role,
                    "credential": r.credential_kind,
                    "ref": r.credential_ref,
                    "score": r.score,
                }
                for r in rows
            ]
        )

    _run(ctx, body)


@watch_app.command("add")
def watch_add(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option(help="Why the police list this person or vehicle")],
    by: Annotated[str, typer.Option(help="Police officer's person id")],
    plate: Annotated[str | None, typer.Option(help="Vehicle plate to watch for")] = None,
    template: Annotated[Path | None, typer.Option(help="JSON file with 128 floats")] = None,
    label: Annotated[str | None, typer.Option(help="A label for the entry")] = None,
) -> None:
    """Add a plate or a face template of interest to the police watchlist."""
    if (plate is None) == (template is None):
        raise typer.BadParameter("give exactly one of --plate or --template")
    tpl = json.loads(template.read_text()) if template is not None else None

    async def body(c: Ctx) -> None:
        wid = await c.store.watch.add_watch(
            kind="plate" if plate else "face",
            reason=reason,
            added_by=by,
            now=c.now,
            plate=plate,
            template=tpl,
            label=label,
        )
        await c.records.audit(actor=c.operator, actor_role="operator", action="add_watch", target=wid, now=c.now)
        _echo({"id": wid})

    _run(ctx, body)


@watch_app.command("list")
def watch_list(ctx: typer.Context) -> None:
    """List the active watchlist."""
    from community.models import WatchRow

    async def body(c: Ctx) -> None:
        rows = await WatchRow.filter(site=c.store.site, active=True).order_by("created_at")
        await c.records.audit(actor=c.operator, actor_role="operator", action="view_watchlist", target=None, now=c.now)
        _echo(
            [
                {
                    "id": r.id,
                    "kind": r.kind,
                    "plate": r.plate,
                    "label": r.label,
                    "reason": r.reason,
                    "added_by": r.added_by,
                }
                for r in rows
            ]
        )

    _run(ctx, body)


@app.command("rotate-door-key")
def rotate_door_key(ctx: typer.Context, device: str) -> None:
    """Give an edge door or gate a new key (a door stolen, a terminal replaced) and print it once.

    Lists sealed to the old key stop opening anything; the door's next list is sealed to the new one.
    """
    from community.edge_keys import rotate_edge_key

    async def body(c: Ctx) -> None:
        key = await rotate_edge_key(c.store.cipher, c.store.site, device)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="rotate_door_key", target=device, now=c.now
        )
        typer.echo(f"edge key: {key}")
        typer.echo("install it in the door now: it cannot be shown again (docs/protocol.md)", err=True)

    _run(ctx, body)


@app.command("purge")
def purge(
    ctx: typer.Context,
    captures_days: Annotated[float, typer.Option(help="Keep captures this many days")] = 30.0,
    decisions_days: Annotated[float, typer.Option(help="Keep access decisions this many days")] = 90.0,
    audit_days: Annotated[float, typer.Option(help="Keep the audit log this many days")] = 365.0,
    passes_days: Annotated[float, typer.Option(help="Keep expired visitor passes this many days")] = 30.0,
) -> None:
    """Delete captures, decisions, expired passes and audit rows past their retention."""
    retention = Retention(captures_days, decisions_days, audit_days, passes_days)

    async def body(c: Ctx) -> None:
        _echo(await c.records.purge(c.now, retention))

    _run(ctx, body)


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    person: str,
    label: Annotated[str | None, typer.Option(help="A label to recognise the token by")] = None,
    hours: Annotated[
        float | None, typer.Option(min=0.01, help="Lifetime (default and cap: api.token_*_ttl_h of the role)")
    ] = None,
) -> None:
    """Create an API bearer token for a person, bound to the site and the person's role (printed once; only
    its hash is stored)."""

    async def body(c: Ctx) -> None:
        ttl = None if hours is None else hours * 3600
        info, token = await c.records.tokens.create(person, label=label, now=c.now, ttl_s=ttl, created_by=c.operator)
        await c.records.audit(
            actor=c.operator,
            actor_role="operator",
            action="create_token",
            target=person,
            now=c.now,
            detail={"token": info.id},
        )
        _echo({"id": info.id, "person": person, "role": info.role, "expires_at": info.expires_at, "token": token})

    _run(ctx, body)


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    person: Annotated[str | None, typer.Option(help="Only this person's tokens")] = None,
    ended: Annotated[bool, typer.Option("--ended", help="Also revoked and expired tokens")] = False,
) -> None:
    """The site's API tokens (ids, people, roles, expiry; never the tokens)."""

    async def body(c: Ctx) -> None:
        _echo([asdict(t) for t in await c.records.tokens.list(person_id=person, now=c.now, ended=ended)])

    _run(ctx, body)


@token_app.command("revoke")
def token_revoke(ctx: typer.Context, token_id: str) -> None:
    """Revoke an API token by its id (effective at the next request, in every process)."""

    async def body(c: Ctx) -> None:
        info = await c.records.tokens.revoke(token_id, now=c.now)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="revoke_token", target=info.person_id, now=c.now,
            detail={"token": token_id},
        )  # fmt: skip
        _echo(asdict(info))

    _run(ctx, body)


people_app = typer.Typer(
    help="A data subject's requests: show, withdraw face consent, deactivate, erase.", no_args_is_help=True
)
app.add_typer(people_app, name="people")


@people_app.command("show")
def people_show(ctx: typer.Context, person: str) -> None:
    """A person's record, decrypted (the read is written to the audit log)."""

    async def body(c: Ctx) -> None:
        row = await c.store.people.person(person)
        out = await c.store.people.decrypted_person(row)
        await c.records.audit(actor=c.operator, actor_role="operator", action="view_person", target=person, now=c.now)
        _echo(out)

    _run(ctx, body)


@people_app.command("withdraw-consent")
def people_withdraw_consent(ctx: typer.Context, person: str) -> None:
    """Withdraw face consent: templates, enrolment checks and face images deleted at once, doors told; card,
    PIN and passes keep working (a PIN is given, and printed once, to someone with neither card nor PIN)."""
    from privacy.erasure import withdraw_face_consent

    async def body(c: Ctx) -> None:
        report = await withdraw_face_consent(c.store, person, now=c.now)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="withdraw_face_consent", target=person, now=c.now,
            detail=report.removed or None,
        )  # fmt: skip
        _echo(report.as_dict())

    _run(ctx, body)


@people_app.command("deactivate")
def people_deactivate(ctx: typer.Context, person: str) -> None:
    """A resident moved out: no door opens for them, their tokens and console sign-in end."""
    from privacy.erasure import deactivate_person

    async def body(c: Ctx) -> None:
        report = await deactivate_person(c.store, person, now=c.now)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="deactivate_person", target=person, now=c.now,
            detail=report.removed or None,
        )  # fmt: skip
        _echo(report.as_dict())

    _run(ctx, body)


@people_app.command("erase")
def people_erase(
    ctx: typer.Context,
    person: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase a person's personal data (PIPL art. 47): irreversible; access statistics stay anonymised."""
    from privacy.erasure import erase_person

    if not yes:
        typer.confirm(f"erase every personal data of {person}? This cannot be undone", abort=True)

    async def body(c: Ctx) -> None:
        report = await erase_person(c.store, person, now=c.now)
        await c.records.audit(
            actor=c.operator, actor_role="operator", action="erase_person", target=person, now=c.now,
            detail=report.removed or None,
        )  # fmt: skip
        _echo(report.as_dict())

    _run(ctx, body)
