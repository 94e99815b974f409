"""A Gestan user's Microsoft 365 (Graph) connection: msal tokens, stored per user.

Two kinds, as ``gestan-bridge outlook connect --graph`` offers them:

- an admin-consented app (client credentials: tenant, client id, secret, the mailbox to
  sync), msal's ``ConfidentialClientApplication``;
- a person signing in with a device code (``PublicClientApplication``), whose refresh
  token msal keeps in its token cache.

Everything is kept in one directory per login, ``<token_dir()>/graph/<login>/`` (0700,
``token_dir`` as Google's): ``connection.json`` (kind, tenant, client id, mailbox, and the
client secret for an app; 0600) , ``msal_cache.json`` (msal's token cache; 0600) and
``http_cache.pickle`` (msal's HTTP cache of the tenant's OpenID configuration, so that a run
costs no discovery request; 0600, pickled as msal documents). Files are replaced
atomically; nothing of them is ever printed or logged. Refresh tokens are single-use: the
token cache is saved again after every change, before the token is used.

Environment: ``GESTAN_BRIDGE_GRAPH_AUTHORITY`` (default ``https://login.microsoftonline.com``;
when set, msal's instance discovery and authority validation are off: tests, national
clouds, proxies). TLS trusts ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` when set (requests
itself lets the first override any ``verify=``, so both are honoured the same way).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msal
import requests

from bridge.config import env
from bridge.targets.base import ReconnectNeeded, TargetStopped
from bridge.targets.secrets import private_dir, token_dir, write_private

__all__ = ["APP", "DEVICE", "ConnectError", "GraphAuth", "GraphConnection", "check",
           "connect_app", "connection", "disconnect", "finish_device_flow", "load",
           "start_device_flow"]

AUTHORITY_ENV = "GESTAN_BRIDGE_GRAPH_AUTHORITY"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
APP_SCOPES = ["https://graph.microsoft.com/.default"]
USER_SCOPES = ["https://graph.microsoft.com/Calendars.ReadWrite"]
APP, DEVICE = "app", "device"
# Token endpoint refusals that only a new connect can cure.
RECONNECT_ERRORS = {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope",
                    "interaction_required", "consent_required", "login_required"}


class ConnectError(Exception):
    """Connecting failed (refused secret, declined sign-in, unreachable): nothing stored."""


def connect_hint(login: str) -> str:
    return (f"gestan-bridge outlook connect --user {login} --graph --tenant TENANT "
            "--client-id CID [--client-secret-file FILE --mailbox EMAIL]")


def verify_setting() -> str | bool:
    """The CA bundle requests should trust: REQUESTS_CA_BUNDLE, else SSL_CERT_FILE."""
    return env("REQUESTS_CA_BUNDLE") or env("SSL_CERT_FILE") or True


def http_session() -> requests.Session:
    session = requests.Session()
    session.verify = verify_setting()
    return session


# ------------------------------------------------------------------ files
def graph_dir(login: str, directory: Path | None = None) -> Path:
    if not login:
        raise ValueError("empty login")
    return (directory or token_dir()) / "graph" / urllib.parse.quote(login, safe="")


def _write_private(path: Path, data: bytes) -> None:
    """A 0600 file written atomically; its directory and the graph/ one above it 0700."""
    private_dir(path.parent.parent)
    write_private(path, data)


@dataclass(frozen=True)
class GraphConnection:
    """What may be shown about a stored connection (never the secret nor tokens)."""

    login: str
    path: Path
    kind: str          # APP or DEVICE
    tenant: str
    client_id: str
    mailbox: str       # the mailbox synced (app), or the signed-in account (device)
    authority: str


def _read_connection(login: str, directory: Path | None) -> dict[str, Any] | None:
    path = graph_dir(login, directory) / "connection.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def connection(login: str, directory: Path | None = None) -> GraphConnection | None:
    """The stored connection, read offline (Microsoft is not asked); None: not connected."""
    info = _read_connection(login, directory)
    if info is None:
        return None
    return GraphConnection(login, graph_dir(login, directory), str(info.get("kind", "")),
                           str(info.get("tenant", "")), str(info.get("client_id", "")),
                           str(info.get("mailbox", "")), str(info.get("authority", "")))


def disconnect(login: str, directory: Path | None = None) -> bool:
    """Forget the login's Graph connection (its secret and tokens); False if none."""
    folder = graph_dir(login, directory)
    found = False
    for name in ("connection.json", "msal_cache.json", "http_cache.pickle"):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            found = True
    with contextlib.suppress(OSError):
        folder.rmdir()
    return found


# ------------------------------------------------------------------ msal
def _authority(tenant: str, authority: str | None) -> tuple[str, dict[str, Any]]:
    """msal's authority URL and options; a configured host turns discovery checks off."""
    base = authority or env(AUTHORITY_ENV)
    if base:
        return f"{base.rstrip('/')}/{tenant}", {"instance_discovery": False,
                                                 "validate_authority": False}
    return f"{DEFAULT_AUTHORITY}/{tenant}", {}


class GraphAuth:
    """Access tokens for one stored connection, the caches written back when they change."""

    def __init__(self, login: str, info: dict[str, Any], directory: Path | None = None
                 ) -> None:
        self.login = login
        self.info = info
        self.folder = graph_dir(login, directory)
        self.kind = info.get("kind")
        self.mailbox = str(info.get("mailbox") or "")
        self.cache = msal.SerializableTokenCache()
        with contextlib.suppress(FileNotFoundError, ValueError, OSError):
            self.cache.deserialize((self.folder / "msal_cache.json").read_text())
        self.http_cache: dict[Any, Any] = {}
        with contextlib.suppress(Exception):  # a stale or broken cache: start afresh
            with open(self.folder / "http_cache.pickle", "rb") as handle:
                loaded = pickle.load(handle)  # noqa: S301 - our own 0600 file
            if isinstance(loaded, dict):
                self.http_cache = loaded
        self._http_snapshot = pickle.dumps(self.http_cache)
        self._app: msal.ClientApplication | None = None
        self.lock = threading.Lock()
        self.persist = True  # connect: nothing is written before the check passed

    @property
    def app(self) -> msal.ClientApplication:
        """The msal application, built on first use (its construction may read the
        tenant's OpenID configuration: from the persisted HTTP cache when it is fresh)."""
        if self._app is None:
            authority, options = _authority(self.info["tenant"], self.info.get("authority"))
            common = dict(authority=authority, token_cache=self.cache,
                          http_client=http_session(), http_cache=self.http_cache, **options)
            try:
                if self.kind == APP:
                    self._app = msal.ConfidentialClientApplication(
                        self.info["client_id"], client_credential=self.info["client_secret"],
                        **common)
                else:
                    self._app = msal.PublicClientApplication(self.info["client_id"], **common)
            except (requests.RequestException, ValueError) as exc:
                raise TargetStopped(f"Microsoft's sign-in service could not be reached "
                                    f"({type(exc).__name__}); run it again later") from None
            self.save()
        return self._app

    def save(self) -> None:
        """Write the token cache (refresh tokens are single-use) and the HTTP cache back."""
        if not self.persist:
            return
        if self.cache.has_state_changed:
            _write_private(self.folder / "msal_cache.json", self.cache.serialize().encode())
            self.cache.has_state_changed = False
        snapshot = pickle.dumps(self.http_cache)
        if snapshot != self._http_snapshot:
            _write_private(self.folder / "http_cache.pickle", snapshot)
            self._http_snapshot = snapshot

    def token(self, force_refresh: bool = False) -> str:
        """A valid access token (from the cache when it still is); ReconnectNeeded when
        Microsoft refuses the stored consent or secret."""
        with self.lock:
            try:
                result = self._acquire(force_refresh)
            except requests.RequestException as exc:
                raise TargetStopped(f"Microsoft's sign-in service could not be reached "
                                    f"({type(exc).__name__}); run it again later") from None
            finally:
                if self._app is not None:
                    self.save()
        if result and "access_token" in result:
            return str(result["access_token"])
        raise self.refusal(result or {})

    def _acquire(self, force_refresh: bool) -> dict[str, Any] | None:
        app = self.app
        if self.kind == APP:
            if force_refresh:  # msal answers from its cache: drop the refused token
                for item in self.cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN):
                    self.cache.remove_at(item)
            return app.acquire_token_for_client(scopes=APP_SCOPES)
        accounts = app.get_accounts()
        if not accounts:
            return {"error": "login_required", "error_description": "no signed-in account"}
        return app.acquire_token_silent_with_error(USER_SCOPES, account=accounts[0],
                                                   force_refresh=force_refresh)

    def refusal(self, result: dict[str, Any]) -> TargetStopped:
        """The error for an msal answer without a token (never echoing the request)."""
        error = str(result.get("error") or "no_token")
        codes = result.get("error_codes") or []
        if error in RECONNECT_ERRORS or str(result.get("suberror")) in RECONNECT_ERRORS:
            code = f" AADSTS{codes[0]}" if codes else ""
            return ReconnectNeeded(
                f"Microsoft refused {self.login}'s stored Graph connection ({error}{code}: "
                f"consent revoked, secret wrong or expired). Reconnect with: "
                f"{connect_hint(self.login)}")
        return TargetStopped(f"Microsoft did not give an access token ({error}); run it "
                             "again later")


def load(login: str, directory: Path | None = None) -> GraphAuth:
    """The stored connection of ``login`` as a token source; ReconnectNeeded if none."""
    info = _read_connection(login, directory)
    if not info or not info.get("client_id") or not info.get("tenant"):
        what = "has not connected" if info is None else "has an unreadable connection for"
        raise ReconnectNeeded(f"{login} {what} Microsoft 365 (Graph): run "
                              f"{connect_hint(login)}")
    return GraphAuth(login, info, directory)


# ------------------------------------------------------------------ connecting
def _store(login: str, info: dict[str, Any], auth: GraphAuth, directory: Path | None) -> None:
    auth.persist = True
    _write_private(graph_dir(login, directory) / "connection.json",
                   json.dumps(info, sort_keys=True).encode())
    auth.cache.has_state_changed = True
    auth.save()


def connect_app(login: str, tenant: str, client_id: str, client_secret: str, mailbox: str,
                *, directory: Path | None = None, authority: str | None = None,
                api_url: str | None = None) -> GraphConnection:
    """Check an admin-consented app's secret (a token) and its access to ``mailbox``'s
    calendar (one Graph request), then store it. Nothing stored on failure."""
    info = {"kind": APP, "tenant": tenant, "client_id": client_id,
            "client_secret": client_secret, "mailbox": mailbox}
    if authority:
        info["authority"] = authority
    auth = GraphAuth(login, info, directory)
    auth.persist = False
    try:
        token = auth.token()
    except TargetStopped as exc:
        raise ConnectError(str(exc).split(". Reconnect")[0] + ": nothing stored") from None
    _check_calendar(token, f"users/{mailbox}", api_url)
    _store(login, info, auth, directory)
    return connection(login, directory)  # type: ignore[return-value]


def start_device_flow(login: str, tenant: str, client_id: str, *,
                      directory: Path | None = None, authority: str | None = None
                      ) -> tuple[GraphAuth, dict[str, Any]]:
    """Begin a person's sign-in: msal's flow (its ``message`` tells the user where to go
    and which code to enter). Finish with :func:`finish_device_flow`."""
    info = {"kind": DEVICE, "tenant": tenant, "client_id": client_id}
    if authority:
        info["authority"] = authority
    auth = GraphAuth(login, info, directory)
    auth.persist = False
    try:
        flow = auth.app.initiate_device_flow(scopes=USER_SCOPES)  # type: ignore[attr-defined]
    except (TargetStopped, requests.RequestException) as exc:
        raise ConnectError(f"cannot start the sign-in: {exc}") from None
    if "user_code" not in flow:
        raise ConnectError(f"Microsoft refused the sign-in ({flow.get('error')}): nothing "
                           "stored")
    return auth, flow


def finish_device_flow(login: str, auth: GraphAuth, flow: dict[str, Any], *,
                       directory: Path | None = None, api_url: str | None = None,
                       exit_condition: Callable[[dict[str, Any]], bool] | None = None
                       ) -> GraphConnection:
    """Poll until the person signs in (msal waits the flow's interval), then store."""
    kwargs = {"exit_condition": exit_condition} if exit_condition else {}
    result = auth.app.acquire_token_by_device_flow(flow, **kwargs)  # type: ignore[attr-defined]
    if "access_token" not in result:
        raise ConnectError(f"the sign-in did not complete ({result.get('error')}): nothing "
                           "stored")
    claims = result.get("id_token_claims") or {}
    info = dict(auth.info, mailbox=str(claims.get("preferred_username") or ""))
    auth.info = info
    _check_calendar(str(result["access_token"]), "me", api_url)
    _store(login, info, auth, directory)
    return connection(login, directory)  # type: ignore[return-value]


def _check_calendar(token: str, owner: str, api_url: str | None) -> None:
    from bridge.targets.graph import api_base

    url = api_base(api_url) + f"{owner}/calendar?$select=id,name"
    try:
        answer = http_session().get(url, headers={"Authorization": f"Bearer {token}"},
                                    timeout=30)
    except requests.RequestException as exc:
        raise ConnectError(f"cannot reach Microsoft Graph: {type(exc).__name__}") from None
    if answer.status_code != 200:
        try:
            code = answer.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = ""
        raise ConnectError(f"Microsoft Graph refused access to {owner}'s calendar "
                           f"({answer.status_code} {code}): nothing stored".replace(" )", ")"))


def check(login: str, directory: Path | None = None, api_url: str | None = None) -> str:
    """``outlook status --check``: a token and one look at the calendar; the mailbox."""
    auth = load(login, directory)
    token = auth.token()
    owner = f"users/{auth.mailbox}" if auth.kind == APP else "me"
    try:
        _check_calendar(token, owner, api_url)
    except ConnectError as exc:
        raise ReconnectNeeded(str(exc).replace(": nothing stored", "") + ". Reconnect with: "
                              + connect_hint(login)) from None
    return auth.mailbox
