"""``gestan-bridge backup FILE`` / ``restore FILE``: the database and the users' tokens in one
archive (``bridge.store.backup`` says what it holds and how a restore stays all-or-nothing).

Registered by ``bridge.cli.main`` with :func:`register`; like the other command modules it
never imports main.py at load time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.common import DbOption, fail

FileArgument = Annotated[Path, typer.Argument(help="The backup file.")]


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)


def backup(
    file: FileArgument,
    db: DbOption = None,
    tokens: Annotated[bool, typer.Option(
        "--tokens/--no-tokens",
        help="Include the files of $GESTAN_BRIDGE_TOKEN_DIR (Google and Outlook secrets).")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
) -> None:
    """Write the database (and the users' tokens) to FILE, mode 0600, while the server
    runs: SQLite's online backup, or pg_dump for PostgreSQL."""
    from bridge.store import backup as store_backup

    with _progress("backing up") as progress:
        try:
            summary = store_backup.backup(db, file, tokens=tokens, force=force,
                                          progress=progress)
        except store_backup.BackupError as exc:
            fail(str(exc))
    typer.echo(f"backup written to {file} (mode 0600): {_described(summary)}")
    if summary.tokens and summary.token_files:
        typer.echo("it holds the users' Google/Outlook secrets: keep it as private as they are")


def restore(
    file: FileArgument,
    db: DbOption = None,
    tokens: Annotated[bool, typer.Option(
        "--tokens/--no-tokens",
        help="Put the archive's token files back into $GESTAN_BRIDGE_TOKEN_DIR.")] = True,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace a database that is not empty, and differing token files.")
    ] = False,
) -> None:
    """Put a backup back into an empty database (stop the server first); the schema is
    brought up to date when the server next starts."""
    from bridge.store import backup as store_backup

    try:
        summary = store_backup.restore(db, file, tokens=tokens, force=force)
    except store_backup.BackupError as exc:
        fail(str(exc))
    typer.echo(f"restored {file}: {_described(summary)}")


def _described(summary) -> str:
    counts = summary.counts
    parts = [f"{'SQLite' if summary.dialect == 'sqlite' else 'PostgreSQL'} database, schema "
             f"{summary.schema}",
             f"{_count(counts.get('users', 0), 'user')}, "
             f"{_count(counts.get('appointments', 0), 'appointment')} "
             f"({_count(counts.get('actions', 0), 'action')} in all)"]
    if not summary.tokens:
        parts.append("token files excluded")
    else:
        parts.append(_count(len(summary.token_files), "token file"))
    return "; ".join(parts)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


class _progress:
    """A progress bar on stderr when it is a terminal (rich); silent otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._bar = None
        self._task = None

    def __enter__(self):
        if not sys.stderr.isatty():
            return None
        from rich.console import Console
        from rich.progress import Progress

        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=None)
        return self._update

    def _update(self, done: int, total: int) -> None:
        assert self._bar is not None
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc_info) -> None:
        if self._bar is not None:
            self._bar.stop()
