"""A Gestan user's Google account connection: OAuth consent, token storage, refresh.

One token file per login, JSON, mode 0600, in a 0700 directory (``$GESTAN_BRIDGE_TOKEN_DIR``,
else ``~/.local/share/gestan-bridge/tokens/``). Tokens are never printed nor logged: messages
name the login, the account and the file, never its content.

Environment (for tests and proxies): ``GESTAN_BRIDGE_GOOGLE_TOKEN_URI`` replaces the token
endpoint of the client secrets, of an imported authorized-user file and of stored tokens
(google-auth itself ignores a file's ``token_uri`` and always uses Google's);
``GESTAN_BRIDGE_GOOGLE_AUTH_URI`` replaces the consent page; ``GESTAN_BRIDGE_GOOGLE_API_URL``
(default ``https://www.googleapis.com/calendar/v3/``) is where the account's e-mail address is
looked up after connecting. Plain ``http`` endpoints are accepted on the loopback only.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import urllib.parse
import webbrowser
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import google.auth.transport.requests
from google.auth.exceptions import GoogleAuthError as _LibraryAuthError
from google.auth.exceptions import RefreshError, TransportError
from google.oauth2.credentials import Credentials

from bridge.config import env
from bridge.targets.base import ReconnectNeeded  # raised here, neutral (a TargetStopped)
from bridge.targets.secrets import remove, secret_path, token_dir, write_private

__all__ = ["SCOPES", "ConnectError", "Connection", "ReconnectNeeded", "connect_installed_app",
           "connection", "disconnect", "import_authorized_user", "load_credentials",
           "open_in_browser", "save_credentials", "token_dir", "token_path"]

SCOPES = ["https://www.googleapis.com/auth/calendar"]
DEFAULT_API_URL = "https://www.googleapis.com/calendar/v3/"
TOKEN_URI_ENV = "GESTAN_BRIDGE_GOOGLE_TOKEN_URI"
AUTH_URI_ENV = "GESTAN_BRIDGE_GOOGLE_AUTH_URI"
API_URL_ENV = "GESTAN_BRIDGE_GOOGLE_API_URL"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Reasons of a token endpoint refusal that only a new consent can cure.
_RECONNECT_ERRORS = ("invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope")


class ConnectError(Exception):
    """Connecting failed (unreadable file, refused consent, no answer): nothing was stored."""


def _connect_hint(login: str) -> str:
    return f"gestan-bridge google connect --user {login} --client-secrets FILE"


# ------------------------------------------------------------------ token files
def token_path(login: str, directory: Path | None = None) -> Path:
    """The login's Google token file (``secrets.secret_path``)."""
    return secret_path(login, "", directory)


def save_credentials(login: str, credentials: Credentials, directory: Path | None = None
                     ) -> Path:
    """Write the login's token file atomically, mode 0600."""
    return write_private(token_path(login, directory), credentials.to_json().encode())


def _read_token(login: str, directory: Path | None) -> dict[str, Any]:
    path = token_path(login, directory)
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReconnectNeeded(f"{login} has not connected a Google account: run "
                              f"{_connect_hint(login)}") from None
    except (OSError, ValueError) as exc:
        raise ReconnectNeeded(f"{login}'s stored Google token {path} is unreadable "
                              f"({type(exc).__name__}). Reconnect with: "
                              f"{_connect_hint(login)}") from None
    if not isinstance(info, dict):
        raise ReconnectNeeded(f"{login}'s stored Google token {path} is not a JSON object. "
                              f"Reconnect with: {_connect_hint(login)}")
    return info


def _with_endpoint_overrides(info: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    result = dict(info)
    if "token_uri" in keys and env(TOKEN_URI_ENV):
        result["token_uri"] = env(TOKEN_URI_ENV)
    if "auth_uri" in keys and env(AUTH_URI_ENV):
        result["auth_uri"] = env(AUTH_URI_ENV)
    return result


def _credentials_from(info: Mapping[str, Any]) -> Credentials:
    """Credentials from authorized-user info. google-auth (2.63) ignores the info's token_uri
    and always uses Google's: only the environment override can change it."""
    # No scopes argument: refresh asks for the scopes the file says were granted.
    credentials = Credentials.from_authorized_user_info(info)
    override = env(TOKEN_URI_ENV)
    if override:
        credentials = _keeping_expiry(credentials, credentials.with_token_uri(override))
    return credentials


def _keeping_expiry(original: Credentials, copy: Credentials) -> Credentials:
    """google-auth's ``with_*`` copies drop the expiry, which would make an expired token
    look valid forever: put it back."""
    copy.expiry = original.expiry
    return copy


# ------------------------------------------------------------------ using a stored token
def load_credentials(login: str, *, directory: Path | None = None,
                     request: google.auth.transport.Request | None = None) -> Credentials:
    """The login's credentials, refreshed if expired (the new token is written back).

    A refusal that only a new consent can cure (revoked or expired consent, deleted OAuth
    client) raises ``ReconnectNeeded`` and leaves the token file as it was; a transient
    failure (network, 5xx) raises google-auth's own error so that callers retry later.
    """
    info = _read_token(login, directory)
    try:
        credentials = _credentials_from(info)
    except ValueError as exc:
        raise ReconnectNeeded(f"{login}'s stored Google token is incomplete ({exc}). "
                              f"Reconnect with: {_connect_hint(login)}") from None
    if credentials.valid:
        return credentials
    _refresh(login, credentials, request)
    save_credentials(login, credentials, directory)
    return credentials


def _refusal(exc: RefreshError) -> tuple[str, str]:
    """(error code, description) of a token endpoint refusal, without echoing the request."""
    for arg in exc.args:
        if isinstance(arg, Mapping) and "error" in arg:
            return str(arg["error"]), str(arg.get("error_description") or "")
    text = str(exc.args[0]) if exc.args else ""
    code = text.split(":", 1)[0].strip()
    return (code if code.replace("_", "").isalpha() else "refresh_failed"), ""


def reconnect_error(login: str, exc: RefreshError) -> ReconnectNeeded | None:
    """The error to show when Google refuses a refresh for good (None: it may pass)."""
    if getattr(exc, "retryable", False):
        return None
    code, _ = _refusal(exc)
    if code == "invalid_grant":
        return ReconnectNeeded(
            f"Google refused {login}'s stored consent (invalid_grant: revoked or expired). "
            f"Reconnect with: {_connect_hint(login)}")
    if code in _RECONNECT_ERRORS:
        return ReconnectNeeded(
            f"Google refused to refresh {login}'s stored token ({code}). "
            f"Reconnect with: {_connect_hint(login)}")
    return None


def _refresh(login: str, credentials: Credentials,
             request: google.auth.transport.Request | None) -> None:
    try:
        with _loopback_http_allowed(credentials.token_uri):
            credentials.refresh(request or google.auth.transport.requests.Request())
    except RefreshError as exc:
        refused = reconnect_error(login, exc)
        if refused is None and credentials.refresh_token is None:
            refused = ReconnectNeeded(f"{login}'s stored token cannot be refreshed. "
                                      f"Reconnect with: {_connect_hint(login)}")
        if refused is None:
            raise
        raise refused from None


# ------------------------------------------------------------------ status / disconnect
@dataclass(frozen=True)
class Connection:
    """What may be shown about a stored connection (never the tokens themselves)."""

    login: str
    path: Path
    account: str
    scopes: tuple[str, ...]
    can_refresh: bool


def connection(login: str, directory: Path | None = None) -> Connection | None:
    """The stored connection of ``login``, or None; read offline (Google is not asked)."""
    try:
        info = _read_token(login, directory)
    except ReconnectNeeded:
        if token_path(login, directory).exists():
            return Connection(login, token_path(login, directory), "", (), False)
        return None
    scopes = info.get("scopes") or []
    if isinstance(scopes, str):
        scopes = scopes.split()
    return Connection(login, token_path(login, directory), str(info.get("account") or ""),
                      tuple(str(s) for s in scopes), bool(info.get("refresh_token")))


def disconnect(login: str, directory: Path | None = None) -> bool:
    """Forget the login's token; False if there was none. (Google keeps the grant until the
    user removes it at https://myaccount.google.com/permissions.)"""
    return remove(token_path(login, directory))


# ------------------------------------------------------------------ connecting
def import_authorized_user(login: str, file: Path, *, directory: Path | None = None,
                           request: google.auth.transport.Request | None = None) -> Credentials:
    """Store an existing authorized-user JSON (as written by google-auth or gcloud) for
    ``login``, after checking with Google that its consent still works."""
    info = _read_json(file, "authorized-user")
    if info.get("type", "authorized_user") != "authorized_user":
        raise ConnectError(f"{file} is a {info.get('type')!r} file, not an authorized-user "
                           "file (type authorized_user)")
    scopes = info.get("scopes")
    if isinstance(scopes, str):
        scopes = scopes.split()
    if scopes and SCOPES[0] not in scopes:
        raise ConnectError(f"{file} does not grant Google Calendar access ({SCOPES[0]})")
    try:
        credentials = _credentials_from(info)
    except ValueError as exc:
        raise ConnectError(f"{file} is not a usable authorized-user file: {exc}") from None
    try:
        _refresh(login, credentials, request)
    except ReconnectNeeded:
        raise ConnectError(f"Google refused the consent stored in {file} (revoked, expired "
                           "or for another client): connect with --client-secrets") from None
    except (TransportError, RefreshError) as exc:
        raise ConnectError(f"cannot check {file} with Google: {type(exc).__name__}") from None
    return _store(login, credentials, directory)


def open_in_browser(url: str) -> None:
    """The default browser step: the system's browser (``$BROWSER`` is honoured)."""
    webbrowser.open(url, new=1, autoraise=True)


def connect_installed_app(
    login: str, client_secrets: Path, *,
    browser: Callable[[str], None] | None = open_in_browser,
    prompt: Callable[[str], None] = print,
    port: int = 0, timeout: float = 300.0, directory: Path | None = None,
) -> Credentials:
    """Run Google's installed-app consent and store the token for ``login``.

    A one-shot HTTP server on 127.0.0.1 (``port`` 0: any free port) receives the redirect;
    it listens before ``browser(url)`` is called, so ``browser`` may be synchronous (a test
    fetches the URL with redirects followed). ``browser`` None only prompts with the URL.
    """
    from google_auth_oauthlib.flow import InstalledAppFlow
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    config = _read_json(client_secrets, "client secrets")
    kind = next((k for k in ("installed", "web") if isinstance(config.get(k), dict)), None)
    if kind is None:
        raise ConnectError(f"{client_secrets} is not an OAuth client secrets file (no "
                           "\"installed\" client): download it from Google Cloud console, "
                           "APIs & Services > Credentials, as a Desktop app client")
    config = {kind: _with_endpoint_overrides(config[kind], "token_uri", "auth_uri")}
    try:
        flow = InstalledAppFlow.from_client_config(config, scopes=SCOPES)
    except ValueError as exc:
        raise ConnectError(f"{client_secrets} is not a usable client secrets file: {exc}"
                           ) from None
    client = config[kind]
    with _loopback_http_allowed(client["auth_uri"], client["token_uri"]), \
            _RedirectReceiver(port) as receiver:
        flow.redirect_uri = receiver.redirect_uri
        url, state = flow.authorization_url(prompt="consent", access_type="offline")
        prompt(f"Open this address in a browser and allow access to Google Calendar for "
               f"{login}:\n{url}")
        if browser is not None:
            browser(url)
        answer = receiver.wait(timeout)
        if answer is None:
            raise ConnectError(f"no answer from the browser within {timeout:g} s: nothing "
                               "stored, run the command again")
        if answer.get("state") != state:
            raise ConnectError("the browser's answer is not for this request (state "
                               "mismatch): nothing stored")
        if "code" not in answer:
            raise ConnectError(f"Google did not grant access ({answer.get('error', 'no code')})"
                               ": nothing stored")
        try:
            # client id and secret in the form body (client_secret_post), as Google documents
            # for installed apps, rather than requests-oauthlib's default Basic header
            flow.fetch_token(code=answer["code"], include_client_id=True)
        except OAuth2Error as exc:
            raise ConnectError(f"Google refused the authorization code ({exc.error}): "
                               "nothing stored") from None
        except OSError as exc:  # requests' connection errors are OSErrors
            raise ConnectError(f"cannot reach Google's token endpoint: "
                               f"{type(exc).__name__}") from None
    credentials = flow.credentials
    if not credentials.refresh_token:
        raise ConnectError("Google gave no refresh token: remove gestan-bridge at "
                           "https://myaccount.google.com/permissions and connect again")
    return _store(login, credentials, directory)


def _store(login: str, credentials: Credentials, directory: Path | None) -> Credentials:
    if not credentials.account:
        account = primary_calendar_id(credentials)
        if account:
            credentials = _keeping_expiry(credentials, credentials.with_account(account))
    save_credentials(login, credentials, directory)
    return credentials


def primary_calendar_id(credentials: Credentials, timeout: float = 10.0) -> str:
    """The account's e-mail address (its primary calendar's id), or "" if Google cannot say:
    the calendar scope gives no userinfo, and the address is only for display."""
    from google.auth.transport.requests import AuthorizedSession

    api = env(API_URL_ENV) or DEFAULT_API_URL
    url = api.rstrip("/") + "/calendars/primary"
    try:
        with _loopback_http_allowed(credentials.token_uri):
            response = AuthorizedSession(credentials).get(url, timeout=timeout)
        found = response.json().get("id", "") if response.status_code == 200 else ""
    except (OSError, ValueError, _LibraryAuthError):
        return ""
    return found if isinstance(found, str) and "@" in found else ""


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(file).read_text())
    except OSError as exc:
        raise ConnectError(f"cannot read {what} file {file}: {exc.strerror or exc}") from None
    except ValueError:
        raise ConnectError(f"{what} file {file} is not JSON") from None
    if not isinstance(data, dict):
        raise ConnectError(f"{what} file {file} is not a JSON object")
    return data


@contextlib.contextmanager
def _loopback_http_allowed(*uris: str | None) -> Iterator[None]:
    """oauthlib refuses plain http; allow it while talking to a loopback endpoint (the test
    fakes, a local proxy), never for a remote host."""
    loopback_http = any(
        uri and urllib.parse.urlsplit(uri).scheme == "http"
        and urllib.parse.urlsplit(uri).hostname in LOOPBACK_HOSTS for uri in uris)
    name = "OAUTHLIB_INSECURE_TRANSPORT"
    if not loopback_http or os.environ.get(name):
        yield
        return
    os.environ[name] = "1"
    try:
        yield
    finally:
        os.environ.pop(name, None)


class _RedirectReceiver:
    """A one-shot loopback HTTP server that waits for Google's redirect to redirect_uri."""

    def __init__(self, port: int) -> None:
        self.answer: dict[str, str] | None = None
        self._received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if "code" not in query and "error" not in query:
                    self.send_error(404)
                    return
                receiver.answer = {k: v[0] for k, v in query.items()}
                body = ("gestan-bridge: Google access granted, you may close this window."
                        if "code" in query else
                        "gestan-bridge: Google access was not granted.").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                receiver._received.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # the request line holds the authorization code: never log it

        self._server = HTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="gestan-bridge-oauth-redirect")

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def wait(self, timeout: float) -> dict[str, str] | None:
        return self.answer if self._received.wait(timeout) else None

    def __enter__(self) -> _RedirectReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
