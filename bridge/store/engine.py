"""Database engines: SQLite (the embedded default) and PostgreSQL, migrated on open.

SQLite runs in WAL mode with foreign keys on. Its deferred transactions fail with
``SQLITE_BUSY`` when a reader later tries to write while another connection wrote, so
write transactions start with ``BEGIN IMMEDIATE`` (they queue on the busy timeout instead).
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Connection

from bridge.config import setting

_MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE_OPTION = "gestan_write"


def database_url(url: str | None = None) -> str:
    """The URL to use: the explicit one, else ``$GESTAN_BRIDGE_DB``, else ``[gestan] db_url``
    of the configuration file, else ``gestan.db`` here (bridge.config)."""
    return setting("db_url", url or None)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed, connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=10, max_overflow=20,
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: "
                     "use sqlite:///FILE or postgresql+psycopg://...")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Years of appointments are tens of MB: keep the hot pages (indexes, recent rows) in
        # memory rather than the 2 MB default page cache.
        cursor.execute("PRAGMA cache_size=-32768")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def write_options() -> dict:
    """Execution options marking a connection that will write (see module doc)."""
    return {_WRITE_OPTION: True}


_migrated: set[str] = set()
_migrate_lock = threading.Lock()


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest Alembic revision (once per process)."""
    key = engine.url.render_as_string(hide_password=False)
    with _migrate_lock:
        if key in _migrated:
            return
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with engine.connect().execution_options(**write_options()) as conn:
            if conn.dialect.name == "postgresql":
                # Two servers starting at once must not both create the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7415161)")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        _migrated.add(key)
