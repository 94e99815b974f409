"""The store itself: schema from migrations, revisions, concurrent writers, series refresh."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import open_store
from bridge.store.schema import actions, metadata


def test_migrations_create_exactly_the_declared_schema(new_db_url):
    """From nothing, as a new installation's first start (the other tests copy a database
    migrated once: tests/conftest.py)."""
    store = open_store(new_db_url)
    inspector = inspect(store.engine)
    for table in metadata.sorted_tables:
        declared = {c.name for c in table.columns}
        assert {c["name"] for c in inspector.get_columns(table.name)} == declared
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        assert {i.name for i in table.indexes} <= indexes


def test_foreign_keys_enforced_and_sqlite_in_wal(store):
    if store.engine.dialect.name == "sqlite":
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with pytest.raises(IntegrityError), store.writing() as conn:
        conn.execute(actions.insert().values(
            user_id=999999, type="appel", subject="", notes="", location="", contact="",
            start_utc=now_utc(), end_utc=now_utc(), all_day=False, status="CONFIRMED",
            extra_ics="", revision=1, deleted=False, created_at=now_utc(),
            updated_at=now_utc()))


def test_reopening_an_existing_database_keeps_its_data(store, db_url):
    """(That it migrates nothing: tests/test_cli_startup.py, where Alembic is not loaded.)"""
    start = now_utc() + timedelta(days=1)
    store.add_action("alice", EventData(start, start + timedelta(hours=1), "Europe/Paris",
                                        subject="kept"))
    from bridge.store import Store

    again = Store(db_url)
    assert [a.event.subject for a in again.agenda("alice")] == ["kept"]


def test_eight_phones_putting_at_once_lose_nothing(server):
    base = server.calendar_url("alice")
    errors: list[str] = []
    day = (now_utc() + timedelta(days=3)).strftime("%Y%m%d")

    def phone(n: int) -> None:
        session = server.session("alice")
        for k in range(10):
            uid = f"p{n}-{k}"
            body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\n"
                    f"UID:{uid}\r\nDTSTART:{day}T{8 + k:02d}0000Z\r\n"
                    f"DTEND:{day}T{8 + k:02d}3000Z\r\nSUMMARY:{uid}\r\nEND:VEVENT\r\n"
                    "END:VCALENDAR\r\n")
            answer = session.put(f"{base}{uid}.ics", data=body)
            if answer.status_code != 201:
                errors.append(f"{uid}: {answer.status_code}")

    threads = [threading.Thread(target=phone, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(server.store.agenda("alice")) == 80
    token, changed = server.store.changes_since(server.store.user("alice").id, "")
    assert len(changed) == 80
    revisions = [o.revision for o in server.store.calendar_listing(
        server.store.user("alice").id)]
    assert len(set(revisions)) == 80, "every write took its own revision"
    listing = requests.request("PROPFIND", base, auth=("alice", "alice"),
                               headers={"Depth": "1"})
    assert listing.text.count("<href>/alice/rendez-vous/p") == 80


def test_a_sync_reader_never_skips_a_change_of_concurrent_writers(store):
    """Tokens are revisions; a writer that took revision N must commit before one that took
    N+1 is visible, or a phone syncing in between would skip N forever (RFC 6578)."""
    alice = store.user("alice")
    day = (now_utc() + timedelta(days=5)).strftime("%Y%m%d")
    written: set[str] = set()
    done = threading.Event()
    errors: list[str] = []

    def writer(n: int) -> None:
        try:
            for k in range(12):
                uid = f"w{n}-{k}"
                store.put_object("alice", f"{uid}.ics", (
                    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\n"
                    f"UID:{uid}\r\nDTSTART:{day}T{8 + k % 9:02d}0000Z\r\n"
                    f"DTEND:{day}T{8 + k % 9:02d}3000Z\r\nSUMMARY:{uid}\r\nEND:VEVENT\r\n"
                    "END:VCALENDAR\r\n"))
                written.add(f"{uid}.ics")
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            errors.append(repr(exc))

    seen: set[str] = set()
    tokens: list[int] = []

    def reader() -> None:
        token, _ = store.changes_since(alice.id, "")
        while True:
            finished = done.is_set()
            token, changed = store.changes_since(alice.id, token)
            seen.update(o.href for o in changed)
            tokens.append(int(token.rsplit("/", 1)[1]))
            if finished:
                return

    writers = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(timeout=120)
    done.set()
    watcher.join(timeout=60)
    assert errors == []
    assert len(written) == 96
    assert tokens == sorted(tokens), "sync tokens never go back"
    assert len(tokens) > 2, "the reader synced while writers ran"
    assert written <= seen, f"changes skipped by chained syncs: {sorted(written - seen)[:5]}"


def test_series_occurrences_appear_as_time_passes(store):
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:w\r\n"
            "DTSTART:20260105T090000Z\r\nDTEND:20260105T100000Z\r\nSUMMARY:weekly\r\n"
            "RRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    store.put_object("alice", "w.ics", text)
    before = len(store.agenda("alice"))
    assert 52 <= before <= 54  # one year ahead, never more
    ics_before = store.calendar_objects(store.user("alice").id, ["w.ics"])[0].ics
    assert store.refresh_series("alice", now=now_utc() + timedelta(days=30)) == 1
    after = store.agenda("alice")
    assert len(after) >= before + 4
    assert max(a.event.start for a in after) > now_utc() + timedelta(days=380)
    ics_after = store.calendar_objects(store.user("alice").id, ["w.ics"])[0].ics
    assert ics_after == ics_before, "new occurrences equal the master: no overrides"


def test_stores_are_shared_per_url(db_url, store):
    assert open_store(db_url) is store


@pytest.mark.parametrize("text", [
    "DTSTART;TZID=America/Montreal:20270301T090000\r\nDTEND;TZID=America/Montreal:"
    "20270301T093000\r\nSUMMARY:Montréal\r\nCONTACT:M. Petit\r\nX-APP:1\r\n"
    "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\n",
    "DTSTART;VALUE=DATE:20270302\r\nSUMMARY:Congés\r\n",
    "DTSTART:20270303T120000Z\r\nDTEND:20270303T120000Z\r\nSUMMARY:Instant\r\n",
    "DTSTART:20270304T080000\r\nDURATION:PT2H\r\nSUMMARY:Flottant\r\nSTATUS:TENTATIVE\r\n",
])
def test_a_new_single_is_stored_as_its_rendering_from_the_agenda(store, text):
    """A new appointment is rendered before it is stored (one INSERT): the same bytes, the
    same bounds, as rendering it again from its action."""
    from bridge.store import objects as object_rows
    from bridge.store import users as user_rows

    stored = store.put_object("alice", "new.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:new-1\r\n"
        f"DTSTAMP:20260101T000000Z\r\n{text}END:VEVENT\r\nEND:VCALENDAR\r\n"))
    alice = store.user("alice")
    with store.writing() as conn:
        again = object_rows.rerender(conn, alice, stored.id,
                                     user_rows.next_revision(conn, alice.id))
    assert again.revision == stored.revision, "nothing to rewrite"
    assert (again.ics, again.etag, again.first_start, again.last_end) == (
        stored.ics, stored.etag, stored.first_start, stored.last_end)
    assert store.calendar_object(alice.id, "new.ics") == stored
    # what a close reads instead of the text (its action) means exactly the text
    from bridge.ical import ParsedObject, parse_object
    from bridge.ical.content import content_of
    from bridge.targets.google_mapping import ics_to_google

    [changed] = store.changed_objects(alice.id, 0, again.revision, stored.first_start,
                                      stored.last_end, "google")
    assert changed.event is not None
    reading = ParsedObject(changed.uid, changed.event)
    for carries in (frozenset(), frozenset({"VALARM", "CONTACT", "X-APP"})):
        assert content_of(reading, "Europe/Paris", carries) == content_of(
            parse_object(changed.ics, "Europe/Paris"), "Europe/Paris", carries)
    assert ics_to_google(reading) == ics_to_google(changed.ics)
