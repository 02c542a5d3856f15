"""``anfang community users``: console accounts for staff and police, sign-in links for residents."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from anfang.console.store import ConsoleStore, ConsoleUserError

__all__ = ["users_app"]

users_app = typer.Typer(help="Web console sign-ins: staff and police accounts, residents' links.", no_args_is_help=True)
T = TypeVar("T")


def _run(ctx: typer.Context, body: Callable[[ConsoleStore], Awaitable[T]]) -> T:
    from anfang.app import community_services, console_services, open_registry

    settings = ctx.obj

    async def go() -> T:
        async with open_registry(settings):
            return await body(console_services(settings, community_services(settings)).store)

    try:
        return asyncio.run(go())
    except ConsoleUserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    username: Annotated[str, typer.Argument(help="The name to sign in with")],
    person: Annotated[str, typer.Option(help="The staff member's or police officer's person id")],
    password_stdin: Annotated[bool, typer.Option(help="Read the password from standard input (scripts)")] = False,
) -> None:
    """Create a console account (or set a new password); only a slow salted hash is stored."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

    async def body(store: ConsoleStore) -> None:
        await store.add_user(username, person, password, now=time.time())
        typer.echo(f"console user {username} signs in as {person}")

    _run(ctx, body)


@users_app.command("link")
def users_link(
    ctx: typer.Context,
    person: Annotated[str, typer.Argument(help="The resident's person id")],
    base_url: Annotated[str, typer.Option(help="Where the console is reached")] = "http://127.0.0.1:8080",
    by: Annotated[str, typer.Option(help="Who issues the link (for the record)")] = "cli",
) -> None:
    """A one-time sign-in link for a resident's phone page (printed once)."""

    async def body(store: ConsoleStore) -> None:
        token = await store.issue_link(person, created_by=by, now=time.time())
        typer.echo(f"{base_url.rstrip('/')}/console/r/{token}")

    _run(ctx, body)
