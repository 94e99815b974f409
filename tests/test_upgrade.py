"""An upgrade from the first schema with data in it: a database stamped at migration 0001
holding what a store of that time wrote, opened by this version (migrations run on start),
keeps every row and is served to a phone, which can write into it."""

from __future__ import annotations

import contextlib
from datetime import date, datetime, time, timedelta
from pathlib import Path

import caldav
import pytest
from alembic import command
from sqlalchemy import MetaData, Table, text

from bridge.ical.timezones import local_to_utc
from bridge.server import Server, load_configuration
from bridge.store import ActionType, EventData, open_store
from bridge.store.engine import make_engine, migrations_config, schema_revisions, write_options
from bridge.store.schema import metadata
from tests.conftest import PASSWORDS, REPO

FIRST_TABLES = ("users", "calendar_objects", "actions")  # what 0001 creates


def rows_written_by_a_store(tmp_path: Path) -> dict[str, list[dict]]:
    """The rows a store writes for two users with appointments, a weekly series and a call:
    the data to put into a 0001 database (its columns only)."""
    scratch = open_store(f"sqlite:///{tmp_path / 'scratch.db'}")
    scratch.add_user("alice", PASSWORDS["alice"], name="Alice Martin")
    scratch.add_user("bob", PASSWORDS["bob"], timezone="America/Montreal")
    day = date.today() + timedelta(days=5)
    start = local_to_utc(datetime.combine(day, time(10)), "Europe/Paris")
    scratch.add_action("alice", EventData(start, start + timedelta(hours=1), "Europe/Paris",
                                          subject="Client visit", location="Lyon"))
    scratch.add_action("alice", EventData(start, start + timedelta(minutes=10), "Europe/Paris",
                                          subject="Call the bank"), ActionType.CALL)
    scratch.put_object("alice", "weekly.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\nBEGIN:VEVENT\r\n"
        "UID:weekly\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID=Europe/Paris:{day:%Y%m%d}T160000\r\n"
        f"DTEND;TZID=Europe/Paris:{day:%Y%m%d}T170000\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=4\r\nSUMMARY:Team\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    with scratch.reading() as conn:
        return {name: table_rows(conn, name) for name in FIRST_TABLES}


def table_rows(conn, name: str) -> list[dict]:
    table = metadata.tables[name]
    return [dict(row._mapping) for row in conn.execute(table.select().order_by(table.c.id))]


def first_schema_with(url: str, rows: dict[str, list[dict]]) -> None:
    """Create the schema of migration 0001 only, and insert ``rows`` as it allows."""
    engine = make_engine(url)
    config = migrations_config()
    with engine.connect().execution_options(**write_options()) as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        for name in FIRST_TABLES:
            table = Table(name, MetaData(), autoload_with=conn)
            conn.execute(table.insert(), [{k: v for k, v in row.items() if k in table.c}
                                          for row in rows[name]])
            if conn.dialect.name == "postgresql":  # as the inserts of that time left it
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                  f"(SELECT max(id) FROM {name}))"))
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        conn.commit()
    engine.dispose()


def test_a_database_of_the_first_schema_is_upgraded_on_start_and_served(new_db_url, tmp_path):
    rows = rows_written_by_a_store(tmp_path)
    assert len(rows["actions"]) == 6  # the visit, the call, four occurrences
    first_schema_with(new_db_url, rows)

    configuration = load_configuration(
        REPO / "radicale.conf", new_db_url, "127.0.0.1", 0,
        overrides={"auth": {"delay": "0.01"}, "logging": {"level": "warning"}})
    server = Server(configuration, ("127.0.0.1", 0)).start()  # migrates, as `serve` does
    stack = contextlib.ExitStack()
    try:
        store = server.store
        with store.reading() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                == schema_revisions()[-1]
            for name in FIRST_TABLES:
                now = table_rows(conn, name)
                assert [{k: row[k] for k in old} for row, old in zip(now, rows[name],
                                                                     strict=True)] \
                    == rows[name], name

        phone = caldav.DAVClient(url=server.url, username="alice",
                                 password=PASSWORDS["alice"])
        stack.callback(phone.close)  # no keep-alive connection left for stop() to wait on
        [calendar] = phone.principal().calendars()
        served = {str(e.icalendar_component["UID"]): e for e in calendar.events()}
        assert set(served) == {"weekly", rows["calendar_objects"][0]["uid"]}
        assert "RRULE" in served["weekly"].icalendar_component  # one object, as stored
        # the same text as before the upgrade: phones do not download their calendar again
        written = {row["uid"]: row["etag"] for row in rows["calendar_objects"]}
        assert {uid: e.get_property(caldav.elements.dav.GetEtag())
                for uid, e in served.items()} == written
        # the phone writes into the upgraded database; the new tables work too
        day = date.today() + timedelta(days=9)
        calendar.save_event(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:after-upgrade\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{day:%Y%m%d}T090000Z\r\n"
            f"DTEND:{day:%Y%m%d}T100000Z\r\nSUMMARY:After the upgrade\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n")
        assert "After the upgrade" in [a.event.subject for a in store.agenda("alice")]
        alice = store.require_user("alice")
        run = store.start_run(alice.id, "google", "close", True)
        store.finish_run(run, "ok", "", {})
        assert [r.id for r in store.sync_runs(alice.id)] == [run]
    finally:
        stack.close()
        server.stop()


@pytest.mark.parametrize("new_db_url", ["sqlite"], indirect=True)
def test_every_migration_runs_in_order_from_the_first(new_db_url):
    """Each revision is reachable from the previous one (no branch, no gap): the path an
    installation of any earlier version takes."""
    revisions = schema_revisions()
    assert revisions[0] == "0001" and len(set(revisions)) == len(revisions)
    engine = make_engine(new_db_url)
    config = migrations_config()
    with engine.connect().execution_options(**write_options()) as conn:
        config.attributes["connection"] = conn
        for revision in revisions:
            command.upgrade(config, revision)
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                == revision
        conn.commit()
    engine.dispose()
