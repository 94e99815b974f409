"""What the command modules share: the ``--db`` and ``--user`` options and the one-line
failure. Kept free of target client libraries: ``--help``, ``users`` and ``agenda`` import
this, and a command pays for Google's or Microsoft's libraries only when it uses them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from bridge.store import Store

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="GESTAN_BRIDGE_DB", help="Database URL (default sqlite:///gestan.db).")]
UserOption = Annotated[str, typer.Option("--user", "-u", help="The user's login.")]


class CliError(Exception):
    """An error worth one line to the user (``gestan-bridge: error: ...``, exit 1)."""


def fail(message: str) -> NoReturn:
    """Stop the command: ``gestan-bridge: error: MESSAGE`` on stderr, exit 1."""
    raise CliError(message)


def open_db(db: str | None) -> Store:
    """The store at ``db`` (``$GESTAN_BRIDGE_DB``, else ./gestan.db), migrated."""
    from bridge.store import open_store

    return open_store(db)


def require_user(db: str | None, login: str) -> Store:
    store = open_db(db)
    if store.user(login) is None:
        fail(f"no user {login!r}: add it first with gestan-bridge users add {login}")
    return store
