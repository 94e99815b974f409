"""Self-test of tests/pgserver.py: a real, private PostgreSQL server reached through
SQLAlchemy, with one isolated database per use. The postgres_server and postgres_url
fixtures come from tests/pgserver.py through tests/conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import create_engine, text

if TYPE_CHECKING:
    from tests.pgserver import PostgresServer


def test_server_answers_on_loopback_only(postgres_server: PostgresServer) -> None:
    engine = create_engine(postgres_server.url())
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1 + 1")).scalar_one() == 2
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            assert conn.execute(text("SHOW fsync")).scalar_one() == "off"
            assert int(conn.execute(text("SHOW max_connections")).scalar_one()) >= 100
    finally:
        engine.dispose()


def test_databases_are_isolated(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    engines = [create_engine(url) for url in (first, second)]
    try:
        with engines[0].begin() as conn:
            conn.execute(text("CREATE TABLE notes (body text)"))
            conn.execute(text("INSERT INTO notes VALUES ('only in the first')"))
        with engines[1].connect() as conn:
            assert conn.execute(text("SELECT to_regclass('notes')")).scalar_one() is None
        with engines[0].connect() as conn:
            assert conn.execute(text("SELECT body FROM notes")).scalar_one() == "only in the first"
    finally:
        for engine in engines:
            engine.dispose()
        for url in (first, second):
            postgres_server.drop_database(url.rsplit("/", 1)[1])


def test_postgres_url_fixture_gives_an_empty_database(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            count = conn.execute(text(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar_one()
            assert count == 0
            assert conn.execute(text("SELECT current_database()")).scalar_one().startswith("test_")
    finally:
        engine.dispose()


def test_copies_of_a_template_hold_its_tables_and_are_isolated(
        postgres_server: PostgresServer) -> None:
    template_url = postgres_server.create_database()
    template = template_url.rsplit("/", 1)[1]
    engine = create_engine(template_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (body text)"))
        conn.execute(text("INSERT INTO notes VALUES ('from the template')"))
    engine.dispose()
    copies = [postgres_server.copy_of(template) for _ in range(3)]
    assert len(set(copies)) == 3 and template_url not in copies
    engines = [create_engine(url) for url in copies]
    try:
        with engines[0].begin() as conn:
            conn.execute(text("INSERT INTO notes VALUES ('only in the first copy')"))
        for engine in engines[1:]:
            with engine.connect() as conn:
                assert conn.execute(text("SELECT body FROM notes")).scalars().all() \
                    == ["from the template"]
    finally:
        for engine in engines:
            engine.dispose()
        for url in (*copies, template_url):
            postgres_server.drop_database_later(url.rsplit("/", 1)[1])
