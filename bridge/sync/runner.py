"""Sync runs from a user's settings: the entry point shared by the CLI and the HTTP trigger
(both answer the same :class:`SyncResult`). Targets are known through the registry of
``bridge.targets`` only; this module names none."""

from __future__ import annotations

from bridge import targets
from bridge.store import Store
from bridge.store.records import User
from bridge.sync.engine import MassDelete, Progress, SyncBusy, SyncOptions, SyncRun
from bridge.sync.report import RunReport, SyncResult
from bridge.targets.base import CalendarNotFound, TargetStopped

ALL = targets.ALL
DIRECTIONS = ("open", "close")


class SyncSetupError(Exception):
    """Nothing can run: unknown direction or target, or no target set up for the user."""


def choose_targets(user: User, name: str | None) -> list[targets.TargetKind]:
    """The kinds to run: ``name``, or every kind ``user`` has set up (None or ``all``)."""
    if name in (None, "", ALL):
        chosen = targets.connected(user)
        if not chosen:
            hints = "; ".join(f"for {kind.label}, {kind.setup_needed(user)}"
                              for kind in targets.kinds())
            raise SyncSetupError(f"{user.login} has no calendar to sync with: {hints}")
        return chosen
    kind = targets.get(name)
    if kind is None:
        raise SyncSetupError(f"unknown target {name!r}: choose one of "
                             f"{', '.join([*targets.names(), ALL])}")
    needed = kind.setup_needed(user)
    if needed is not None:
        raise SyncSetupError(f"{user.login} has not set up {kind.label}: {needed}")
    return [kind]


def run_sync(store: Store, login: str, direction: str, target: str | None = None,
             options: SyncOptions | None = None, progress: Progress | None = None
             ) -> SyncResult:
    """Run ``direction`` (open / close) against ``target`` (a name, ``all``, or None: every
    target the user has set up), one after the other; one result for them all."""
    if direction not in DIRECTIONS:
        raise SyncSetupError(f"unknown direction {direction!r}: open or close")
    user = store.require_user(login)
    chosen = choose_targets(user, target)
    return SyncResult([_run_one(store, user, kind, direction, options or SyncOptions(),
                                progress) for kind in chosen])


def _run_one(store: Store, user: User, kind: targets.TargetKind, direction: str,
             options: SyncOptions, progress: Progress | None) -> RunReport:
    """One target's run; a stop before or during it is a report with status ``stopped``."""
    try:
        remote = kind.build(user)
        run = SyncRun(store, user.login, remote, options, progress)
        return run.pull() if direction == "open" else run.push()
    except CalendarNotFound as exc:
        # look the name up again next time (the calendar may be recreated or renamed)
        store.save_sync_state(user.id, kind.name, calendar_id=None)
        message = str(exc)
    except (TargetStopped, MassDelete, SyncBusy) as exc:
        message = str(exc)
    return RunReport(user.login, kind.name, direction, options.dry_run, status="stopped",
                     message=message)
