"""Shared fixtures: a store on a fresh database (SQLite file and PostgreSQL), and a real
gestan-bridge server (Radicale with our plugins) on 127.0.0.1 with alice, bob and an admin,
carol.

A new database at the newest schema (``db_url``, ``sqlite_at_head``) is a copy of one
migrated once per test process (a copied file; ``CREATE DATABASE ... TEMPLATE``): running
the migrations for every test cost a tenth to a third of a second each. The migrations
themselves run from nothing in the tests that take ``new_db_url`` (tests/test_store.py,
tests/test_upgrade.py, tests/test_cli.py)."""

from __future__ import annotations

import os

# bcrypt at full cost makes every new login take a quarter of a second; tests use cost 4.
os.environ.setdefault("GESTAN_BRIDGE_BCRYPT_ROUNDS", "4")

import atexit  # noqa: E402
import functools  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from bridge.server import Server, load_configuration  # noqa: E402
from bridge.store import Store, open_store  # noqa: E402
from bridge.store.engine import make_engine, migrate  # noqa: E402
from tests.pgserver import PostgresServer, postgres_server, postgres_url  # noqa: E402, F401

REPO = Path(__file__).resolve().parent.parent
PASSWORDS = {"alice": "alice", "bob": "bob", "carol": "carol-secret"}


@pytest.fixture(autouse=True)
def _stores_closed_after_each_test() -> Iterator[None]:
    """The stores a test opened are closed after it (their engines disposed, the process's
    store cache forgotten): else every test's store stayed, with its open connections (file
    descriptors) and compiled statements, ~1 M objects by the end that each full garbage
    collection went through again. Stores of wider-scoped fixtures opened before are kept."""
    from bridge.store import _stores  # the cache behind open_store (bridge/store)

    before = set(_stores)
    yield
    for url in set(_stores) - before:
        _stores.pop(url).engine.dispose()


def _migrated(url: str) -> None:
    """Bring the database at ``url`` to the newest schema, and leave nobody connected."""
    engine = make_engine(url)
    try:
        migrate(engine)
    finally:
        engine.dispose()


@functools.cache
def _sqlite_template() -> Path:
    """A SQLite file at the newest schema, made once per process, removed at its exit."""
    directory = Path(tempfile.mkdtemp(prefix="gestan-template-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    path = directory / "gestan.db"
    _migrated(f"sqlite:///{path}")
    # The last connection closed wrote the write-ahead log back into the file: the file
    # alone is the whole database.
    assert not path.with_name(f"{path.name}-wal").exists()
    return path


def sqlite_at_head(path: Path) -> str:
    """A new SQLite database at ``path`` at the newest schema, as opening a store leaves a
    new file (a copy of one migrated once); its URL."""
    shutil.copyfile(_sqlite_template(), path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def _postgres_template(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = "gestan_template"
    _migrated(server.create_database(name))
    return name


@pytest.fixture
def migrated_postgres_url(request: pytest.FixtureRequest, _postgres_template: str
                          ) -> Iterator[str]:
    """URL of a new PostgreSQL database at the newest schema, dropped after the test."""
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.copy_of(_postgres_template)
    yield url
    server.drop_database_later(url.rsplit("/", 1)[1])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store and server test runs on the embedded SQLite file and on a real
    PostgreSQL server started by the suite itself (tests/pgserver.py): a new database at
    the newest schema."""
    if request.param == "postgresql":
        return request.getfixturevalue("migrated_postgres_url")
    return sqlite_at_head(tmp_path / "gestan.db")


@pytest.fixture(params=["sqlite", "postgresql"])
def new_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database (no schema yet), as a new installation has: for the tests of
    the migrations themselves."""
    if request.param == "postgresql":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'gestan.db'}"


@pytest.fixture
def store(db_url: str) -> Store:
    store = open_store(db_url)
    store.add_user("alice", PASSWORDS["alice"], name="Alice Martin", timezone="Europe/Paris")
    store.add_user("bob", PASSWORDS["bob"], name="Bob Durand", timezone="America/Montreal")
    store.add_user("carol", PASSWORDS["carol"], name="Carol Admin", is_admin=True)
    return store


@dataclass
class RunningServer:
    url: str
    store: Store

    def session(self, login: str) -> requests.Session:
        session = requests.Session()
        session.auth = (login, PASSWORDS[login])
        return session

    def calendar_url(self, login: str) -> str:
        return f"{self.url}{login}/rendez-vous/"


@pytest.fixture
def server(store: Store) -> Iterator[RunningServer]:
    configuration = load_configuration(
        REPO / "radicale.conf", store.url, "127.0.0.1", 0,
        overrides={"auth": {"delay": "0.01"}, "logging": {"level": "warning"},
                   "server": {"delay_on_error": "0"}})  # Radicale's 1 s pause before a 500
    running = Server(configuration, ("127.0.0.1", 0)).start()
    try:
        yield RunningServer(running.url, store)
    finally:
        running.stop()


def snapshot(store: Store) -> dict:
    """Everything a test must find unchanged after a refused request."""
    with store.reading() as conn:
        from sqlalchemy import text

        return {table: conn.execute(text(f"SELECT * FROM {table} ORDER BY id")).fetchall()
                for table in ("users", "actions", "calendar_objects")}
