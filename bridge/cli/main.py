"""``gestan-bridge``: serve, users, agenda. Errors are one line on stderr and a non-zero exit."""

from __future__ import annotations

import contextlib
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from bridge.cli.google_cmd import google_app
from bridge.cli.outlook_cmd import outlook_app
from bridge.cli.sync_cmd import sync_app
from bridge.config import ConfigError, env
from bridge.ical.model import EventData, InvalidObject
from bridge.ical.timezones import date_to_utc, local_to_utc, now_utc, utc_to_local, zone
from bridge.store import ActionType, Store, UserError, open_store
from bridge.store.agenda import ActionNotFound

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, no_args_is_help=True,
                  help="Gestan's Rendez-vous over CalDAV, bridged to Google and Outlook.")
users_app = typer.Typer(no_args_is_help=True, help="Gestan users (CalDAV logins).")
agenda_app = typer.Typer(no_args_is_help=True, help="A user's Gestan agenda.")
app.add_typer(users_app, name="users")
app.add_typer(agenda_app, name="agenda")
app.add_typer(google_app, name="google")
app.add_typer(outlook_app, name="outlook")
app.add_typer(sync_app, name="sync")

out = Console(highlight=False, soft_wrap=True)

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="GESTAN_BRIDGE_DB", help="Database URL (default sqlite:///gestan.db).")]
UserOption = Annotated[str, typer.Option("--user", "-u", help="The user's login.")]


DEBUG_ENV = "GESTAN_BRIDGE_DEBUG"  # set: an unexpected error shows its traceback


class CliError(Exception):
    """An error worth one line to the user."""


def _store(db: str | None) -> Store:
    return open_store(db)


# ------------------------------------------------------------------ serve
@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(
        help="Address to bind (default: [server] hosts, else 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port (default: [server] hosts, else 5232).")] = None,
    demo: Annotated[bool, typer.Option(help="Create the demo users alice and bob.")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", dir_okay=False,
        help="The configuration file (default: $GESTAN_BRIDGE_CONFIG, else ./radicale.conf)."
    )] = None,
    log_level: Annotated[str | None, typer.Option(
        help="trace, debug, info, notice, warning, error, critical (default: [logging] "
             "level, else info)")] = None,
) -> None:
    """Run the CalDAV server (and Radicale's web UI) on the agenda store."""
    from bridge import config as settings
    from bridge.demo import load_demo
    from bridge.server import Server, ServerError, load_configuration, setup_logging

    with settings.using(config):
        try:
            configuration = load_configuration(settings.active_file(), db, host, port)
            setup_logging(configuration, log_level)
            # port 0 (any free port) cannot be written in Radicale's configuration
            any_port = (host or configuration.get("server", "hosts")[0][0], 0)
            server = Server(configuration, any_port if port == 0 else None)
        except (settings.ConfigError, ServerError) as exc:
            raise CliError(str(exc)) from None
        if demo:
            created = load_demo(server.store)
            if created:
                out.print(f"demo users created: {', '.join(created)} (password = login)")
        out.print(server.banner(), markup=False)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


# ------------------------------------------------------------------ users
@users_app.command("add")
def users_add(
    login: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    name: str = "", email: str = "", timezone: str = "Europe/Paris",
    admin: Annotated[bool, typer.Option(help="May read and write every user's calendar.")] = False,
    db: DbOption = None,
) -> None:
    """Add a user; their Rendez-vous calendar exists at once."""
    user = _store(db).add_user(login, password, name=name, email=email, timezone=timezone,
                               is_admin=admin)
    out.print(f"user {user.login} added" + (" (admin)" if user.is_admin else ""))


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
    user = _store(db).set_user(login, password=password, name=name, email=email,
                               timezone=timezone, is_admin=admin, settings=settings or None)
    out.print(f"user {user.login} updated")


@users_app.command("list")
def users_list(db: DbOption = None) -> None:
    """List users."""
    table = Table("login", "name", "email", "time zone", "admin", "settings", box=None)
    for user in _store(db).users():
        table.add_row(user.login, user.name, user.email, user.timezone,
                      "yes" if user.is_admin else "",
                      ", ".join(f"{k}={v}" for k, v in sorted(user.settings.items())))
    out.print(table)


# ------------------------------------------------------------------ agenda
def _parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CliError(f"invalid date {value!r}: use YYYY-MM-DD") from None


def _parse_local(value: str) -> datetime:
    for pattern in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(value, pattern)
        except ValueError:
            continue
    raise CliError(f"invalid date-time {value!r}: use 'YYYY-MM-DD HH:MM'")


@agenda_app.command("list")
def agenda_list(
    user: UserOption,
    start: Annotated[str | None, typer.Option(
        "--from", help="First day (YYYY-MM-DD), default today.")] = None,
    days: Annotated[int, typer.Option(min=1, max=3660, help="How many days.")] = 366,
    all_types: Annotated[bool, typer.Option(
        "--all-types", help="Also Appel, Tâche... (not synchronised).")] = False,
    db: DbOption = None,
) -> None:
    """One line per Rendez-vous: id, date, time, subject, location."""
    store = _store(db)
    account = store.require_user(user)
    first = _parse_day(start) if start else utc_to_local(now_utc(), account.timezone).date()
    begin = date_to_utc(first, account.timezone)
    types = None if all_types else [ActionType.APPOINTMENT]
    for action in store.agenda(user, begin, begin + timedelta(days=days), types):
        out.print(_line(action, account.timezone, all_types), markup=False)


def _line(action, tz: str, with_type: bool) -> str:
    event = action.event
    local_start = utc_to_local(event.start, event.tzid if event.tzid not in (None,) else tz)
    local_end = utc_to_local(event.end, event.tzid if event.tzid not in (None,) else tz)
    if event.all_day:
        when = f"{local_start:%Y-%m-%d} all day     "
    else:
        when = f"{local_start:%Y-%m-%d} {local_start:%H:%M}-{local_end:%H:%M}"
    parts = [f"{action.id:>5}", when]
    if with_type:
        parts.append(f"[{action.type.value}]")
    parts.append(event.subject or "(no subject)")
    if event.location:
        parts.append(f"@ {event.location}")
    if action.recurrence_id:
        parts.append("(series)")
    return "  ".join(parts)


@agenda_app.command("add")
def agenda_add(
    user: UserOption,
    subject: Annotated[str, typer.Option(help="Title of the appointment.")],
    start: Annotated[str, typer.Option(help="'YYYY-MM-DD HH:MM', or YYYY-MM-DD with --all-day.")],
    end: Annotated[str | None, typer.Option(help="End, same form as --start.")] = None,
    duration: Annotated[int | None, typer.Option(min=0, help="Minutes (default 60).")] = None,
    all_day: Annotated[bool, typer.Option("--all-day")] = False,
    location: str = "", notes: str = "", contact: str = "",
    timezone: Annotated[str | None, typer.Option(help="IANA zone (default: the user's).")] = None,
    action_type: Annotated[ActionType, typer.Option("--type")] = ActionType.APPOINTMENT,
    db: DbOption = None,
) -> None:
    """Add an action (a Rendez-vous by default): phones see it at their next sync."""
    store = _store(db)
    account = store.require_user(user)
    tz = timezone or account.timezone
    try:
        zone(tz)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if all_day:
        first = _parse_day(start)
        last = _parse_day(end) if end else first
        if last < first:
            raise CliError("--end is before --start")
        event = EventData(start=date_to_utc(first, tz),
                          end=date_to_utc(last + timedelta(days=1), tz), tzid=tz, all_day=True,
                          subject=subject, location=location, notes=notes, contact=contact)
    else:
        local_start = _parse_local(start)
        local_end = (_parse_local(end) if end
                     else local_start + timedelta(minutes=60 if duration is None else duration))
        if local_end < local_start:
            raise CliError("--end is before --start")
        event = EventData(start=local_to_utc(local_start, tz), end=local_to_utc(local_end, tz),
                          tzid=tz, subject=subject, location=location, notes=notes,
                          contact=contact)
    action = store.add_action(user, event, action_type)
    out.print(f"added {action.type.value} {action.id}: {_line(action, tz, False).strip()}",
              markup=False)


@agenda_app.command("delete")
def agenda_delete(user: UserOption, action_id: Annotated[int, typer.Argument(
        help="The action id shown by 'agenda list'.")], db: DbOption = None) -> None:
    """Delete an action; a series occurrence is removed from its series only."""
    action = _store(db).delete_action(user, action_id)
    out.print(f"deleted {action.type.value} {action.id} ({action.event.subject})", markup=False)


@agenda_app.command("import")
def agenda_import(user: UserOption, file: Annotated[Path, typer.Argument(
        exists=True, dir_okay=False, readable=True)], db: DbOption = None) -> None:
    """Import an .ics file: adds and updates by UID, never deletes."""
    report = _store(db).import_calendar(user, file.read_bytes())
    out.print(f"imported {file.name}: {len(report.added)} added, {len(report.updated)} updated,"
              f" {len(report.rejected)} rejected", markup=False)
    for label, reason in report.rejected:
        out.print(f"  rejected {label}: {reason}", markup=False)
    if report.rejected and not (report.added or report.updated):
        raise typer.Exit(1)


# ------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    """Run the command line; the process's exit status is the value returned."""
    command = typer.main.get_command(app)
    try:
        # Without standalone mode, click returns a command's ``typer.Exit(n)`` as ``n`` (and
        # a command's own return value, None for ours) instead of exiting.
        status = command.main(args=argv, prog_name="gestan-bridge", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return _fail("aborted", 130)
    except typer.TyperException as exc:  # click's usage and parameter errors
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(" ".join(message.split()), getattr(exc, "exit_code", 2))
    except (CliError, UserError, ActionNotFound, ConfigError) as exc:
        return _fail(str(exc))
    except InvalidObject as exc:
        return _fail(exc.reason)
    except OSError as exc:
        return _fail(str(exc))
    except SQLAlchemyError as exc:
        return _fail(f"database error: {str(exc).splitlines()[0]}")
    except Exception as exc:
        if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
            # typer validates typed options with pydantic
            problems = "; ".join(f"{e.get('input')!r}: {e.get('msg')}" for e in exc.errors())
            return _fail(f"invalid value {problems}", 2)
        if env(DEBUG_ENV):
            raise
        first = " ".join((str(exc).splitlines() or [""])[0].split())[:300]
        return _fail(f"unexpected {type(exc).__name__}{': ' + first if first else ''} "
                     f"(set {DEBUG_ENV}=1 for the traceback)")
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def _fail(message: str, code: int = 1) -> int:
    print(f"gestan-bridge: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
