"""A throwaway PostgreSQL server for the tests, started by the tests themselves.

`PostgresServer` runs initdb into a fresh temporary directory and starts `postgres` on a
free 127.0.0.1 port (unix socket inside that directory, trust authentication, durability
off for speed). As root it runs the server as the `postgres` user, or `nobody`.

Fixtures: `postgres_server` (session-scoped server) and `postgres_url` (a fresh, empty
database per test, as a `postgresql+psycopg://` URL); `PostgresServer.copy_of` hands out
copies of a template database (tests/conftest.py: one at the newest schema). Without
PostgreSQL they skip, except under CI (CI=true) where they fail with the reason. CI
installs PostgreSQL with .ci/install-postgres.sh.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
START_TIMEOUT = 30  # seconds; a normal start takes well under one
_counter = itertools.count()


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: PATH first, then the newest
    /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if override := os.environ.get("GESTAN_BRIDGE_PG_BINDIR"):
        candidates.append(Path(override))
    for name in BINARIES:
        if found := shutil.which(name):
            candidates.append(Path(found).parent)
            candidates.append(Path(os.path.realpath(found)).parent)

    def version(path: str) -> tuple[int, ...]:
        number = Path(path).parent.name
        return tuple(int(part) for part in number.split(".") if part.isdigit())

    candidates += [Path(d) for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                           key=version, reverse=True)]
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in BINARIES):
            return directory
    return None


def available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if find_bindir() is None:
        return ("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in PATH or "
                "/usr/lib/postgresql/*/bin; run `bash .ci/install-postgres.sh` as root")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


RAM_DISK = "/dev/shm"
RAM_DISK_ROOM = 1 << 30  # bytes free, at least, for the cluster to go there


def _parent_directory() -> str:
    """Where the cluster's directory goes: the RAM disk when there is one with room, else
    the temporary directory. Every test creates and drops a database, a few hundred files
    each: on a disk mounted with online discard (as here) each cost 0.1-0.3 s of
    journal waits, against 15 ms in memory. A cluster takes about 90 MB there."""
    try:
        room = os.statvfs(RAM_DISK)
    except OSError:
        return tempfile.gettempdir()
    if room.f_bavail * room.f_frsize >= RAM_DISK_ROOM and os.access(RAM_DISK, os.W_OK | os.X_OK):
        return RAM_DISK
    return tempfile.gettempdir()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1; use `with PostgresServer() as server:`."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port: int | None = None
        self.base: Path | None = None
        self._user = _server_user()
        self._background: concurrent.futures.ThreadPoolExecutor | None = None
        self._copies: dict[str, concurrent.futures.Future[str]] = {}  # template -> next copy

    @property
    def datadir(self) -> Path:
        assert self.base is not None, "server not started"
        return self.base / "data"

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of database `dbname` on this server."""
        assert self.port is not None, "server not started"
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string (for psycopg.connect) of database `dbname`."""
        assert self.port is not None, "server not started"
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None and self.base is not None
        user = self._user
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        if user is not None:
            env.update(HOME=str(self.base), USER=user.pw_name, LOGNAME=user.pw_name)
        return subprocess.run(
            [str(self.bindir / args[0]), *map(str, args[1:])],
            cwd=self.base, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None, timeout=START_TIMEOUT + 30)

    def _log_tail(self) -> str:
        assert self.base is not None
        try:
            return "\n".join((self.base / "server.log").read_text().splitlines()[-20:])
        except OSError:
            return ""

    def start(self) -> PostgresServer:
        """initdb a fresh cluster and start it; returns self once it accepts connections."""
        if self.bindir is None:
            raise RuntimeError(available() or "PostgreSQL binaries not found")
        if self.base is not None:
            return self
        parent = _parent_directory()
        if self._user is not None and not os.stat(parent).st_mode & 0o001:
            parent = "/tmp"  # the server user must be able to traverse to its directory
        self.base = Path(tempfile.mkdtemp(prefix="gestan-pg-", dir=parent))
        atexit.register(self.stop)
        try:
            if self._user is not None:
                os.chown(self.base, self._user.pw_uid, self._user.pw_gid)
            result = self._run("initdb", "-D", self.datadir, "-U", SUPERUSER, "-A", "trust",
                               "-E", "UTF8", "--no-locale", "--no-sync")
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed:\n{result.stdout}{result.stderr}")
            (self.datadir / "pg_hba.conf").write_text(
                "local all all trust\nhost all all 127.0.0.1/32 trust\n")
            for attempt in range(3):
                self.port = _free_port()
                with open(self.datadir / "postgresql.conf", "a") as conf:
                    conf.write(
                        "\n# tests/pgserver.py\n"
                        f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                        f"unix_socket_directories = '{self.base}'\n"
                        "max_connections = 200\nshared_buffers = 32MB\n"
                        "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                        "logging_collector = off\n")
                result = self._run("pg_ctl", "start", "-D", self.datadir, "-w",
                                   "-t", str(START_TIMEOUT), "-s",
                                   "-l", self.base / "server.log")
                if result.returncode == 0:
                    return self
                if "could not bind" not in self._log_tail() or attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}"
                                       f"{self._log_tail()}")
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Shut the server down and delete its directory (idempotent)."""
        if self._background is not None:
            self._background.shutdown(wait=True)
            self._background = None
            self._copies.clear()
        if self.base is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                result = self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "fast",
                                   "-w", "-t", "10", "-s")
                if result.returncode != 0:
                    self._run("pg_ctl", "stop", "-D", self.datadir, "-m", "immediate", "-s")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            self.port = None
            atexit.unregister(self.stop)

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """CREATE DATABASE `name` (default: a unique name), empty or a copy of database
        `template` (which nobody may be connected to); returns its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:8]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            if conn.info.server_version >= 150000:
                # PostgreSQL 15's default writes the whole copy (8 MB) to the WAL: a new
                # 16 MB segment every other database until a checkpoint recycles them,
                # ~0.1 s of server time each. Copying the files (a checkpoint of this
                # nearly idle cluster first) costs a tenth of that.
                statement += sql.SQL(" STRATEGY FILE_COPY")
            conn.execute(statement)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE `name`, disconnecting anyone still connected to it."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                         .format(sql.Identifier(name)))

    def drop_database_later(self, name: str) -> None:
        """Drop ``name`` in the background (a tenth of a second each, off the tests' path);
        :meth:`stop` waits for every drop."""
        self._in_background().submit(self.drop_database, name)

    def copy_of(self, template: str) -> str:
        """URL of a new database, a copy of ``template``, used by one caller only. The next
        copy is made in the background meanwhile (tens of milliseconds, more on a busy
        machine, off the tests' path)."""
        ready = self._copies.pop(template, None)
        url = ready.result() if ready is not None else self.create_database(template=template)
        self._copies[template] = self._in_background().submit(
            self.create_database, None, template)
        return url

    def _in_background(self) -> concurrent.futures.ThreadPoolExecutor:
        """One thread for the drops and copies: they take their turns, not the tests'."""
        if self._background is None:
            self._background = concurrent.futures.ThreadPoolExecutor(1, "pg-background")
        return self._background

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


def require_postgres() -> None:
    """Skip the calling test/fixture when PostgreSQL is unavailable; fail instead under CI."""
    if reason := available():
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole test session."""
    require_postgres()
    with PostgresServer() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server, dropped after the test."""
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database_later(url.rsplit("/", 1)[1])
