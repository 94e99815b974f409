"""``gestan-bridge outlook connect|status|disconnect``: a user's Outlook connection.

Registered by ``bridge.cli.main``; like ``google_cmd``, it must not import main.py at load
time (``CliError`` is looked up when raised).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer

from bridge.store import Store, open_store
from bridge.targets import outlook_auth
from bridge.targets.outlook_auth import OutlookConnectError

outlook_app = typer.Typer(no_args_is_help=True, help=(
    "A user's Outlook connection (Exchange through EWS): connect, status, disconnect. "
    "Secrets are kept in $GESTAN_BRIDGE_TOKEN_DIR, mode 0600, never shown."))

DbOption = Annotated[str | None, typer.Option(
    "--db", envvar="GESTAN_BRIDGE_DB", help="Database URL (default sqlite:///gestan.db).")]
UserOption = Annotated[str, typer.Option("--user", "-u", help="The user's login.")]


def _fail(message: str) -> NoReturn:
    from bridge.cli.main import CliError  # main.py imports this module: look it up late

    raise CliError(message)


def _require_user(db: str | None, login: str) -> Store:
    store = open_store(db)
    if store.user(login) is None:
        _fail(f"no user {login!r}: add it first with gestan-bridge users add {login}")
    return store


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        _fail(f"cannot read the password file {path}: {exc.strerror or type(exc).__name__}")
    if not secret:
        _fail(f"the password file {path} is empty")
    return secret


@outlook_app.command("connect")
def connect(
    user: UserOption,
    email: Annotated[str, typer.Option(help="The mailbox's e-mail address.")],
    username: Annotated[str, typer.Option(help="The Exchange login (DOMAIN\\\\user or UPN).")],
    password_file: Annotated[Path, typer.Option(
        "--password-file", dir_okay=False, help="A file holding the password (one line).")],
    ews_url: Annotated[str | None, typer.Option(
        "--ews-url", help="https://SERVER/EWS/Exchange.asmx (default: autodiscover from "
        "the e-mail address).")] = None,
    auth: Annotated[str, typer.Option(help="basic or ntlm.")] = "basic",
    db: DbOption = None,
) -> None:
    """Connect the user's Exchange mailbox (the password is checked before it is kept)."""
    _require_user(db, user)
    try:
        found = outlook_auth.connect_ews(user, email=email, username=username,
                                         password=_read_secret(password_file),
                                         ews_url=ews_url, auth_type=auth)
    except OutlookConnectError as exc:
        _fail(str(exc))
    typer.echo(f"{user}: connected to {found.describe()}; kept in "
               f"{outlook_auth.connection_path(user)} (mode 0600)")


@outlook_app.command("status")
def status(
    user: UserOption,
    check: Annotated[bool, typer.Option(
        "--check", help="Also ask the server whether the stored credentials still work.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Say whether the user's Outlook is connected (never shows a secret)."""
    _require_user(db, user)
    try:
        found = outlook_auth.load(user)
    except OutlookConnectError as exc:
        _fail(str(exc))
    if found is None:
        typer.echo(f"{user}: not connected to Outlook (run gestan-bridge outlook connect "
                   f"--user {user} ...)")
        return
    typer.echo(f"{user}: connected to {found.describe()}")
    if check:
        try:
            outlook_auth.check_ews(found)
        except OutlookConnectError as exc:
            _fail(str(exc))
        typer.echo(f"{user}: the server accepts the stored credentials")


@outlook_app.command("disconnect")
def disconnect(user: UserOption, db: DbOption = None) -> None:
    """Forget the user's Outlook connection and its secrets."""
    _require_user(db, user)
    if outlook_auth.disconnect(user):
        typer.echo(f"{user}: Outlook connection removed")
    else:
        typer.echo(f"{user}: no Outlook connection was kept")
