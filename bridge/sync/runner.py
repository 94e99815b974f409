"""One sync run from a user's settings: the entry point shared by the CLI and the HTTP
trigger (both answer the same :class:`RunReport`)."""

from __future__ import annotations

from bridge.store import Store
from bridge.sync.engine import Progress, SyncOptions, SyncRun
from bridge.sync.report import RunReport

TARGETS = ("google",)


class SyncSetupError(Exception):
    """The user's settings do not allow this sync (no calendar named, not connected...)."""


def make_target(store: Store, login: str, target: str):
    """The configured target of ``login``; only this function knows which targets exist."""
    user = store.require_user(login)
    if target != "google":
        raise SyncSetupError(f"unknown target {target!r}: choose one of {', '.join(TARGETS)}")
    from bridge.targets.google import GoogleTarget
    from bridge.targets.google_auth import ReconnectNeeded, load_credentials

    calendar = user.settings.get("google_calendar")
    if not calendar:
        raise SyncSetupError(
            f"{login} has no Google calendar set: gestan-bridge users set {login} "
            "--google-calendar NAME")
    try:
        credentials = load_credentials(login)
    except ReconnectNeeded as exc:
        raise SyncSetupError(str(exc)) from exc
    return GoogleTarget(credentials, login, calendar, user.timezone)


def run_sync(store: Store, login: str, direction: str, target: str = "google",
             options: SyncOptions | None = None, progress: Progress | None = None
             ) -> RunReport:
    from googleapiclient.errors import HttpError

    from bridge.targets.google import CalendarNotFound
    from bridge.targets.google_auth import ReconnectNeeded

    if direction not in ("open", "close"):
        raise SyncSetupError(f"unknown direction {direction!r}: open or close")
    remote = make_target(store, login, target)
    run = SyncRun(store, login, remote, options, progress)
    try:
        return run.pull() if direction == "open" else run.push()
    except CalendarNotFound as exc:
        # look the name up again next time (the calendar may be recreated or renamed)
        store.save_sync_state(run.user.id, target, calendar_id=None)
        raise SyncSetupError(str(exc)) from exc
    except ReconnectNeeded as exc:
        raise SyncSetupError(str(exc)) from exc
    except HttpError as exc:
        raise SyncSetupError(f"Google refused the request ({exc.resp.status}): "
                             f"{exc.reason or exc}; the run stopped, see gestan-bridge sync "
                             f"log --user {login}") from exc
