"""A phone's PUT, written by gestan-bridge itself (bridge/caldav_put.py): Radicale's answers,
the preconditions checked inside the write's transaction, the body read once."""

from __future__ import annotations

import threading

import pytest
import requests
from sqlalchemy import event as sql_event

from bridge.store import Precondition, PreconditionFailed, Store
from tests.conftest import PASSWORDS, snapshot
from tests.reliability.load import SYNC_REPORT, TOKEN
from tests.reliability.servers import start_in_process
from tests.test_refusals import event


def _statements(store: Store) -> list[str]:
    """The SQL statements ``store`` runs from now on, as they run."""
    seen: list[str] = []
    sql_event.listen(store.engine, "before_cursor_execute",
                     lambda conn, cursor, sql, *rest: seen.append(sql))
    return seen


# (existing object?, precondition) -> written?
PRECONDITIONS = [
    (False, Precondition(), True),
    (False, Precondition(if_none_match=True), True),
    (False, Precondition(if_match="*"), False),
    (False, Precondition(if_match='"e"'), False),
    (False, Precondition(strict=True), True),
    (True, Precondition(), True),
    (True, Precondition(if_none_match=True), False),
    (True, Precondition(if_match="*"), True),
    (True, Precondition(if_match="CURRENT"), True),
    (True, Precondition(if_match='"stale"'), False),
    (True, Precondition(strict=True), False),
    (True, Precondition(if_match="CURRENT", strict=True), True),
]


@pytest.mark.parametrize(("exists", "precondition", "written"), PRECONDITIONS)
def test_write_object_checks_the_precondition_in_its_transaction(store, exists, precondition,
                                                                 written):
    if exists:
        current = store.put_object("alice", "p.ics", event(uid="p"))
        if precondition.if_match == "CURRENT":
            precondition = Precondition(if_match=current.etag, strict=precondition.strict)
    before = snapshot(store)
    revision = store.require_user("alice").revision
    body = event("LOCATION:ailleurs\r\n", uid="p")
    if not written:
        with pytest.raises(PreconditionFailed):
            store.write_object("alice", "p.ics", body, precondition)
        assert snapshot(store) == before
        assert store.require_user("alice").revision == revision  # not even a revision taken
        return
    stored, created = store.write_object("alice", "p.ics", body, precondition)
    assert created is not exists
    assert "ailleurs" in store.calendar_object(stored.user_id, "p.ics").ics


def test_two_processes_writing_with_one_etag_cannot_both_win(store):
    """Two stores on one database (two server processes): the If-Match check and the write
    are one transaction, so of two phones sending the same etag exactly one writes."""
    etag = store.put_object("alice", "race.ics", event(uid="race")).etag
    stores = [Store(store.url), Store(store.url)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            stores[n].write_object("alice", "race.ics", event(f"LOCATION:{n}\r\n", uid="race"),
                                   Precondition(if_match=etag))
            outcomes.append("written")
        except PreconditionFailed:
            outcomes.append("refused")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["refused", "written"]
    for other in stores:
        other.engine.dispose()


def test_a_put_answers_as_radicale_and_reads_each_user_once(server):
    """201 then 204 with the stored ETag; the user is read from the database once per
    request (authentication, rights and storage used to read the same row up to six
    times)."""
    statements = _statements(server.store)
    session = server.session("alice")
    url = server.calendar_url("alice") + "once.ics"
    created = session.put(url, data=event(uid="once"), headers={"If-None-Match": "*"})
    assert created.status_code == 201
    assert len([s for s in statements if s.lstrip().startswith("SELECT users.")]) == 1
    stored = server.store.calendar_object(server.store.require_user("alice").id, "once.ics")
    assert created.headers["ETag"] == stored.etag
    updated = session.put(url, data=event("LOCATION:x\r\n", uid="once"),
                          headers={"If-Match": created.headers["ETag"]})
    assert updated.status_code == 204 and updated.headers["ETag"] != created.headers["ETag"]
    statements.clear()
    assert session.get(url).status_code == 200
    assert len([s for s in statements if s.lstrip().startswith("SELECT users.")]) == 1


def test_a_412_says_why(server):
    session = server.session("alice")
    url = server.calendar_url("alice") + "why.ics"
    assert session.put(url, data=event(uid="why")).status_code == 201
    stale = session.put(url, data=event(uid="why"), headers={"If-Match": '"old"'})
    assert stale.status_code == 412 and "changed" in stale.text
    exists = session.put(url, data=event(uid="why"), headers={"If-None-Match": "*"})
    assert exists.status_code == 412 and "already exists" in exists.text


def test_strict_preconditions_need_if_match_to_replace(store):
    running = start_in_process(store.url, overrides={"storage": {"strict_preconditions": "True"}})
    try:
        url = f"{running.url}alice/rendez-vous/strict.ics"
        auth = ("alice", PASSWORDS["alice"])
        created = requests.put(url, data=event(uid="strict"), auth=auth)
        assert created.status_code == 201
        blind = requests.put(url, data=event("LOCATION:x\r\n", uid="strict"), auth=auth)
        assert blind.status_code == 412 and "If-Match" in blind.text
        assert requests.put(url, data=event("LOCATION:x\r\n", uid="strict"), auth=auth,
                            headers={"If-Match": created.headers["ETag"]}).status_code == 204
    finally:
        running.stop()


def test_a_count_beyond_counting_is_a_series_without_end(store):
    """Found by the hostile run once Radicale no longer read PUTs first: ``COUNT=999999999``
    took 47 s to store (20,000 instances walked to find the last). A PUT now refuses it
    (Radicale's occurrence limit, tests/test_refusals.py); an import or an open still
    stores it: a series without end, materialised for a year like any other."""
    import time

    started = time.monotonic()
    stored = store.put_object("alice", "forever.ics",
                              event("RRULE:FREQ=DAILY;COUNT=999999999\r\n", uid="forever"))
    assert time.monotonic() - started < 10
    assert stored.is_series and stored.last_end is None
    assert 360 <= len(store.agenda("alice")) <= 370


def test_the_whole_calendar_is_read_in_one_query(server):
    """An allprop PROPFIND (its getcontentlength) and a GET of the calendar serialize it
    whole: the texts come in one query, however many appointments there are."""
    session = server.session("alice")
    base = server.calendar_url("alice")
    for n in range(12):
        assert session.put(base + f"w{n}.ics", data=event(uid=f"w{n}")).status_code == 201
    statements = _statements(server.store)
    exported = session.get(base)
    assert exported.status_code == 200 and exported.text.count("BEGIN:VEVENT") == 12
    assert len(statements) < 12, statements  # one per appointment would be 12 more
    statements.clear()
    found = session.request("PROPFIND", base, headers={"Depth": "0"})
    assert found.status_code == 207 and "getcontentlength" in found.text
    assert len(statements) < 12, statements


def test_a_ctag_poll_reads_no_appointment(server):
    """Phones poll the calendar's getctag and sync-token with a PROPFIND: the token is the
    user's revision, not a listing of every appointment (each poll was O(calendar))."""
    session = server.session("alice")
    base = server.calendar_url("alice")
    for n in range(3):
        assert session.put(base + f"t{n}.ics", data=event(uid=f"t{n}")).status_code == 201
    statements = _statements(server.store)
    body = ('<?xml version="1.0"?><propfind xmlns="DAV:" xmlns:CS="http://calendarserver.org/'
            'ns/"><prop><CS:getctag/><sync-token/></prop></propfind>')
    polled = session.request("PROPFIND", base, data=body, headers={"Depth": "0"})
    assert polled.status_code == 207
    assert not [s for s in statements if "calendar_objects" in s], statements
    token = TOKEN.search(polled.content).group(1)
    report = session.request("REPORT", base, data=SYNC_REPORT % b"",
                             headers={"Depth": "1"})
    assert TOKEN.search(report.content).group(1) == token
    assert all(f"t{n}.ics" in report.text for n in range(3))


def test_max_resource_size_still_holds(store):
    """Radicale's PUT refused an object over ``[server] max_resource_size``; ours does too,
    with the reason (and a 413 where Radicale said 412)."""
    running = start_in_process(store.url, overrides={"server": {"max_resource_size": "3000"}})
    try:
        url = f"{running.url}alice/rendez-vous/big.ics"
        auth = ("alice", PASSWORDS["alice"])
        before = snapshot(store)
        big = requests.put(url, data=event(f"DESCRIPTION:{'x' * 3000}\r\n", uid="big"),
                           auth=auth)
        assert big.status_code == 413 and "max_resource_size" in big.text
        assert snapshot(store) == before
        assert requests.put(url, data=event(uid="big"), auth=auth).status_code == 201
    finally:
        running.stop()
