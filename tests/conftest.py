"""Shared fixtures: a store on a fresh SQLite file, and a real gestan-bridge server
(Radicale with our plugins) on 127.0.0.1 with alice, bob and an admin, carol."""

from __future__ import annotations

import os

# bcrypt at full cost makes every new login take a quarter of a second; tests use cost 4.
os.environ.setdefault("GESTAN_BRIDGE_BCRYPT_ROUNDS", "4")

from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import requests  # noqa: E402

from bridge.server import Server, load_configuration  # noqa: E402
from bridge.store import Store, open_store  # noqa: E402
from tests.pgserver import postgres_server, postgres_url  # noqa: E402, F401

REPO = Path(__file__).resolve().parent.parent
PASSWORDS = {"alice": "alice", "bob": "bob", "carol": "carol-secret"}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """Every store and server test runs on the embedded SQLite file and on a real
    PostgreSQL server started by the suite itself (tests/pgserver.py)."""
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
        overrides={"auth": {"delay": "0.01"}, "logging": {"level": "warning"}})
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
