"""``gestan-bridge google connect|status|disconnect``: a user's Google account connection.

Registered by ``bridge.cli.main`` (``app.add_typer(google_app, name="google")``). Google's
libraries are imported by the commands, not here: every ``gestan-bridge`` command loads this
module, and only these commands need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.common import DbOption, UserOption, fail, require_user

google_app = typer.Typer(no_args_is_help=True, help=(
    "A user's Google account: connect (OAuth consent), status, disconnect. Tokens are kept "
    "in $GESTAN_BRIDGE_TOKEN_DIR (default ~/.local/share/gestan-bridge/tokens/), mode 0600."))


@google_app.command("connect")
def connect(
    user: UserOption,
    client_secrets: Annotated[Path | None, typer.Option(
        "--client-secrets", dir_okay=False,
        help="OAuth client secrets JSON of a Desktop app client (Google Cloud console).")] = None,
    authorized_user_file: Annotated[Path | None, typer.Option(
        "--authorized-user-file", dir_okay=False,
        help="Import an existing authorized-user JSON instead (no browser).")] = None,
    no_browser: Annotated[bool, typer.Option(
        "--no-browser", help="Print the consent address instead of opening a browser.")] = False,
    port: Annotated[int, typer.Option(
        min=0, max=65535, help="Loopback port for Google's redirect (0: any free port).")] = 0,
    timeout: Annotated[float, typer.Option(
        min=1, help="Seconds to wait for the consent in the browser.")] = 300,
    db: DbOption = None,
) -> None:
    """Connect the user's Google account (replaces a previous connection)."""
    from bridge.targets import google_auth
    from bridge.targets.google_auth import ConnectError

    if (client_secrets is None) == (authorized_user_file is None):
        fail("give either --client-secrets FILE (consent in a browser) or "
              "--authorized-user-file FILE (import)")
    store = require_user(db, user)
    try:
        if authorized_user_file is not None:
            credentials = google_auth.import_authorized_user(user, authorized_user_file)
        else:
            assert client_secrets is not None
            credentials = google_auth.connect_installed_app(
                user, client_secrets, browser=None if no_browser else google_auth.open_in_browser,
                prompt=typer.echo, port=port, timeout=timeout)
    except ConnectError as exc:
        fail(str(exc))
    if credentials.account:
        store.set_user(user, settings={"google_account": credentials.account})
    who = credentials.account or "(address unknown)"
    typer.echo(f"{user}: Google account {who} connected; token stored in "
               f"{google_auth.token_path(user)} (mode 0600)")


@google_app.command("status")
def status(
    user: UserOption,
    check: Annotated[bool, typer.Option(
        "--check", help="Also ask Google whether the stored consent still works.")] = False,
    db: DbOption = None,
) -> None:
    """Say whether the user's Google account is connected (never shows the token)."""
    from google.auth.exceptions import GoogleAuthError

    from bridge.targets import google_auth
    from bridge.targets.base import ReconnectNeeded

    store = require_user(db, user)
    found = google_auth.connection(user)
    if found is None:
        typer.echo(f"{user}: not connected to Google (run gestan-bridge google connect "
                   f"--user {user} --client-secrets FILE)")
        return
    if not found.can_refresh:
        fail(f"{user}'s stored Google token {found.path} is unusable: reconnect with "
              f"gestan-bridge google connect --user {user} --client-secrets FILE")
    account = found.account or store.require_user(user).settings.get("google_account") or ""
    typer.echo(f"{user}: connected to Google as {account or '(address unknown)'}; token in "
               f"{found.path}")
    if check:
        try:
            google_auth.load_credentials(user)
        except ReconnectNeeded as exc:
            fail(str(exc))
        except GoogleAuthError as exc:  # network trouble or a 5xx: not the consent's fault
            fail(f"cannot ask Google now ({type(exc).__name__}); try again later")
        typer.echo(f"{user}: Google accepts the stored consent")


@google_app.command("disconnect")
def disconnect(user: UserOption, db: DbOption = None) -> None:
    """Forget the user's Google token (the grant itself is removed at
    https://myaccount.google.com/permissions)."""
    from bridge.targets import google_auth

    store = require_user(db, user)
    removed = google_auth.disconnect(user)
    store.set_user(user, settings={"google_account": None})
    if removed:
        typer.echo(f"{user}: Google token removed ({google_auth.token_path(user)})")
    else:
        typer.echo(f"{user}: no Google account was connected")
