"""``gestan-bridge sync open|close|log``: Gestan's open and close hooks, and the audit log.
The store and the sync engine are imported by the commands (``--help`` loads neither).

Exit status of ``sync open|close``: 0 every run finished, 3 finished but items were skipped,
1 a run stopped or could not start (reason: one line on stderr per run).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from bridge import targets
from bridge.cli.common import CliError, DbOption, UserOption, open_db

if TYPE_CHECKING:
    from bridge.sync.report import SyncResult

sync_app = typer.Typer(no_args_is_help=True,
                       help="Sync a user's Rendez-vous with their calendars (open pulls, "
                            "close pushes).")

TargetOption = Annotated[str | None, typer.Option(
    "--target", "-t", help=f"{', '.join([*targets.names(), targets.ALL])} (default: every "
                           "target the user has set up).")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print what would change; change nothing.")]
MassOption = Annotated[bool, typer.Option(
    "--allow-mass-delete", help="Apply a run that deletes more than half the appointments.")]
DaysBack = Annotated[int | None, typer.Option(
    "--days-back", min=0, max=3650,
    help="Also sync appointments ended up to N days ago (default: the user's setting, 0).")]


def _run(direction: str, user: str, target: str | None, db: str | None, dry_run: bool,
         allow_mass_delete: bool, days_back: int | None) -> None:
    from bridge.sync.engine import SyncOptions
    from bridge.sync.runner import SyncSetupError, run_sync

    store = open_db(db)
    options = SyncOptions(dry_run=dry_run, allow_mass_delete=allow_mass_delete,
                          days_back=days_back)
    try:
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=True) as bar:
                task = bar.add_task(direction, total=None)
                result = run_sync(store, user, direction, target, options,
                                  lambda phase, done, total: bar.update(
                                      task, completed=done, total=total))
        else:
            result = run_sync(store, user, direction, target, options)
    except SyncSetupError as exc:
        raise CliError(str(exc)) from exc
    _print(result)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _print(result: SyncResult) -> None:
    """Each run's report on stdout (a run that never started has none); each stop's reason
    as one line on stderr."""
    for report in result.runs:
        if report.run_id is not None:
            for line in report.lines():
                typer.echo(line)
    for stop in result.stops():
        print(f"gestan-bridge: error: {' '.join(stop.split())}", file=sys.stderr)


@sync_app.command("open")
def sync_open(user: UserOption, target: TargetOption = None, db: DbOption = None,
              dry_run: DryRun = False, allow_mass_delete: MassOption = False,
              days_back: DaysBack = None) -> None:
    """Gestan opens the agenda: pull the targets' changes (the target wins)."""
    _run("open", user, target, db, dry_run, allow_mass_delete, days_back)


@sync_app.command("close")
def sync_close(user: UserOption, target: TargetOption = None, db: DbOption = None,
               dry_run: DryRun = False, allow_mass_delete: MassOption = False,
               days_back: DaysBack = None) -> None:
    """Gestan closes the agenda: push Gestan's changes (Gestan wins)."""
    _run("close", user, target, db, dry_run, allow_mass_delete, days_back)


@sync_app.command("unlock")
def sync_unlock(user: UserOption, db: DbOption = None) -> None:
    """Free a user's sync lock that a stopped process left (on this host a dead process's
    lock is taken over by the next run anyway; this is for one on another host)."""
    store = open_db(db)
    account = store.require_user(user)
    dropped, interrupted = store.unlock_sync(account.id)
    runs = ", ".join(f"#{n}" for n in interrupted)
    typer.echo(f"{user}: " + ("sync lock removed" if dropped else "no sync lock was held")
               + (f"; run {runs} marked interrupted" if interrupted else ""))


@sync_app.command("log")
def sync_log(user: UserOption, db: DbOption = None,
             limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
             details: Annotated[bool, typer.Option(
                 "--details", help="Every change, and the losing version of conflicts.")] = False,
             ) -> None:
    """Past runs, newest first: counts, conflicts (with the losing version)."""
    from bridge.ical.describe import describe
    from bridge.sync.report import stored_counts

    store = open_db(db)
    account = store.require_user(user)
    runs = store.sync_runs(account.id, limit)
    if not runs:
        typer.echo(f"no sync run recorded for {user}")
    for run in runs:
        c = run.counts
        gestan, remote = stored_counts(c, run.target)
        typer.echo(
            f"#{run.id} {run.started_at:%Y-%m-%d %H:%M:%S} {run.direction:5} {run.target} "
            f"{run.status}{' (dry run)' if run.dry_run else ''}: gestan "
            f"+{gestan.get('created', 0)} ~{gestan.get('updated', 0)} "
            f"-{gestan.get('deleted', 0)}, {run.target} +{remote.get('created', 0)} "
            f"~{remote.get('updated', 0)} -{remote.get('deleted', 0)}, "
            f"conflicts {c.get('conflicts', 0)}, requests {c.get('requests', 0)}"
            + (f" — {run.message}" if run.message else ""))
        for item in store.sync_run_items(run.id):
            if item.change == "conflict" or details:
                typer.echo(f"    {item.change} {item.side} {item.summary or item.uid} "
                           f"[{item.uid}] {item.detail}".rstrip())
                if item.losing_ics and (details or item.change == "conflict"):
                    typer.echo("      losing version:")
                    for line in describe(item.losing_ics, account.timezone):
                        typer.echo(f"        {line}")
