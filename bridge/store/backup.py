"""Backup and restore: one archive file holding the database and the users' remote tokens.

The database goes in as each engine's own consistent copy, which is what an administrator
already trusts: SQLite's online backup API (consistent while the server keeps writing) and
``pg_dump --format=custom`` (usable on its own with ``pg_restore``). The archive is a gzip
tar, written mode 0600 beside its destination and renamed into place:

- ``manifest.json``: what it holds (database kind, schema revision, counts, token files)
- ``database.sqlite3`` or ``database.pgdump``
- ``tokens/NAME``: the files of ``$GESTAN_BRIDGE_TOKEN_DIR`` (Google tokens, Outlook
  secrets), unless excluded; they are secrets, hence the archive's mode.

A restore changes nothing before every check passed (the archive is ours and readable, the
same kind of database, a schema this code knows, an empty database and no differing token
file unless ``force``), then replaces the database in one transaction: SQLite through the
backup API into the target, PostgreSQL through ``psql --single-transaction`` running the
tables' drop and ``pg_restore``'s script. Moving between SQLite and PostgreSQL is not a
restore. Every failure is a :class:`BackupError` whose message is one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from bridge.store.engine import database_url, schema_revisions
from bridge.store.schema import actions, users
from bridge.targets.secrets import token_dir, write_private

FORMAT = "gestan-bridge backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MEMBERS = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
TOKENS = "tokens/"
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9%~_-][A-Za-z0-9%~._-]{0,254}$")
_MAX_SMALL_MEMBER = 1024 * 1024  # a manifest or a token file
_PG_TOOLS_HINT = ("PostgreSQL's client tools (pg_dump, pg_restore, psql: Debian's "
                  "postgresql-client, of the server's major version or newer)")

Progress = Callable[[int, int], None]  # (pages copied, pages in all)


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is one line for the user."""


@dataclass(frozen=True)
class Summary:
    """What a backup wrote or a restore put back."""

    dialect: str
    schema: str
    counts: dict[str, int] = field(default_factory=dict)
    tokens: bool = True                   # token files were included / restored at all
    token_files: tuple[str, ...] = ()


# ------------------------------------------------------------------ backup
def backup(url: str | None, file: Path, *, tokens: bool = True, force: bool = False,
           progress: Progress | None = None) -> Summary:
    """Write the database at ``url`` (and the token files unless ``tokens`` is False) to
    the archive ``file``; an existing ``file`` is replaced only with ``force``."""
    target = _parse(url)
    file = Path(file)
    if file.is_dir():
        raise BackupError(f"{file} is a directory: name the backup file")
    if file.exists() and not force:
        raise BackupError(f"{file} already exists: add --force to replace it")
    if not file.parent.is_dir():
        raise BackupError(f"no directory {file.parent} for the backup file")
    token_data = _read_token_dir() if tokens else {}
    dialect = target.get_backend_name()
    with _workdir(file.parent) as work:
        dumped = work / MEMBERS[dialect]
        if dialect == "sqlite":
            _sqlite_copy(_sqlite_path(target), dumped, progress)
            schema, counts = _describe(make_url(f"sqlite:///{dumped}"))
        else:
            _pg_tool("pg_dump")
            schema, counts = _describe(target)
            _pg_run("pg_dump", ["--format=custom", "--no-owner", "--no-acl",
                                "--file", str(dumped)], target)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "gestan_bridge": _version(), "dialect": dialect, "schema": schema,
            "counts": counts, "tokens": tokens, "token_files": sorted(token_data),
        }
        archive = work / "archive.tar.gz"
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz", compresslevel=6) as tar:
                _add(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
                tar.add(dumped, arcname=MEMBERS[dialect], filter=_private_member)
                for name, data in sorted(token_data.items()):
                    _add(tar, TOKENS + name, data)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(archive, file)
    return Summary(dialect, schema, counts, tokens, tuple(sorted(token_data)))


def _read_token_dir() -> dict[str, bytes]:
    directory = token_dir()
    found: dict[str, bytes] = {}
    if not directory.is_dir():
        return found
    try:
        for entry in os.scandir(directory):
            # dot files are the atomic writes' temporary files
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            if not _TOKEN_NAME.match(entry.name):
                continue
            found[entry.name] = Path(entry.path).read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read the token directory {directory}: "
                          f"{exc.strerror or exc}") from None
    return found


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
    tar.addfile(info, fileobj=_BytesReader(data))


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._at + size
        chunk, self._at = self._data[self._at:end], min(end, len(self._data))
        return chunk


def _private_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
    return info


def _sqlite_copy(source: Path, dest: Path, progress: Progress | None) -> None:
    """A consistent copy of ``source`` while others may write (SQLite's backup API)."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")

    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    try:
        with contextlib.closing(sqlite3.connect(source, timeout=30)) as src, \
                contextlib.closing(sqlite3.connect(dest)) as dst:
            src.backup(dst, pages=1024, progress=step)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy {source}: {exc}") from None


# ------------------------------------------------------------------ restore
def restore(url: str | None, file: Path, *, tokens: bool = True, force: bool = False
            ) -> Summary:
    """Put the archive ``file`` back into the database at ``url`` (and its token files
    into ``$GESTAN_BRIDGE_TOKEN_DIR`` unless ``tokens`` is False)."""
    target = _parse(url)
    dialect = target.get_backend_name()
    file = Path(file)
    with _open_archive(file) as tar:
        manifest = _manifest(tar, file)
        if manifest["dialect"] != dialect:
            kind = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
            raise BackupError(
                f"{file} holds a {kind[manifest['dialect']]} database and the target is "
                f"{kind[dialect]}: restore it to a {manifest['dialect']} URL (backup and "
                "restore do not move data between SQLite and PostgreSQL)")
        schema = str(manifest["schema"])
        known = schema_revisions()
        if schema not in known:
            raise BackupError(
                f"{file} holds schema {schema}, unknown to this gestan-bridge (it knows "
                f"{known[0]} to {known[-1]}): restore it with version "
                f"{manifest.get('gestan_bridge') or 'that made it'} or newer")
        token_data = _token_members(tar, file) if tokens and manifest.get("tokens") else {}
        replaced = _tokens_replaced(token_data)
        if replaced and not force:
            raise BackupError(
                f"{token_dir()} already holds different token files ({', '.join(replaced)})"
                ": add --force to replace them, or --no-tokens to keep them")
        if dialect == "sqlite":
            _restore_sqlite(tar, file, _sqlite_path(target), force)
        else:
            _restore_postgresql(tar, file, target, force)
    for name, data in token_data.items():
        try:
            write_private(token_dir() / name, data)
        except OSError as exc:
            raise BackupError(f"database restored, but token file {name} could not be "
                              f"written in {token_dir()}: {exc.strerror or exc}") from None
    return Summary(dialect, schema, dict(manifest.get("counts") or {}),
                   bool(tokens and manifest.get("tokens")), tuple(sorted(token_data)))


@contextlib.contextmanager
def _open_archive(file: Path) -> Iterator[tarfile.TarFile]:
    if not file.is_file():
        raise BackupError(f"no backup file {file}")
    try:
        tar = tarfile.open(file, mode="r:*")  # noqa: SIM115 (closed below: errors differ)
    except tarfile.ReadError:
        raise BackupError(f"{file} is not a gestan-bridge backup (not a tar.gz archive)"
                          ) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"cannot read {file}: {_reason(exc)}") from None
    try:
        yield tar
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise BackupError(f"{file} is damaged ({_reason(exc)}): nothing restored") from None
    finally:
        tar.close()


def _member(tar: tarfile.TarFile, name: str, file: Path) -> tarfile.TarInfo:
    try:
        info = tar.getmember(name)
    except KeyError:
        raise BackupError(f"{file} is not a gestan-bridge backup (no {name})") from None
    if not info.isfile():
        raise BackupError(f"{file} is not a gestan-bridge backup ({name} is not a file)")
    return info


def _small(tar: tarfile.TarFile, info: tarfile.TarInfo, file: Path) -> bytes:
    if info.size > _MAX_SMALL_MEMBER:
        raise BackupError(f"{file}: {info.name} is larger than a backup writes it")
    reader = tar.extractfile(info)
    assert reader is not None  # a regular file
    return reader.read()


def _manifest(tar: tarfile.TarFile, file: Path) -> dict:
    try:
        manifest = json.loads(_small(tar, _member(tar, MANIFEST, file), file))
    except ValueError:
        raise BackupError(f"{file} is not a gestan-bridge backup (unreadable "
                          f"{MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{file} is not a gestan-bridge backup ({MANIFEST} of another "
                          "format)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BackupError(f"{file} was written by a newer gestan-bridge (backup format "
                          f"{version}): restore it with that version")
    if manifest.get("dialect") not in MEMBERS or not isinstance(manifest.get("schema"), str):
        raise BackupError(f"{file} is not a gestan-bridge backup (its {MANIFEST} names no "
                          "database)")
    return manifest


def _token_members(tar: tarfile.TarFile, file: Path) -> dict[str, bytes]:
    """The archive's token files, each checked to be a plain file name (an archive naming
    ``tokens/../x`` or a link is refused: nothing is written outside the token directory)."""
    found: dict[str, bytes] = {}
    for info in tar.getmembers():
        if not info.name.startswith(TOKENS):
            continue
        name = info.name[len(TOKENS):]
        if not info.isfile() or not _TOKEN_NAME.match(name):
            raise BackupError(f"{file} holds an unsafe token entry {info.name!r}: "
                              "nothing restored")
        found[name] = _small(tar, info, file)
    return found


def _tokens_replaced(token_data: dict[str, bytes]) -> list[str]:
    directory = token_dir()
    replaced = []
    for name, data in sorted(token_data.items()):
        path = directory / name
        try:
            if path.read_bytes() != data:
                replaced.append(name)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    return replaced


def _extract(tar: tarfile.TarFile, file: Path, dialect: str, work: Path) -> Path:
    info = _member(tar, MEMBERS[dialect], file)
    reader = tar.extractfile(info)
    assert reader is not None
    dest = work / MEMBERS[dialect]
    with open(dest, "wb") as out:
        shutil.copyfileobj(reader, out, 1024 * 1024)
    return dest


def _restore_sqlite(tar: tarfile.TarFile, file: Path, path: Path, force: bool) -> None:
    if not path.parent.is_dir():
        raise BackupError(f"no directory {path.parent} for the database")
    existed = path.exists()
    if existed:
        _refuse_unless_empty(make_url(f"sqlite:///{path}"), str(path), force)
    with _workdir(path.parent) as work:
        copy = _extract(tar, file, "sqlite", work)
        try:
            with contextlib.closing(sqlite3.connect(copy)) as check:
                verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
        except sqlite3.Error as exc:
            raise BackupError(f"{file} holds a damaged database ({exc}): nothing "
                              "restored") from None
        if verdict != "ok":
            raise BackupError(f"{file} holds a damaged database ({verdict}): nothing "
                              "restored")
        try:
            with contextlib.closing(sqlite3.connect(copy)) as src, \
                    contextlib.closing(sqlite3.connect(path, timeout=30)) as dst:
                src.backup(dst, pages=4096)  # one transaction on the target
        except sqlite3.Error as exc:
            if not existed:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise BackupError(f"cannot write {path}: {exc}") from None


def _restore_postgresql(tar: tarfile.TarFile, file: Path, target: URL, force: bool) -> None:
    for tool in ("pg_restore", "psql"):
        _pg_tool(tool)
    tables = _refuse_unless_empty(target, _shown(target), force)
    with _workdir(None) as work:
        dump = _extract(tar, file, "postgresql", work)
        script = work / "restore.sql"
        # pg_restore reads the whole archive to write the script: a damaged one stops here
        _pg_run("pg_restore", ["--no-owner", "--no-acl", "--file", str(script), str(dump)])
        dump.unlink()
        full = work / "replace.sql"
        with open(full, "w", encoding="utf-8") as out, \
                open(script, encoding="utf-8") as body:
            for schema_name, table in tables:
                out.write(f"DROP TABLE IF EXISTS {_quoted(schema_name)}.{_quoted(table)} "
                          "CASCADE;\n")
            shutil.copyfileobj(body, out, 1024 * 1024)
        _pg_run("psql", ["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1",
                         "--single-transaction", "--file", str(full)], target,
                failure="nothing was changed")


def _refuse_unless_empty(url: URL, shown: str, force: bool) -> list[tuple[str, str]]:
    """The target's tables ((schema, name), all to be replaced); refused when one holds
    rows and ``force`` is not given."""
    with _connection(url) as conn:
        tables = _tables(conn)
        filled = []
        for schema_name, table in tables:
            name = f"{_quoted(schema_name)}.{_quoted(table)}" if schema_name else _quoted(table)
            rows = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
            if rows and table != "alembic_version":
                filled.append(f"{table}: {rows}")
    if filled and not force:
        more = f", {len(filled) - 4} more tables" if len(filled) > 4 else ""
        raise BackupError(f"the database {shown} is not empty ({', '.join(filled[:4])}{more}"
                          "): add --force to replace its content with the backup's")
    return tables


def _tables(conn: Connection) -> list[tuple[str, str]]:
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT '' AS s, name FROM sqlite_master WHERE type = "
                                 "'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"))
    else:
        rows = conn.execute(text(
            "SELECT schemaname, tablename FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY schemaname, tablename"))
    return [(row[0], row[1]) for row in rows]


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# ------------------------------------------------------------------ shared
def _parse(url: str | None) -> URL:
    raw = database_url(url)
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise BackupError(f"invalid database URL {raw.split('@')[-1]!r}: use sqlite:///FILE "
                          "or postgresql+psycopg://USER:PASSWORD@HOST/DATABASE") from None
    if parsed.get_backend_name() not in MEMBERS:
        raise BackupError(f"unsupported database URL {_shown(parsed)!r}: use sqlite:///FILE "
                          "or postgresql+psycopg://...")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise BackupError("an SQLite backup or restore needs a database file: "
                          "sqlite:///PATH")
    return parsed


def _sqlite_path(url: URL) -> Path:
    return Path(str(url.database))


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@contextlib.contextmanager
def _connection(url: URL) -> Iterator[Connection]:
    """A plain connection (no migration, no WAL switch: a backup changes nothing)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        reason = reason.split(" (Background on this error")[0][:300]
        raise BackupError(f"database {_shown(url)}: {reason}") from None
    finally:
        engine.dispose()


def _describe(url: URL) -> tuple[str, dict[str, int]]:
    """(schema revision, counts) of a gestan-bridge database; refused if it is not one."""
    with _connection(url) as conn:
        names = {table for _, table in _tables(conn)}
        if "alembic_version" not in names or "users" not in names:
            raise BackupError(f"{_shown(url)} is not a gestan-bridge database (no schema "
                              "revision): nothing written")
        schema = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        live = actions.c.deleted.is_(False)
        counts = {
            "users": conn.execute(select(func.count()).select_from(users)).scalar_one(),
            "appointments": conn.execute(select(func.count()).select_from(actions).where(
                live, actions.c.type == "rendez-vous")).scalar_one(),
            "actions": conn.execute(select(func.count()).select_from(actions).where(
                live)).scalar_one(),
        }
    return str(schema), counts


@contextlib.contextmanager
def _workdir(beside: Path | None) -> Iterator[Path]:
    """A private (0700) scratch directory, beside the destination so that the final rename
    stays on one file system and a large database does not fill /tmp."""
    try:
        with tempfile.TemporaryDirectory(prefix=".gestan-bridge-", dir=beside) as work:
            yield Path(work)
    except PermissionError as exc:
        raise BackupError(f"cannot write in {exc.filename or beside}: permission "
                          "denied") from None


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found in PATH: a PostgreSQL backup or restore needs "
                          f"{_PG_TOOLS_HINT}")
    return found


def _pg_run(tool: str, args: list[str], url: URL | None = None, failure: str = "") -> None:
    """Run a PostgreSQL client tool; the password goes through the environment (never the
    command line, which other users see in ps)."""
    command = [_pg_tool(tool), *args]
    env = dict(os.environ)
    if url is not None:
        libpq = URL.create("postgresql", username=url.username, host=url.host,
                           port=url.port, database=url.database, query=url.query)
        command += ["--dbname", libpq.render_as_string(hide_password=False)]
        if url.password is not None:
            env["PGPASSWORD"] = str(url.password)
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        raise BackupError(f"cannot run {tool}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout or f"exit status {done.returncode}"
                           ).split())
        reason = re.sub(r"^psql:\S+?:\d+: ", "", reason)
        reason = re.sub(rf"^{tool}: (error: )?", "", reason)[:400]
        raise BackupError(f"{tool} failed: {reason}" + (f"; {failure}" if failure else ""))


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _version() -> str:
    try:
        return metadata.version("gestan-bridge")
    except metadata.PackageNotFoundError:
        return ""
