"""What is Google's own in open and close, against the Google fake through the real
google-api-python-client: stable ids, throttling and Retry-After, quota, 412, what Google
cannot carry, zones. The sync rules every target shares are in test_sync_rules.py (run on
the in-memory target and Google alike).

Every test checks the fake's own state (what Google holds) and Gestan's store; request
counts come from the fake's log, not from our code.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
import requests
from icalendar import Calendar

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import open_store
from bridge.sync.engine import SyncBusy, SyncOptions, SyncRun
from bridge.targets.google import GoogleTarget, stable_id
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


@pytest.fixture
def fake():
    with FakeGoogleCalendar() as fake:
        yield fake


@pytest.fixture
def store(db_url):
    """On SQLite and on PostgreSQL, as every store test (conftest.db_url)."""
    store = open_store(db_url)
    store.add_user("alice", "alice", timezone="Europe/Paris")
    store.set_user("alice", settings={"google_calendar": CALENDAR})
    return store


@pytest.fixture
def cal(fake):
    return fake.add_calendar(CALENDAR, time_zone="Europe/Paris")


def run(store, fake, direction, **options):
    target = GoogleTarget(fake.credentials(), "alice", CALENDAR, "Europe/Paris",
                          api_url=fake.api_url, sleep=lambda s: None)
    sync = SyncRun(store, "alice", target, SyncOptions(**options))
    return sync.pull() if direction == "open" else sync.push()


def at(days: int, hour: int = 10):
    day = (now_utc() + timedelta(days=days)).replace(hour=hour, minute=0, second=0,
                                                     microsecond=0)
    return day


def add(store, subject: str, days: int, hour: int = 10, minutes: int = 60):
    start = at(days, hour)
    return store.add_action("alice", EventData(start=start, end=start + timedelta(minutes=minutes),
                                               tzid="Europe/Paris", subject=subject))


def live(fake, cal):
    return [e for e in fake.events(cal, include_cancelled=False)]


def google_event(days: int, summary: str, hour: int = 9, **extra):
    start = at(days, hour)
    end = start + timedelta(hours=1)
    return {"summary": summary,
            "start": {"dateTime": start.isoformat() + "Z", "timeZone": "Europe/Paris"},
            "end": {"dateTime": end.isoformat() + "Z", "timeZone": "Europe/Paris"}, **extra}


def objects(store):
    return store.calendar_listing(store.user("alice").id, with_ics=True)


def subjects(store):
    return sorted(a.event.subject for a in store.agenda("alice"))


def test_interrupted_create_is_not_duplicated(store, fake, cal):
    add(store, "Une fois", 2)
    fake.fail_next(1, 503, after_apply=True)   # Google created it, the answer was lost
    report = run(store, fake, "close")
    assert report.status == "ok", report.message
    assert len(live(fake, cal)) == 1
    assert live(fake, cal)[0]["id"] == stable_id("alice", store.calendar_listing(
        store.user("alice").id)[0].uid)


def test_quota_exceeded_stops_cleanly_and_rerun_finishes(store, fake, cal):
    for n in range(5):
        add(store, f"Q{n}", 2 + n)
    fake.fail_next(1, 403, "quotaExceeded")
    report = run(store, fake, "close")
    assert report.status == "stopped" and "quota" in report.message
    report = run(store, fake, "close")
    assert report.status == "ok"
    assert sorted(e["summary"] for e in live(fake, cal)) == [f"Q{n}" for n in range(5)]


def test_twenty_percent_throttling_converges(store, fake, cal):
    for n in range(30):
        add(store, f"T{n}", 1 + n % 25, 8 + n % 9)
    fake.insert_event(cal, google_event(5, "Depuis Google"))
    fake.fail_randomly(0.2, (429, 503), seed=7)
    assert run(store, fake, "close").status == "ok"
    assert run(store, fake, "open").status == "ok"
    fake.clear_failures()
    assert len(live(fake, cal)) == 31
    assert len(subjects(store)) == 31
    assert fake.injected_errors > 0


def test_crash_at_each_request_then_rerun_converges(store, fake, cal):
    """A small two-way sync, stopped at request k (k = 1, 2, ...), then run again in full:
    the same end state every time, no duplicate on either side."""
    fake.insert_event(cal, google_event(2, "G1"))
    fake.insert_event(cal, google_event(3, "G2", recurrence=["RRULE:FREQ=DAILY;COUNT=3"]))
    add(store, "L1", 4)
    add(store, "L2", 5)
    total = None
    k = 1
    while True:
        fake.fail_next(1, 403, "quotaExceeded", after_apply=k % 2 == 0)
        fake.reset_log()
        fake.injected_errors = 0
        first = [run(store, fake, d) for d in ("open", "close")]
        hit = fake.injected_errors > 0
        fake.clear_failures()
        for direction in ("open", "close", "open"):
            assert run(store, fake, direction).status == "ok"
        state = (sorted(e["summary"] for e in live(fake, cal)), subjects(store))
        if total is None:
            total = state
        assert state == total, f"crash at request {k} changed the outcome"
        assert sorted(state[0]) == ["G1", "G2", "L1", "L2"]
        if not hit or k > 12:
            break
        assert any(r.status == "stopped" for r in first)
        k += 1


def test_pulled_update_keeps_what_google_cannot_carry(store, fake, cal):
    start = at(3, 9).strftime("%Y%m%dT%H%M%S")
    store.put_object("alice", "tel.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\nUID:tel-1\r\n"
        f"DTSTART;TZID=Europe/Paris:{start}\r\nDURATION:PT1H\r\nSUMMARY:Chez le client\r\n"
        "CONTACT:M. Petit\\, 06 12 34 56 78\r\nX-PHONE-COLOR:red\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:Rappel\r\n"
        "END:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    run(store, fake, "close")
    [event] = live(fake, cal)
    fake.patch_event(cal, event["id"], {"summary": "Chez le client (2e étage)"})
    assert run(store, fake, "open").gestan.updated == 1
    ics = store.calendar_listing(store.user("alice").id, with_ics=True)[0].ics
    assert "SUMMARY:Chez le client (2e étage)" in ics
    assert "CONTACT:M. Petit\\, 06 12 34 56 78" in ics
    assert "TRIGGER:-PT15M" in ics and "X-PHONE-COLOR:red" in ics
    assert run(store, fake, "close").remote.updated == 0, "nothing to push back"


def test_google_change_during_the_push_is_reread_not_overwritten_blindly(store, fake, cal):
    action = add(store, "Version 1", 3)
    run(store, fake, "close")
    [event] = live(fake, cal)
    href = store.calendar_listing(store.user("alice").id)[0].href
    ics = store.calendar_listing(store.user("alice").id, with_ics=True)[0].ics
    store.put_object("alice", href, ics.replace("SUMMARY:Version 1", "SUMMARY:Version Gestan"))
    fake.patch_event(cal, event["id"], {"location": "Changé dans Google"})
    fake.reset_log()
    report = run(store, fake, "close")
    assert report.status == "ok" and report.remote.updated == 1
    statuses = [r.status for r in fake.request_log if r.in_batch or r.method != "GET"]
    assert 412 in statuses, "the first update was conditional and refused"
    assert fake.event(cal, event["id"])["summary"] == "Version Gestan"
    assert len(report.conflicts) == 1
    assert "Changé dans Google" in report.conflicts[0].losing_ics
    assert store.agenda("alice")[0].id == action.id


def test_all_day_and_zones_survive_both_ways(store, fake, cal):
    day = (now_utc() + timedelta(days=6)).date()
    fake.insert_event(cal, {"summary": "Salon", "start": {"date": day.isoformat()},
                            "end": {"date": (day + timedelta(days=2)).isoformat()}})
    fake.insert_event(cal, google_event(4, "Montréal", timeZone="America/Montreal") | {
        "start": {"dateTime": f"{day}T09:00:00", "timeZone": "America/Montreal"},
        "end": {"dateTime": f"{day}T10:00:00", "timeZone": "America/Montreal"}})
    run(store, fake, "open")
    by_subject = {a.event.subject: a.event for a in store.agenda("alice")}
    assert by_subject["Salon"].all_day and by_subject["Salon"].end - by_subject[
        "Salon"].start == timedelta(days=2)
    assert by_subject["Montréal"].tzid == "America/Montreal"
    start = datetime.combine(day + timedelta(days=1), datetime.min.time())
    store.add_action("alice", EventData(start=start - timedelta(hours=1), end=start
                                        + timedelta(hours=23), tzid="Europe/Paris",
                                        all_day=True, subject="Congés"))
    run(store, fake, "close")
    [pushed] = [e for e in live(fake, cal) if e["summary"] == "Congés"]
    assert pushed["start"] == {"date": (day + timedelta(days=1)).isoformat()}
    assert pushed["end"] == {"date": (day + timedelta(days=2)).isoformat()}


def test_a_sync_running_in_another_process_blocks_until_its_lease_ends(store, fake, cal):
    alice = store.user("alice")
    assert store.take_sync_lock(alice.id, "other-process", timedelta(minutes=10)) is None
    add(store, "En attente", 2)
    with pytest.raises(SyncBusy, match="already running"):
        run(store, fake, "close")
    assert live(fake, cal) == []
    # the other process died: once its lease is over, the next run takes over
    assert store.take_sync_lock(alice.id, "other-process", timedelta(seconds=-1)) is None
    assert run(store, fake, "close").remote.created == 1
    assert store.take_sync_lock(alice.id, "next", timedelta(minutes=1)) is None, "released"


def test_throttling_waits_at_least_what_retry_after_says(store, fake, cal):
    add(store, "Patience", 2)
    waits: list[float] = []
    fake.fail_next(1, 429, retry_after=7)
    target = GoogleTarget(fake.credentials(), "alice", CALENDAR, "Europe/Paris",
                          api_url=fake.api_url, sleep=waits.append)
    report = SyncRun(store, "alice", target).push()
    assert report.status == "ok" and len(live(fake, cal)) == 1
    assert waits and waits[0] >= 7
    fake.fail_next(1, 403, "userRateLimitExceeded")
    add(store, "Encore", 3)
    report = SyncRun(store, "alice", target).push()
    assert report.status == "ok" and len(live(fake, cal)) == 2 and len(waits) == 2


def test_a_google_event_we_cannot_read_is_skipped_and_reported(store, fake, cal):
    fake.insert_event(cal, google_event(2, "Lisible"))
    fake.insert_event(cal, google_event(3, "Chaque minute", recurrence=[
        "RRULE:FREQ=MINUTELY;COUNT=30"]))
    report = run(store, fake, "open")
    assert report.status == "ok"
    assert "Lisible" in subjects(store)
    assert subjects(store) == ["Lisible"]
    assert len(report.skipped) == 1 and "MINUTELY" in report.skipped[0][1], report.skipped
    assert report.skipped[0][1].startswith("Chaque minute ("), "named, with its date"


# ---------------------------------------------------------------- point 1

FOREIGN = {"attendees": [{"email": "bob@example.com", "responseStatus": "accepted"}],
           "reminders": {"useDefault": False, "overrides": [{"method": "popup",
                                                              "minutes": 30}]},
           "colorId": "5", "visibility": "private", "transparency": "transparent",
           "extendedProperties": {"shared": {"crm": "42"}, "private": {"other-app": "x"}}}


def test_a_gestan_edit_keeps_what_google_holds_and_gestan_does_not(store, fake, cal):
    event = fake.insert_event(cal, google_event(2, "Client") | FOREIGN)
    run(store, fake, "open")
    [obj] = objects(store)
    store.put_object("alice", obj.href, obj.ics.replace("SUMMARY:Client", "SUMMARY:Client 2"))
    assert run(store, fake, "close").remote.updated == 1
    now = fake.event(cal, event["id"])
    assert now["summary"] == "Client 2"
    for name, value in FOREIGN.items():
        if name == "extendedProperties":
            assert now[name]["shared"] == value["shared"]
            assert now[name]["private"]["other-app"] == "x", "other apps' properties stay"
        else:
            assert now[name] == value, name


def test_moving_one_occurrence_in_gestan_writes_that_occurrence_only(store, fake, cal):
    master = fake.insert_event(cal, google_event(1, "Cours", hour=8,
                                           recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]) | FOREIGN)
    service = fake.build_service()
    instances = service.events().instances(calendarId=cal, eventId=master["id"]).execute()
    kept = instances["items"][1]
    service.events().patch(calendarId=cal, eventId=kept["id"],
                           body={"summary": "Cours (salle B)", "colorId": "9"}).execute()
    run(store, fake, "open")
    before = {e["id"]: e["etag"] for e in fake.events(cal)}
    third = [a for a in store.agenda("alice") if a.event.subject == "Cours"][2]
    [obj] = objects(store)
    rid = f"{third.event.start:%Y%m%dT%H%M%S}Z"
    override = (f"BEGIN:VEVENT\r\nUID:{obj.uid}\r\nDTSTAMP:20260101T000000Z\r\n"
                f"RECURRENCE-ID:{rid}\r\nDTSTART:{rid}\r\n"
                f"DURATION:PT1H\r\nSUMMARY:Cours (déplacé)\r\nEND:VEVENT\r\n")
    store.put_object("alice", obj.href, obj.ics.replace("END:VCALENDAR",
                                                        override + "END:VCALENDAR"))
    fake.reset_log()
    report = run(store, fake, "close")
    assert report.remote.updated == 1 and report.conflicts == []
    after = {e["id"]: e for e in fake.events(cal)}
    assert after[master["id"]]["etag"] == before[master["id"]], "the master is not rewritten"
    assert after[kept["id"]]["etag"] == before[kept["id"]], "nor the other exception"
    assert after[master["id"]]["attendees"] == FOREIGN["attendees"]
    assert after[kept["id"]]["colorId"] == "9", "an untouched exception keeps its colour"
    assert after[kept["id"]]["summary"] == "Cours (salle B)"
    writes = [r for r in fake.request_log if r.method in ("PATCH", "PUT", "POST", "DELETE")
              and r.in_batch]
    assert len(writes) == 1, "one occurrence changed: one write"


# ---------------------------------------------------------------- point 12

def test_the_open_after_a_close_that_wrote_series_reads_nothing_more(store, fake, cal):
    for n in range(3):
        start = at(1 + n, 8).strftime("%Y%m%dT%H%M%S")
        moved = at(8 + n, 15).strftime("%Y%m%dT%H%M%S")
        rid = at(8 + n, 8).strftime("%Y%m%dT%H%M%S")
        store.put_object("alice", f"s{n}.ics", (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\n"
            f"UID:serie-{n}\r\nDTSTART;TZID=Europe/Paris:{start}\r\nDURATION:PT1H\r\n"
            f"RRULE:FREQ=WEEKLY;COUNT=6\r\nSUMMARY:Série {n}\r\nEND:VEVENT\r\n"
            f"BEGIN:VEVENT\r\nUID:serie-{n}\r\nRECURRENCE-ID;TZID=Europe/Paris:{rid}\r\n"
            f"DTSTART;TZID=Europe/Paris:{moved}\r\nDURATION:PT1H\r\n"
            f"SUMMARY:Série {n} (déplacée)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    run(store, fake, "open")   # the sync token is taken before the close writes
    assert run(store, fake, "close").remote.created == 3
    fake.reset_log()
    report = run(store, fake, "open")
    assert report.gestan.updated == report.gestan.created == 0
    assert fake.request_count == 1, "the incremental listing only, no read per series"
    # another client's edit of one exception is still seen
    exception = next(e for e in live(fake, cal) if e.get("recurringEventId"))
    fake.patch_event(cal, exception["id"], {"summary": "Changée ailleurs"})
    assert run(store, fake, "open").gestan.updated == 1
    assert "Changée ailleurs" in subjects(store)


# ---------------------------------------------------------------- point 7

def test_every_logged_change_names_the_appointment_and_its_date(store, fake, cal):
    start = at(3, 9)
    action = store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                                 tzid="Europe/Paris", subject="Dentiste"))
    event = fake.insert_event(cal, google_event(4, "Garage"))
    run(store, fake, "close")
    run(store, fake, "open")
    store.delete_action("alice", action.id)
    fake.delete_event(cal, event["id"])
    closed, opened = run(store, fake, "close"), run(store, fake, "open")
    local = start.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    garage = at(4, 9).replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    [deleted_there] = store.sync_run_items(closed.run_id)
    assert deleted_there.change == "delete"
    assert deleted_there.summary == f"Dentiste ({local:%Y-%m-%d %H:%M})"
    [deleted_here] = store.sync_run_items(opened.run_id)
    assert deleted_here.summary == f"Garage ({garage:%Y-%m-%d %H:%M})"


def test_phones_writing_during_an_open_lose_nothing_unseen(store, fake, cal, server):
    """Issue 8 point 0, raced for real: four phones GET and PUT (If-Match) through the
    CalDAV server while an open brings 150 Google edits in. Each phone writes its own
    objects one after the other, so its last acknowledged write of each object must be
    current, or in the audit log as the losing version of a conflict."""
    import random
    import threading

    ids = [fake.insert_event(cal, google_event(2 + n % 60, f"E{n}", hour=8 + n % 9))["id"]
           for n in range(150)]
    run(store, fake, "open")
    for n, event_id in enumerate(ids):
        fake.patch_event(cal, event_id, {"summary": f"E{n} Google"})
    hrefs = [o.href for o in objects(store)]
    url = server.calendar_url("alice")
    stop = threading.Event()
    last: dict[str, str] = {}   # href -> the phone's last acknowledged SUMMARY

    def phone(number: int) -> None:
        session = server.session("alice")
        mine = hrefs[number::4]
        rng = random.Random(number)
        for count in range(10_000):
            if stop.is_set():
                return
            href = rng.choice(mine)
            got = session.get(url + href)
            assert got.status_code == 200
            mark = f"phone{number}-{count}"
            body = got.text.replace("SUMMARY:", f"SUMMARY:{mark} ", 1)
            put = session.put(url + href, data=body.encode(), headers={
                "If-Match": got.headers["ETag"], "Content-Type": "text/calendar"})
            assert put.status_code in (201, 204, 412), put.text
            if put.status_code != 412:
                last[href] = mark

    phones = [threading.Thread(target=phone, args=(n,)) for n in range(4)]
    for thread in phones:
        thread.start()
    try:
        report = run(store, fake, "open")
    finally:
        stop.set()
        for thread in phones:
            thread.join(30)
    assert report.status == "ok", report.message
    assert last, "the phones wrote during the run"
    current = {o.href: o.ics for o in objects(store)}
    logged = " ".join(i.losing_ics or "" for i in store.sync_run_items(report.run_id))
    lost = [mark for href, mark in last.items()
            if f"SUMMARY:{mark} " not in current[href] and f"SUMMARY:{mark} " not in logged]
    assert lost == [], f"{len(lost)} acknowledged writes vanished without a trace"


def test_a_phones_this_and_following_is_split_in_google_as_google_splits_it(store, fake, cal,
                                                                           server):
    """A phone edits "this and following" (RANGE=THISANDFUTURE) over CalDAV. Google gets
    what its own "this and following" makes: the series ends before the split (UNTIL), a
    new series (iCalUID ``<UID>_R<occurrence>``) starts there with the change and the later
    exception and cancellation; the phone still reads what it sent; then an open and a
    close write nothing, and the phone's next edit of the later part patches that series
    alone."""
    first = at(3, 8).replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    split = first + timedelta(weeks=2)

    def local(value: datetime) -> str:
        return f";TZID=Europe/Paris:{value:%Y%m%dT%H%M%S}"

    def series(later: str, hours: int) -> str:
        moved = first + timedelta(weeks=4)
        return (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//phone//EN\r\n"
            "BEGIN:VEVENT\r\nUID:split@phone\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART{local(first)}\r\nDTEND{local(first + timedelta(hours=1))}\r\n"
            f"RRULE:FREQ=WEEKLY;COUNT=8\r\nEXDATE{local(first + timedelta(weeks=5))}\r\n"
            "SUMMARY:Cours\r\nEND:VEVENT\r\n"
            "BEGIN:VEVENT\r\nUID:split@phone\r\nDTSTAMP:20260101T000000Z\r\n"
            f"RECURRENCE-ID;RANGE=THISANDFUTURE{local(split)}\r\n"
            f"DTSTART{local(split + timedelta(hours=hours))}\r\n"
            f"DTEND{local(split + timedelta(hours=hours + 1))}\r\nSUMMARY:{later}\r\n"
            "END:VEVENT\r\n"
            "BEGIN:VEVENT\r\nUID:split@phone\r\nDTSTAMP:20260101T000000Z\r\n"
            f"RECURRENCE-ID{local(moved)}\r\nDTSTART{local(moved + timedelta(days=1))}\r\n"
            f"DTEND{local(moved + timedelta(days=1, hours=1))}\r\nSUMMARY:Cours (jeudi)\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")

    url = server.calendar_url("alice") + "split.ics"
    sent = series("Cours (salle B)", 3)
    assert requests.put(url, data=sent, auth=("alice", "alice")).status_code == 201
    report = run(store, fake, "close")
    assert report.status == "ok" and report.remote.created == 2, report.message
    masters = sorted((e for e in live(fake, cal) if "recurringEventId" not in e),
                     key=lambda e: e["start"]["dateTime"])
    assert [m["iCalUID"] for m in masters] == [
        "split@phone", f"split@phone_R{split.astimezone(UTC):%Y%m%dT%H%M%SZ}"]
    # the end of the day of the last occurrence before the split, in the series' zone
    until = (first + timedelta(weeks=1)).replace(hour=23, minute=59, second=59)
    assert masters[0]["recurrence"] == [
        f"RRULE:FREQ=WEEKLY;UNTIL={until.astimezone(UTC):%Y%m%dT%H%M%SZ}"]
    assert masters[1]["summary"] == "Cours (salle B)"
    assert masters[1]["start"]["dateTime"].startswith(
        (split + timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert masters[1]["recurrence"][0] == "RRULE:FREQ=WEEKLY;COUNT=6"
    assert masters[1]["recurrence"][1].startswith("EXDATE;TZID=Europe/Paris:")
    [exception] = [e for e in live(fake, cal) if "recurringEventId" in e]
    assert (exception["recurringEventId"], exception["summary"]) == (masters[1]["id"],
                                                                     "Cours (jeudi)")
    now = now_utc()
    expected = sorted((str(c["SUMMARY"]), c.decoded("DTSTART").astimezone(UTC))
                      for c in recurring_ical_events.of(Calendar.from_ical(sent)).between(
                          now, now + timedelta(days=365)))
    found = []
    for master in masters:
        items = fake.build_service().events().instances(
            calendarId=cal, eventId=master["id"]).execute()["items"]
        found += [(i["summary"], datetime.fromisoformat(i["start"]["dateTime"]).astimezone(UTC))
                  for i in items if i.get("status") != "cancelled"]
    assert sorted(found) == expected
    assert "RANGE=THISANDFUTURE" in requests.get(url, auth=("alice", "alice")).text

    fake.reset_log()
    assert run(store, fake, "open").gestan.updated == 0
    assert run(store, fake, "close").remote.updated == 0
    writes = [r for r in fake.request_log if r.method in ("POST", "PUT", "PATCH", "DELETE")
              and "/batch/" not in r.path and r.path != "/token"]
    assert writes == []
    etags = {m["id"]: m["etag"] for m in masters}

    assert requests.put(url, data=series("Cours (salle C)", 4),
                        auth=("alice", "alice")).status_code == 204
    report = run(store, fake, "close")
    assert (report.remote.created, report.remote.updated) == (0, 1), report.message
    after = {e["id"]: e for e in live(fake, cal) if "recurringEventId" not in e}
    assert after[masters[0]["id"]]["etag"] == etags[masters[0]["id"]], "the first untouched"
    assert after[masters[1]["id"]]["summary"] == "Cours (salle C)"
    assert after[masters[1]["id"]]["start"]["dateTime"].startswith(
        (split + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%S"))
