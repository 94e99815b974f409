"""``gestan-bridge outlook connect|status|disconnect``: a user's Outlook connection.

Registered by ``bridge.cli.main``; like ``google_cmd``, the client libraries (msal,
requests, exchangelib) are imported by the commands that use them, not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.cli.common import DbOption, UserOption, fail, require_user
from bridge.targets import outlook_auth
from bridge.targets.base import CalendarNotFound, ReconnectNeeded, TargetStopped
from bridge.targets.outlook_auth import OutlookConnectError

if TYPE_CHECKING:
    from bridge.store import Store

outlook_app = typer.Typer(no_args_is_help=True, help=(
    "A user's Outlook connection (Exchange through EWS, or Microsoft 365 through Graph): "
    "connect, status, disconnect. "
    "Secrets are kept in $GESTAN_BRIDGE_TOKEN_DIR, mode 0600, never shown."))


def _read_secret(path: Path) -> str:
    try:
        secret = path.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        fail(f"cannot read the password file {path}: {exc.strerror or type(exc).__name__}")
    if not secret:
        fail(f"the password file {path} is empty")
    return secret


@outlook_app.command("connect")
def connect(
    user: UserOption,
    email: Annotated[str | None, typer.Option(help="EWS: the mailbox's e-mail address.")
                     ] = None,
    username: Annotated[str | None, typer.Option(
        help="EWS: the Exchange login (DOMAIN\\\\user or UPN).")] = None,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", dir_okay=False, help="EWS: a file holding the password.")] = None,
    ews_url: Annotated[str | None, typer.Option(
        "--ews-url", help="EWS: https://SERVER/EWS/Exchange.asmx (default: autodiscover "
        "from the e-mail address).")] = None,
    auth: Annotated[str, typer.Option(help="EWS: basic or ntlm.")] = "basic",
    graph: Annotated[bool, typer.Option(
        "--graph", help="Microsoft 365 through Microsoft Graph instead of EWS.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Graph: the tenant (id or domain).")
                      ] = None,
    client_id: Annotated[str | None, typer.Option(
        "--client-id", help="Graph: the registered application's id.")] = None,
    client_secret_file: Annotated[Path | None, typer.Option(
        "--client-secret-file", dir_okay=False,
        help="Graph: the app's secret (admin-consented app); without it a person signs in "
        "with a device code.")] = None,
    mailbox: Annotated[str | None, typer.Option(
        help="Graph with an app secret: the mailbox to sync.")] = None,
    db: DbOption = None,
) -> None:
    """Connect the user's Outlook: an Exchange mailbox (EWS) or Microsoft 365 (--graph).
    The credentials are checked before anything is kept; a new connection replaces any
    other."""
    from bridge.targets import graph_auth

    store = require_user(db, user)
    if graph:
        described = _connect_graph(user, tenant, client_id, client_secret_file, mailbox)
        outlook_auth.disconnect(user)
    else:
        if not (email and username and password_file):
            fail("an Exchange mailbox needs --email, --username and --password-file (or "
                  "--graph for Microsoft 365)")
        try:
            found = outlook_auth.connect_ews(user, email=email, username=username,
                                             password=_read_secret(password_file),
                                             ews_url=ews_url, auth_type=auth)
        except OutlookConnectError as exc:
            fail(str(exc))
        graph_auth.disconnect(user)
        described = f"{found.describe()}; kept in {outlook_auth.connection_path(user)}"
    typer.echo(f"{user}: connected to {described} (mode 0600)")
    _find_calendar(store, user)


def _find_calendar(store: Store, login: str) -> None:
    """Look the user's calendar up now and keep the reference in the sync state, so that
    a sync asks nothing more than its changes (a run with nothing to do: one request). A
    calendar not found is said, with the names found; the connection itself stays."""
    from bridge.sync.engine import bind_calendar
    from bridge.targets import OUTLOOK
    from bridge.targets import get as kind_of

    user = store.require_user(login)
    try:
        target = kind_of(OUTLOOK).build(user)  # type: ignore[union-attr]
        bind_calendar(store, user, target)
    except CalendarNotFound as exc:
        typer.echo(f"{login}: {exc} (choose one with gestan-bridge users set {login} "
                   "--outlook-calendar NAME)", err=True)
        return
    except TargetStopped as exc:
        fail(f"connected, but the calendar could not be read: {exc}")
    where = user.settings.get("outlook_calendar") or "the main calendar"
    typer.echo(f"{login}: syncs with {where}")


def _connect_graph(user: str, tenant: str | None, client_id: str | None,
                   secret_file: Path | None, mailbox: str | None) -> str:
    from bridge.targets import graph_auth

    if not (tenant and client_id):
        fail("Microsoft 365 needs --tenant and --client-id")
    try:
        if secret_file is not None:
            if not mailbox:
                fail("an app secret syncs one mailbox: give --mailbox EMAIL")
            found = graph_auth.connect_app(user, tenant, client_id, _read_secret(secret_file),
                                           mailbox)
        else:
            auth, flow = graph_auth.start_device_flow(user, tenant, client_id)
            typer.echo(flow.get("message") or f"sign in with the code {flow['user_code']}")
            found = graph_auth.finish_device_flow(user, auth, flow)
    except (graph_auth.ConnectError, ReconnectNeeded, TargetStopped) as exc:
        fail(str(exc))
    return (f"Microsoft 365 (Graph) mailbox {found.mailbox or '(signed-in account)'} of "
            f"tenant {found.tenant}, {'app' if found.kind == graph_auth.APP else 'user'} "
            f"sign-in; kept in {found.path}")


@outlook_app.command("status")
def status(
    user: UserOption,
    check: Annotated[bool, typer.Option(
        "--check", help="Also ask the server whether the stored credentials still work.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Say whether the user's Outlook is connected (never shows a secret)."""
    from bridge.targets import graph_auth

    require_user(db, user)
    graph = graph_auth.connection(user)
    if graph is not None:
        typer.echo(f"{user}: connected to Microsoft 365 (Graph) mailbox "
                   f"{graph.mailbox or '(signed-in account)'} of tenant {graph.tenant}")
        if check:
            try:
                graph_auth.check(user)
            except (ReconnectNeeded, TargetStopped) as exc:
                fail(str(exc))
            typer.echo(f"{user}: Microsoft accepts the stored connection")
        return
    try:
        found = outlook_auth.load(user)
    except OutlookConnectError as exc:
        fail(str(exc))
    if found is None:
        typer.echo(f"{user}: not connected to Outlook (run gestan-bridge outlook connect "
                   f"--user {user} ...)")
        return
    typer.echo(f"{user}: connected to {found.describe()}")
    if check:
        try:
            outlook_auth.check_ews(found)
        except OutlookConnectError as exc:
            fail(str(exc))
        typer.echo(f"{user}: the server accepts the stored credentials")


@outlook_app.command("disconnect")
def disconnect(user: UserOption, db: DbOption = None) -> None:
    """Forget the user's Outlook connection and its secrets."""
    from bridge.targets import graph_auth

    require_user(db, user)
    if outlook_auth.disconnect(user) | graph_auth.disconnect(user):
        typer.echo(f"{user}: Outlook connection removed")
    else:
        typer.echo(f"{user}: no Outlook connection was kept")
