"""Issue 8: nothing lost or invented at the edges (window, races, occurrences), reproduced
against the Google fake through the real client, the fake's own state checked."""

from __future__ import annotations

from datetime import UTC, timedelta
from zoneinfo import ZoneInfo

import pytest

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import open_store
from bridge.sync.engine import SyncOptions, SyncRun
from bridge.targets.google import GoogleTarget
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


@pytest.fixture
def fake():
    with FakeGoogleCalendar() as fake:
        yield fake


@pytest.fixture
def store(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'gestan.db'}")
    store.add_user("alice", "alice", timezone="Europe/Paris")
    store.set_user("alice", settings={"google_calendar": CALENDAR})
    return store


@pytest.fixture
def cal(fake):
    return fake.add_calendar(CALENDAR, time_zone="Europe/Paris")


def target(fake):
    return GoogleTarget(fake.credentials(), "alice", CALENDAR, "Europe/Paris",
                        api_url=fake.api_url, sleep=lambda s: None)


def run(store, fake, direction, now=None, **options):
    sync = SyncRun(store, "alice", target(fake), SyncOptions(**options), now=now)
    return sync.pull() if direction == "open" else sync.push()


def at(days: int, hour: int = 10):
    return (now_utc() + timedelta(days=days)).replace(hour=hour, minute=0, second=0,
                                                      microsecond=0)


def gevent(days: int, summary: str, hour: int = 9, **extra):
    start = at(days, hour)
    return {"summary": summary,
            "start": {"dateTime": start.isoformat() + "Z", "timeZone": "Europe/Paris"},
            "end": {"dateTime": (start + timedelta(hours=1)).isoformat() + "Z",
                    "timeZone": "Europe/Paris"}, **extra}


def phone_ics(uid: str, start, summary: str, extra: str = "") -> str:
    """What a phone PUTs: one event in Paris time, an hour long."""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART:{start:%Y%m%dT%H%M%S}Z\r\nDURATION:PT1H\r\nSUMMARY:{summary}\r\n"
            f"{extra}END:VEVENT\r\nEND:VCALENDAR\r\n")


def live(fake, cal):
    return fake.events(cal, include_cancelled=False)


def objects(store):
    return store.calendar_listing(store.user("alice").id, with_ics=True)


def subjects(store):
    return sorted(a.event.subject for a in store.agenda("alice"))


# ---------------------------------------------------------------- point 4

def test_a_phone_move_out_of_the_window_is_pushed(store, fake, cal):
    start = at(3)
    store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                        tzid="Europe/Paris", subject="Plus tard"))
    run(store, fake, "close")
    [event] = live(fake, cal)
    [obj] = objects(store)
    later = start + timedelta(days=730)
    store.put_object("alice", obj.href, phone_ics(obj.uid, later, "Plus tard"))
    report = run(store, fake, "close")
    assert report.remote.updated == 1, report.lines()
    now = fake.event(cal, event["id"])
    assert now["start"]["dateTime"].startswith(later.date().isoformat())


def test_a_google_move_out_of_the_window_is_followed(store, fake, cal):
    event = fake.insert_event(cal, gevent(2, "Repoussé"))
    run(store, fake, "open")
    far = gevent(800, "Repoussé")
    fake.patch_event(cal, event["id"], {"start": far["start"], "end": far["end"]})
    report = run(store, fake, "open")
    assert report.gestan.updated == 1
    [action] = store.agenda("alice", start=at(799), end=at(801))
    assert action.event.subject == "Repoussé"


# ---------------------------------------------------------------- point 3

@pytest.mark.parametrize("shift_days", [800, -30])
def test_an_occurrence_moved_out_of_the_window_does_not_come_back(store, fake, cal,
                                                                 shift_days):
    master = fake.insert_event(cal, gevent(1, "Cours", hour=8,
                                           recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]))
    service = fake.build_service()
    [_, second, *_] = service.events().instances(calendarId=cal,
                                                 eventId=master["id"]).execute()["items"]
    far = gevent(shift_days, "Cours déplacé", hour=8)
    service.events().patch(calendarId=cal, eventId=second["id"],
                           body={"start": far["start"], "end": far["end"],
                                 "summary": "Cours déplacé"}).execute()
    run(store, fake, "open", days_back=0)
    assert subjects(store) == ["Cours"] * 4, "the moved occurrence is not at its old time"
    fake.expire_sync_tokens()
    run(store, fake, "open")
    assert subjects(store) == ["Cours"] * 4, "nor after a re-listing (410)"


# ---------------------------------------------------------------- point 1

FOREIGN = {"attendees": [{"email": "bob@example.com", "responseStatus": "accepted"}],
           "reminders": {"useDefault": False, "overrides": [{"method": "popup",
                                                              "minutes": 30}]},
           "colorId": "5", "visibility": "private", "transparency": "transparent",
           "extendedProperties": {"shared": {"crm": "42"}, "private": {"other-app": "x"}}}


def test_a_gestan_edit_keeps_what_google_holds_and_gestan_does_not(store, fake, cal):
    event = fake.insert_event(cal, gevent(2, "Client") | FOREIGN)
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
    master = fake.insert_event(cal, gevent(1, "Cours", hour=8,
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
    event = fake.insert_event(cal, gevent(4, "Garage"))
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
