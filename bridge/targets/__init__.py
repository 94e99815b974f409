"""Remote calendars (cibles) the bridge syncs Gestan's appointments with, and their registry.

Each kind of target is registered once, here, with its name (``--target NAME``, the key of
its links, sync state and runs in the store), how to tell whether a user has it set up, and
a factory building its :class:`~bridge.targets.base.Target`. The sync runner knows targets
only through this registry. A target's own modules are imported when it is built, not here,
so that importing ``bridge.targets.base`` stays cheap and free of cycles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.targets.base import Target, TargetStopped

if TYPE_CHECKING:
    from bridge.store.records import User

__all__ = ["ALL", "TargetKind", "connected", "get", "kinds", "names", "register"]

ALL = "all"  # --target all: every kind the user has set up


@dataclass(frozen=True)
class TargetKind:
    """One kind of remote calendar, as the runner sees it."""

    name: str
    label: str                                   # for messages: "Google"
    setup_needed: Callable[[User], str | None]   # None: set up; else the commands to run
    build: Callable[[User], Target]              # may raise TargetStopped (ReconnectNeeded...)

    def connected(self, user: User) -> bool:
        """Whether ``user`` has this target set up (read locally: the remote is not asked)."""
        return self.setup_needed(user) is None


_KINDS: dict[str, TargetKind] = {}


def register(kind: TargetKind) -> TargetKind:
    """Add a kind of target; its name must be new (and not ``all``, which means every one)."""
    if kind.name in _KINDS or kind.name == ALL:
        raise ValueError(f"target name {kind.name!r} is already taken")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> list[TargetKind]:
    """Every registered kind, in registration order (the order runs are made in)."""
    return list(_KINDS.values())


def names() -> list[str]:
    return list(_KINDS)


def get(name: str) -> TargetKind | None:
    return _KINDS.get(name)


def connected(user: User) -> list[TargetKind]:
    """The kinds ``user`` has set up, in registration order."""
    return [kind for kind in _KINDS.values() if kind.connected(user)]


# ------------------------------------------------------------------ Google Calendar
def _google_setup_needed(user: User) -> str | None:
    from bridge.targets import google_auth

    steps = []
    if not user.settings.get("google_calendar"):
        steps.append(f"gestan-bridge users set {user.login} --google-calendar NAME")
    if google_auth.connection(user.login) is None:
        steps.append(f"gestan-bridge google connect --user {user.login} --client-secrets FILE")
    return ", then ".join(steps) or None


def _build_google(user: User) -> Target:
    from google.auth.exceptions import GoogleAuthError

    from bridge.targets.google import GoogleTarget
    from bridge.targets.google_auth import load_credentials

    try:
        credentials = load_credentials(user.login)  # ReconnectNeeded when only consent helps
    except GoogleAuthError as exc:  # the token endpoint cannot be reached now
        raise TargetStopped(f"Google could not be reached to refresh {user.login}'s access "
                            f"token ({type(exc).__name__}); run it again later") from None
    return GoogleTarget(credentials, user.login, user.settings["google_calendar"],
                        user.timezone)


register(TargetKind("google", "Google", _google_setup_needed, _build_google))


# ------------------------------------------------------------------ Outlook (EWS or Graph)
OUTLOOK = "outlook"


def _outlook_setup_needed(user: User) -> str | None:
    from bridge.targets import graph_auth, outlook_auth

    try:
        if graph_auth.connection(user.login) or outlook_auth.load(user.login):
            return None
    except outlook_auth.OutlookConnectError as exc:
        return str(exc)
    return (f"gestan-bridge outlook connect --user {user.login} --email EMAIL --username USER "
            "--password-file FILE [--ews-url URL] (Exchange), or --graph --tenant TENANT "
            "--client-id CID [--client-secret-file FILE --mailbox EMAIL] (Microsoft 365)")


def _build_outlook(user: User) -> Target:
    """The user's one Outlook connection, whichever protocol it speaks: its links and sync
    state live under "outlook", so that Gestan's hooks name one target."""
    from bridge.targets import graph_auth, outlook_auth

    calendar = user.settings.get("outlook_calendar") or None
    target: Target
    if graph_auth.connection(user.login) is not None:
        from bridge.targets.graph import build_target

        target = build_target(user.login, calendar, user.timezone)
    else:
        from bridge.targets.ews import EwsTarget

        try:
            found = outlook_auth.load(user.login)
        except outlook_auth.OutlookConnectError as exc:
            raise TargetStopped(str(exc)) from None
        if found is None:
            raise TargetStopped(f"{user.login} has no Outlook connection: "
                                f"{_outlook_setup_needed(user)}")
        from exchangelib import BASIC, NTLM

        target = EwsTarget(service_endpoint=found.service_endpoint, username=found.username,
                           password=found.password, email=found.email, calendar_name=calendar,
                           default_tz=user.timezone, login=user.login,
                           auth_type=NTLM if found.auth_type == "ntlm" else BASIC)
    target.name = OUTLOOK
    return target


register(TargetKind(OUTLOOK, "Outlook", _outlook_setup_needed, _build_outlook))
