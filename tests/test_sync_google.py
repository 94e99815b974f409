"""Open and close against the Google fake, through the real google-api-python-client.

Every test checks the fake's own state (what Google holds) and Gestan's store; request
counts come from the fake's log, not from our code.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import ActionType, open_store
from bridge.store import agenda as agenda_rows
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


def subjects(store):
    return sorted(a.event.subject for a in store.agenda("alice"))


def test_close_pushes_then_nothing_changed_costs_nothing(store, fake, cal):
    add(store, "Client Dupont", 2)
    add(store, "Réunion équipe", 3, 14)
    report = run(store, fake, "close")
    assert report.status == "ok", report.message
    assert report.remote.created == 2
    events = live(fake, cal)
    assert sorted(e["summary"] for e in events) == ["Client Dupont", "Réunion équipe"]
    assert all(e["start"]["timeZone"] == "Europe/Paris" for e in events)
    fake.reset_log()
    again = run(store, fake, "close")
    assert (again.remote.created, again.remote.updated, again.remote.deleted) == (0, 0, 0)
    assert fake.request_count == 0


def test_open_pulls_then_nothing_changed_is_one_request(store, fake, cal):
    fake.insert_event(cal, google_event(2, "Dentiste"))
    fake.insert_event(cal, google_event(500, "Trop loin"))
    report = run(store, fake, "open")
    assert report.status == "ok", report.message
    assert report.gestan.created == 1
    assert subjects(store) == ["Dentiste"]
    fake.reset_log()
    again = run(store, fake, "open")
    assert again.gestan.created == again.gestan.updated == 0
    assert fake.request_count == 1


def test_open_updates_and_deletes_linked(store, fake, cal):
    ev = fake.insert_event(cal, google_event(2, "Dentiste"))
    run(store, fake, "open")
    fake.patch_event(cal, ev["id"], {"summary": "Dentiste (déplacé)", "location": "Lyon"})
    report = run(store, fake, "open")
    assert report.gestan.updated == 1
    assert subjects(store) == ["Dentiste (déplacé)"]
    fake.delete_event(cal, ev["id"])
    report = run(store, fake, "open")
    assert report.gestan.deleted == 1
    assert subjects(store) == []


def test_close_deletes_in_google_what_gestan_deleted(store, fake, cal):
    action = add(store, "Annulé", 4)
    run(store, fake, "close")
    assert len(live(fake, cal)) == 1
    store.delete_action("alice", action.id)
    report = run(store, fake, "close")
    assert report.remote.deleted == 1
    assert live(fake, cal) == []
    # and it does not come back at the next open
    run(store, fake, "open")
    assert subjects(store) == []


def test_interrupted_create_is_not_duplicated(store, fake, cal):
    add(store, "Une fois", 2)
    fake.fail_next(1, 503, after_apply=True)   # Google created it, the answer was lost
    report = run(store, fake, "close")
    assert report.status == "ok", report.message
    assert len(live(fake, cal)) == 1
    assert live(fake, cal)[0]["id"] == stable_id("alice", store.calendar_listing(
        store.user("alice").id)[0].uid)


def test_only_rendez_vous_are_pushed(store, fake, cal):
    start = at(2)
    store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                        subject="Appeler"), ActionType.CALL)
    add(store, "RDV", 2)
    run(store, fake, "close")
    assert [e["summary"] for e in live(fake, cal)] == ["RDV"]


def test_google_series_becomes_one_action_per_occurrence(store, fake, cal):
    body = google_event(1, "Hebdo", hour=8, recurrence=["RRULE:FREQ=WEEKLY;COUNT=6"])
    master = fake.insert_event(cal, body)
    second = sorted(i for i in fake.event(cal, master["id"]) and [])  # noqa: F841
    report = run(store, fake, "open")
    assert report.gestan.created == 1
    assert subjects(store) == ["Hebdo"] * 6
    # one occurrence moved and one cancelled in Google: Gestan follows, one object still
    service = fake.build_service()
    instances = service.events().instances(calendarId=cal, eventId=master["id"]).execute()
    moved, cancelled = instances["items"][1], instances["items"][2]
    moved["summary"] = "Hebdo (déplacé)"
    service.events().update(calendarId=cal, eventId=moved["id"], body=moved).execute()
    service.events().delete(calendarId=cal, eventId=cancelled["id"]).execute()
    report = run(store, fake, "open")
    assert report.gestan.updated == 1
    assert subjects(store) == ["Hebdo"] * 4 + ["Hebdo (déplacé)"]
    assert len(store.calendar_listing(store.user("alice").id)) == 1


def test_gestan_series_edits_go_back_as_exceptions_not_copies(store, fake, cal):
    start = at(1, 8).strftime("%Y%m%dT%H%M%S")
    store.put_object("alice", "serie.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:serie-1\r\n"
        f"DTSTART;TZID=Europe/Paris:{start}\r\nDURATION:PT1H\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=5\r\nSUMMARY:Point hebdo\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    report = run(store, fake, "close")
    assert report.remote.created == 1
    masters = live(fake, cal)
    assert len(masters) == 1 and masters[0]["recurrence"] == ["RRULE:FREQ=WEEKLY;COUNT=5"]
    occurrences = store.agenda("alice")
    store.delete_action("alice", occurrences[2].id)
    report = run(store, fake, "close")
    assert report.remote.updated == 1
    service = fake.build_service()
    instances = service.events().instances(calendarId=cal, eventId=masters[0]["id"]).execute()
    assert len(instances["items"]) == 4, "the deleted occurrence is cancelled in Google"
    assert len(live(fake, cal)) == 1, "no standalone copies"


def test_conflict_winner_follows_direction_and_loser_is_logged(store, fake, cal):
    action = add(store, "Version Gestan", 3)
    run(store, fake, "close")
    event = live(fake, cal)[0]
    fake.patch_event(cal, event["id"], {"summary": "Version Google"})
    store.delete_action("alice", action.id)
    add(store, "Autre", 4)
    # close: Gestan wins; the Google edit is the loser, kept in the log
    report = run(store, fake, "close")
    assert report.status == "ok", report.message
    assert len(report.conflicts) == 1
    assert "Version Google" in (report.conflicts[0].losing_ics or "")
    assert fake.event(cal, event["id"])["status"] == "cancelled"
    runs = store.sync_runs(store.user("alice").id)
    items = store.sync_run_items(runs[0].id)
    assert any(i.change == "conflict" and "Version Google" in (i.losing_ics or "")
               for i in items)


def test_open_conflict_google_wins(store, fake, cal):
    add(store, "Avant", 3)
    run(store, fake, "close")
    event = live(fake, cal)[0]
    fake.patch_event(cal, event["id"], {"summary": "Google"})
    action = store.agenda("alice")[0]
    store.put_object("alice", store.calendar_listing(store.user("alice").id)[0].href,
                     store.calendar_listing(store.user("alice").id, with_ics=True)[0].ics
                     .replace("SUMMARY:Avant", "SUMMARY:Gestan"))
    report = run(store, fake, "open")
    assert subjects(store) == ["Google"]
    assert len(report.conflicts) == 1 and "SUMMARY:Gestan" in report.conflicts[0].losing_ics
    assert store.agenda("alice")[0].id == action.id, "Gestan keeps its action id"


def test_expired_sync_token_lists_the_window_and_deletes_nothing(store, fake, cal):
    fake.insert_event(cal, google_event(2, "A"))
    fake.insert_event(cal, google_event(3, "B"))
    run(store, fake, "open")
    fake.expire_sync_tokens()
    report = run(store, fake, "open")
    assert report.status == "ok"
    assert report.gestan.deleted == 0 and subjects(store) == ["A", "B"]


def test_mass_delete_stops_unless_allowed(store, fake, cal):
    ids = [fake.insert_event(cal, google_event(2 + n % 20, f"R{n}"))["id"] for n in range(12)]
    run(store, fake, "open")
    for event_id in ids[:11]:
        fake.delete_event(cal, event_id)
    report = run(store, fake, "open")
    assert report.status == "stopped" and "allow-mass-delete" in report.message
    assert len(subjects(store)) == 12
    report = run(store, fake, "open", allow_mass_delete=True)
    assert report.gestan.deleted == 11 and len(subjects(store)) == 1


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


def test_new_occurrences_appear_as_time_passes_without_asking_google(store, fake, cal):
    body = google_event(1, "Sans fin", hour=8, recurrence=["RRULE:FREQ=WEEKLY"])
    fake.insert_event(cal, body)
    run(store, fake, "open")
    before = len(store.agenda("alice"))
    assert 50 <= before <= 54, "one year ahead, never more"
    later = now_utc() + timedelta(days=60)
    fake.reset_log()
    target = GoogleTarget(fake.credentials(), "alice", CALENDAR, "Europe/Paris",
                          api_url=fake.api_url, sleep=lambda s: None)
    report = SyncRun(store, "alice", target, now=later).pull()
    assert report.status == "ok"
    assert fake.request_count == 2, "the incremental listing and the slice that entered " \
        "the window, nothing per series"
    with store.reading() as conn:
        actions = agenda_rows.listing(conn, store.user("alice"), None, None, None)
    assert len(actions) >= before + 8
    assert max(a.event.start for a in actions) > now_utc() + timedelta(days=400)


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


def test_deleting_a_moved_occurrence_in_gestan_cancels_it_in_google(store, fake, cal):
    master = fake.insert_event(cal, google_event(1, "Cours", hour=8,
                                                 recurrence=["RRULE:FREQ=WEEKLY;COUNT=5"]))
    service = fake.build_service()
    instances = service.events().instances(calendarId=cal, eventId=master["id"]).execute()
    moved = dict(instances["items"][1], summary="Cours (salle B)")
    service.events().update(calendarId=cal, eventId=moved["id"], body=moved).execute()
    run(store, fake, "open")
    assert sorted(subjects(store)) == ["Cours"] * 4 + ["Cours (salle B)"]
    target = next(a for a in store.agenda("alice") if a.event.subject == "Cours (salle B)")
    store.delete_action("alice", target.id)
    report = run(store, fake, "close")
    assert report.status == "ok" and report.remote.updated == 1
    after = service.events().instances(calendarId=cal, eventId=master["id"]).execute()
    assert [i["summary"] for i in after["items"]] == ["Cours"] * 4
    assert run(store, fake, "open").gestan.updated == 0
    assert subjects(store) == ["Cours"] * 4


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


def test_window_days_back_from_the_users_setting(store, fake, cal):
    fake.insert_event(cal, google_event(-3, "Il y a trois jours"))
    fake.insert_event(cal, google_event(2, "Bientôt"))
    run(store, fake, "open")
    assert subjects(store) == ["Bientôt"], "ended appointments are not pulled by default"
    store.set_user("alice", settings={"sync_days_back": 7})
    fake.expire_sync_tokens()  # a full listing of the (now wider) window
    run(store, fake, "open")
    assert subjects(store) == ["Bientôt", "Il y a trois jours"]


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
