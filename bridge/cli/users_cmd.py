"""``gestan-bridge users add|set|list``: Gestan users, who are also the CalDAV logins."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bridge.cli.common import DbOption, fail, open_db

users_app = typer.Typer(no_args_is_help=True, help="Gestan users (CalDAV logins).")


@users_app.command("add")
def users_add(
    login: str,
    password: Annotated[str | None, typer.Option(
        help="The CalDAV password (asked for when omitted on a terminal).")] = None,
    name: str = "", email: str = "", timezone: str = "Europe/Paris",
    admin: Annotated[bool, typer.Option(help="May read and write every user's calendar.")] = False,
    db: DbOption = None,
) -> None:
    """Add a user; their Rendez-vous calendar exists at once."""
    if password is None:
        if not sys.stdin.isatty():
            fail("give --password: there is no terminal to ask for it on")
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = open_db(db).add_user(login, password, name=name, email=email, timezone=timezone,
                                is_admin=admin)
    typer.echo(f"user {user.login} added" + (" (admin)" if user.is_admin else ""))


@users_app.command("set")
def users_set(
    login: str,
    password: Annotated[str | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option()] = None,
    email: Annotated[str | None, typer.Option()] = None,
    timezone: Annotated[str | None, typer.Option()] = None,
    admin: Annotated[bool | None, typer.Option("--admin/--no-admin")] = None,
    google_calendar: Annotated[str | None, typer.Option(
        help="Name of the Google calendar to synchronise with.")] = None,
    outlook_profile: Annotated[str | None, typer.Option(
        help="Outlook/Exchange profile to synchronise with.")] = None,
    outlook_calendar: Annotated[str | None, typer.Option(
        help="Outlook calendar to synchronise with (default: the mailbox's Calendar).")
    ] = None,
    sync_days_back: Annotated[int | None, typer.Option(
        min=0, max=3650, help="Also sync appointments that ended up to N days ago.")] = None,
    db: DbOption = None,
) -> None:
    """Change a user's password, details or sync settings."""
    settings = {k: v for k, v in (("google_calendar", google_calendar),
                                  ("outlook_profile", outlook_profile),
                                  ("outlook_calendar", outlook_calendar),
                                  ("sync_days_back", sync_days_back)) if v is not None}
    user = open_db(db).set_user(login, password=password, name=name, email=email,
                                timezone=timezone, is_admin=admin, settings=settings or None)
    typer.echo(f"user {user.login} updated")


@users_app.command("list")
def users_list(db: DbOption = None) -> None:
    """List users: a table on a terminal; piped, one tab-separated line per user with
    nothing cut (login, name, email, time zone, admin, settings)."""
    columns = ("login", "name", "email", "time zone", "admin", "settings")
    rows = [(user.login, user.name, user.email, user.timezone, "yes" if user.is_admin else "",
             ", ".join(f"{k}={v}" for k, v in sorted(user.settings.items())))
            for user in open_db(db).users()]
    if not sys.stdout.isatty():
        for row in rows:
            print("\t".join(" ".join(value.split()) for value in row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in columns:
        table.add_column(column, overflow="fold")  # wrapped to the terminal, never cut
    for row in rows:
        table.add_row(*row)
    Console(highlight=False).print(table)
