"""A user's Outlook connection: which Exchange server (EWS, on premises) or Microsoft 365
tenant (Graph) and the credentials to reach it, kept like Google's tokens
(``bridge.targets.secrets``: one 0600 file per user, never printed or logged).

``connect_ews`` checks the credentials against the server before storing anything, with
exchangelib's FailFast policy: a wrong password is one clear error at once (its default
policy reads a 401 as throttling and waits for minutes). What the check learns (the service
endpoint, found by autodiscover when not given) is kept, so that a sync asks for nothing
but its own work.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bridge.targets.secrets import remove, secret_path, write_private

SUFFIX = ".outlook"
AUTH_TYPES = ("basic", "ntlm")


class OutlookConnectError(Exception):
    """The connection could not be made or checked (one line, says what to do)."""


@dataclass(frozen=True)
class EwsConnection:
    """An on-premises Exchange mailbox reached through EWS."""

    email: str
    username: str
    password: str
    service_endpoint: str
    auth_type: str = "basic"
    kind: str = "ews"

    def describe(self) -> str:
        """What ``outlook status`` shows: never the password."""
        return (f"Exchange (EWS) mailbox {self.email} at {self.service_endpoint}, user "
                f"{self.username}, {self.auth_type} authentication")


def connection_path(login: str, directory: Path | None = None) -> Path:
    return secret_path(login, SUFFIX, directory)


def save(login: str, connection: EwsConnection, directory: Path | None = None) -> Path:
    return write_private(connection_path(login, directory),
                         json.dumps(asdict(connection), sort_keys=True).encode())


def load(login: str, directory: Path | None = None) -> EwsConnection | None:
    """The stored connection of ``login``, or None; read offline."""
    path = connection_path(login, directory)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OutlookConnectError(
            f"{login}'s stored Outlook connection {path} is unreadable ({type(exc).__name__}):"
            f" run gestan-bridge outlook connect --user {login} again") from None
    if info.get("kind") != "ews":
        raise OutlookConnectError(
            f"{login}'s stored Outlook connection {path} is of an unknown kind: run "
            f"gestan-bridge outlook connect --user {login} again")
    fields = {k: info[k] for k in ("email", "username", "password", "service_endpoint",
                                   "auth_type") if k in info}
    return EwsConnection(**fields)


def disconnect(login: str, directory: Path | None = None) -> bool:
    return remove(connection_path(login, directory))


def ews_account(connection: EwsConnection, *, fail_fast: bool = True):
    """An exchangelib Account for the connection, with no autodiscover (the endpoint is
    known) and, for a check, no retrying of what will not get better."""
    from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials
    from exchangelib.protocol import FailFast, FaultTolerance

    policy = FailFast() if fail_fast else FaultTolerance(max_wait=60)
    config = Configuration(
        service_endpoint=connection.service_endpoint,
        credentials=Credentials(connection.username, connection.password),
        auth_type=NTLM if connection.auth_type == "ntlm" else BASIC, retry_policy=policy,
        version=_version())
    return Account(connection.email, config=config, autodiscover=False, access_type=DELEGATE)


def _version():
    """Exchange 2013 SP1's API level: every on-premises server still in support speaks it,
    and naming it spares a version probe on every run."""
    from exchangelib import Build, Version

    return Version(build=Build(15, 0, 847, 32))


def check_ews(connection: EwsConnection) -> None:
    """Ask the server for the mailbox's calendar; one clear error when that fails."""
    from exchangelib.errors import (
        EWSError,
        RateLimitError,
        TransportError,
        UnauthorizedError,
    )

    try:
        ews_account(connection).calendar  # noqa: B018 - the request is the point
    except UnauthorizedError:
        raise OutlookConnectError(_refusal(connection)) from None
    except (TransportError, RateLimitError, OSError) as exc:
        raise OutlookConnectError(
            f"Exchange could not be reached at {connection.service_endpoint} "
            f"({type(exc).__name__})") from None
    except EWSError as exc:
        raise OutlookConnectError(
            f"Exchange answered {type(exc).__name__} at {connection.service_endpoint}") from None


def _refusal(connection: EwsConnection) -> str:
    """Why Exchange answered 401: a scheme it does not take (asked again, without
    credentials, for the schemes it offers), else the user name or password."""
    endpoint, wanted = connection.service_endpoint, connection.auth_type
    offered = _offered_schemes(endpoint)
    if offered and wanted not in offered:
        usable = [name for name in AUTH_TYPES if name in offered]
        advice = (f"run gestan-bridge outlook connect again with --auth {usable[0]}" if usable
                  else "gestan-bridge speaks " + " or ".join(AUTH_TYPES))
        return (f"Exchange at {endpoint} does not take {wanted} authentication (it offers "
                f"{', '.join(sorted(offered))}): {advice}")
    return (f"Exchange refused user {connection.username!r} at {endpoint} (wrong user name or "
            "password): check them, then run gestan-bridge outlook connect again")


def _offered_schemes(endpoint: str) -> set[str]:
    """The schemes a 401's WWW-Authenticate names (lower case); empty when not learnt."""
    import requests

    try:
        answer = requests.post(endpoint, data=b"", timeout=10, allow_redirects=False,
                               headers={"Content-Type": "text/xml; charset=utf-8"})
    except requests.RequestException:
        return set()
    if answer.status_code != 401:
        return set()
    challenges = answer.headers.get("WWW-Authenticate", "").split(",")
    return {words[0].lower() for words in (c.split() for c in challenges)
            if words and "=" not in words[0] and '"' not in words[0]}


def connect_ews(login: str, *, email: str, username: str, password: str,
                ews_url: str | None = None, auth_type: str = "basic",
                directory: Path | None = None) -> EwsConnection:
    """Find the server (autodiscover from the e-mail address when ``ews_url`` is None),
    check the credentials, then store the connection (replacing any other)."""
    if auth_type not in AUTH_TYPES:
        raise OutlookConnectError(f"unknown authentication {auth_type!r}: basic or ntlm")
    endpoint = ews_url or _autodiscover(email, username, password, auth_type)
    connection = EwsConnection(email, username, password, endpoint, auth_type)
    check_ews(connection)
    save(login, connection, directory)
    return connection


def _autodiscover(email: str, username: str, password: str, auth_type: str) -> str:
    """The EWS endpoint exchangelib's autodiscover finds for ``email``. The Account gets the
    check's configuration (auth type, FailFast), since exchangelib keeps the protocol it
    makes here for the check that follows."""
    from exchangelib import BASIC, DELEGATE, NTLM, Account, Configuration, Credentials
    from exchangelib.errors import (
        AutoDiscoverError,
        EWSError,
        TransportError,
        UnauthorizedError,
    )
    from exchangelib.protocol import FailFast

    config = Configuration(credentials=Credentials(username, password),
                           auth_type=NTLM if auth_type == "ntlm" else BASIC,
                           retry_policy=FailFast(), version=_version())
    try:
        account = Account(email, config=config, autodiscover=True, access_type=DELEGATE)
        return str(account.protocol.service_endpoint)
    except UnauthorizedError:
        raise OutlookConnectError(
            f"Exchange refused user {username!r} when autodiscovering {email} (wrong user "
            "name or password): check them, then run gestan-bridge outlook connect again"
            ) from None
    except (AutoDiscoverError, TransportError, EWSError, OSError) as exc:
        raise OutlookConnectError(
            f"autodiscover found no Exchange server for {email} ({type(exc).__name__}): "
            "give its address with --ews-url https://SERVER/EWS/Exchange.asmx") from None
