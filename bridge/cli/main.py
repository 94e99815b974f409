"""``gestan-bridge``: serve, users, agenda, google, outlook, sync.

Errors are one line on stderr (``gestan-bridge: error: ...``) and a non-zero exit, never a
traceback. Start-up stays cheap: the command modules import the target client libraries
(Google's, Microsoft's) inside the commands that use them, and the server only in ``serve``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.agenda_cmd import agenda_app
from bridge.cli.backup_cmd import register as register_backup
from bridge.cli.common import CliError, DbOption
from bridge.cli.google_cmd import google_app
from bridge.cli.outlook_cmd import outlook_app
from bridge.cli.sync_cmd import sync_app
from bridge.cli.users_cmd import users_app
from bridge.config import ConfigError, env

__all__ = ["CliError", "app", "main"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None, no_args_is_help=True,
                  help="Gestan's Rendez-vous over CalDAV, bridged to Google and Outlook.")
app.add_typer(users_app, name="users")
app.add_typer(agenda_app, name="agenda")
app.add_typer(google_app, name="google")
app.add_typer(outlook_app, name="outlook")
app.add_typer(sync_app, name="sync")
register_backup(app)

DEBUG_ENV = "GESTAN_BRIDGE_DEBUG"  # set: an unexpected error shows its traceback


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
        server.stop_on_signals()
        if demo:
            created = load_demo(server.store)
            if created:
                typer.echo(f"demo users created: {', '.join(created)} (password = login)")
        typer.echo(server.banner())
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


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
        if type(exc).__name__ == "NoArgsIsHelpError":  # "gestan-bridge" alone: its help
            print(exc.format_message())
            return 0
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return _fail(" ".join(message.split()), getattr(exc, "exit_code", 2))
    except (CliError, ConfigError) as exc:
        return _fail(str(exc))
    except Exception as exc:
        known = _known(exc)
        if known is not None:
            return _fail(*known)
        if env(DEBUG_ENV):
            raise
        first = (str(exc).splitlines() or [""])[0][:300]
        return _fail(f"unexpected {type(exc).__name__}{': ' + first if first else ''} "
                     f"(set {DEBUG_ENV}=1 for the traceback)")
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


def _known(exc: Exception) -> tuple[str, int] | None:
    """(message, exit status) of an error the user can act on; None for a bug. The store's
    classes are imported here: an error from the store means it is loaded already."""
    from sqlalchemy.exc import SQLAlchemyError

    from bridge.ical.model import InvalidObject
    from bridge.store import UserError
    from bridge.store.agenda import ActionNotFound
    from bridge.store.engine import DatabaseUrlError

    if isinstance(exc, UserError | ActionNotFound | DatabaseUrlError):
        return str(exc), 1
    if isinstance(exc, InvalidObject):
        return exc.reason, 1
    if isinstance(exc, OSError):
        if exc.filename:
            return f"{exc.filename}: {exc.strerror or exc}", 1
        return exc.strerror or str(exc), 1
    if isinstance(exc, SQLAlchemyError):
        return f"database error: {(str(exc).splitlines() or [''])[0]}", 1
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        # typer validates typed options with pydantic
        problems = "; ".join(f"{e.get('input')!r}: {e.get('msg')}" for e in exc.errors())
        return f"invalid value {problems}", 2
    return None


def _fail(message: str, code: int = 1) -> int:
    print(f"gestan-bridge: error: {' '.join(str(message).split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
