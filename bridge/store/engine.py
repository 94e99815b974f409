"""Database engines: SQLite (the embedded default) and PostgreSQL, migrated on open.

SQLite runs in WAL mode with foreign keys on. Its deferred transactions fail with
``SQLITE_BUSY`` when a reader later tries to write while another connection wrote, so
write transactions start with ``BEGIN IMMEDIATE`` (they queue on the busy timeout instead).
"""

from __future__ import annotations

import ast
import functools
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

from bridge.config import setting

_MIGRATIONS = Path(__file__).with_name("migrations")
_WRITE_OPTION = "gestan_write"


def database_url(url: str | None = None) -> str:
    """The URL to use: the explicit one, else ``$GESTAN_BRIDGE_DB``, else ``[gestan] db_url``
    of the configuration file, else ``gestan.db`` here (bridge.config)."""
    return setting("db_url", url or None)


class DatabaseUrlError(ValueError):
    """A database URL that cannot be used, with the reason and the forms that can."""


_FORMS = "use sqlite:///FILE or postgresql+psycopg://USER@HOST/DATABASE"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        shown = f" {url!r}" if "@" not in url else ""  # it may hold a password
        raise DatabaseUrlError(f"cannot read the database URL{shown}: {_FORMS}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseUrlError(
                f"{url!r} names no database file (an in-memory database would vanish with "
                "the process): use sqlite:///FILE (sqlite:////ABSOLUTE/PATH)")
        folder = Path(parsed.database).absolute().parent
        if not parsed.database.startswith("file:") and not folder.is_dir():
            raise DatabaseUrlError(f"no directory {folder} for the database file of {url!r}")
        engine = create_engine(
            parsed, connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=10, max_overflow=20,
        )
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise DatabaseUrlError(
        f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}: {_FORMS}")


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


def migrations_config() -> Config:
    """Alembic's configuration for our migrations (the connection is handed over in
    ``config.attributes["connection"]``, see ``migrations/env.py``). Alembic is imported
    here, when there is something to do."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


def schema_revisions() -> list[str]:
    """The schema revisions this code knows, oldest first (the last one is the head)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest Alembic revision (once per process).

    A database already at the newest revision is only read: Alembic, a tenth of a second
    to import, is loaded when there is something to do."""
    key = engine.url.render_as_string(hide_password=False)
    with _migrate_lock:
        if key in _migrated:
            return
        if _revision(engine) in head_revisions():
            _migrated.add(key)
            return
        from alembic import command

        config = migrations_config()
        with engine.connect().execution_options(**write_options()) as conn:
            if conn.dialect.name == "postgresql":
                # Two servers starting at once must not both create the tables.
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7415161)")
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
            conn.commit()
        _migrated.add(key)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest revision(s) of the migration scripts, read from their text (what
    Alembic's ``ScriptDirectory.get_heads()`` says, without importing Alembic); empty when
    a script is not understood, so that Alembic decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (_MIGRATIONS / "versions").glob("*.py"):
        found = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            target = (node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1
                      else node.target if isinstance(node, ast.AnnAssign) else None)
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except (ValueError, TypeError):
                    return frozenset()
        down = found.get("down_revision")
        down = [down] if isinstance(down, str) else list(down or ())
        if not isinstance(found.get("revision"), str) or not all(
                isinstance(d, str) for d in down):
            return frozenset()
        revisions.add(found["revision"])
        parents.update(down)
    return frozenset(revisions - parents)


def _revision(engine: Engine) -> str | None:
    """The database's Alembic revision (None: a new database, or not one of ours yet)."""
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:
        return None
