"""What the command modules share: the ``--db`` and ``--user`` options and the one-line
failure. main.py imports the command modules, so this module never imports main.py at load
time (``CliError`` is looked up when raised)."""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from bridge.store import Store, open_store

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="GESTAN_BRIDGE_DB", help="Database URL (default sqlite:///gestan.db).")]
UserOption = Annotated[str, typer.Option("--user", "-u", help="The user's login.")]


def fail(message: str) -> NoReturn:
    """Stop the command: ``gestan-bridge: error: MESSAGE`` on stderr, exit 1."""
    from bridge.cli.main import CliError

    raise CliError(message)


def require_user(db: str | None, login: str) -> Store:
    store = open_store(db)
    if store.user(login) is None:
        fail(f"no user {login!r}: add it first with gestan-bridge users add {login}")
    return store
