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

__all__ = ["TargetKind", "connected", "get", "kinds", "names", "register"]


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
    if kind.name in _KINDS or kind.name == "all":
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
