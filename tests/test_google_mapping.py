"""Google event JSON ↔ calendar object: round trips through the Google fake, content keys.

The proof that matters: what Gestan holds, pushed to the Google fake (which validates bodies
and expands series as Google documents) and read back, means the same thing (same
``content_key``) and yields the same occurrences on both sides.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
from icalendar import Calendar

from bridge.ical import EventData, parse_object, render_object
from bridge.ical import series as ical_series
from bridge.ical.content import content_key
from bridge.ical.timezones import date_to_utc, to_utc
from bridge.targets.google_mapping import (
    google_to_ics,
    ics_to_google,
    instance_id,
    recurrence_key,
)
from tests.fakes.google_calendar import FakeGoogleCalendar

TZ = "Europe/Paris"
WINDOW = (datetime(2026, 1, 1), datetime(2029, 1, 1))


def vcal(*vevents: str) -> str:
    """A phone-like object: DTSTAMP, SEQUENCE and alarms included, no VTIMEZONE."""
    body = "".join(f"BEGIN:VEVENT\r\n{v.strip()}\r\nEND:VEVENT\r\n" for v in vevents)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Phone//iOS 18//EN\r\n"
            + body.replace("\n", "\r\n").replace("\r\r\n", "\r\n") + "END:VCALENDAR\r\n")


def vevent(uid: str = "rdv-1@gestan", start: str = "DTSTART;TZID=Europe/Paris:20270315T090000",
           end: str = "DTEND;TZID=Europe/Paris:20270315T100000", *extra: str,
           summary: str = "Rendez-vous client") -> str:
    lines = [f"UID:{uid}", "DTSTAMP:20261120T101010Z", start, end, f"SUMMARY:{summary}",
             *extra]
    return "\n".join(lines)


ALARM = "BEGIN:VALARM\nACTION:DISPLAY\nDESCRIPTION:Rappel\nTRIGGER:-PT15M\nEND:VALARM"
WEEKLY = vevent("serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
                "DTEND;TZID=Europe/Paris:20270315T100000",
                "RRULE:FREQ=WEEKLY;UNTIL=20270426T070000Z", "SEQUENCE:2", ALARM,
                summary="Point hebdo")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar(time_zone=TZ) as running:
        yield running


@pytest.fixture(scope="module")
def service(fake: FakeGoogleCalendar) -> Any:
    return fake.build_service()


@pytest.fixture
def cal(fake: FakeGoogleCalendar) -> str:
    return fake.add_calendar("Gestan RDV", time_zone=TZ)


_ids = iter(range(10_000, 99_999))


def push(fake: FakeGoogleCalendar, cal: str, ics: str, tz: str = TZ) -> str:
    """Write an object as the Google target will: insert the master, patch its instances."""
    body, exceptions = ics_to_google(ics, tz)
    master = fake.insert_event(cal, dict(body, id=f"gestan{next(_ids)}"))
    all_day = "date" in body["start"]
    for exception in exceptions:
        eid = instance_id(master["id"], exception["originalStartTime"], all_day)
        changes = {k: v for k, v in exception.items() if k != "originalStartTime"}
        fake.patch_event(cal, eid, changes)
    return master["id"]


def pull(fake: FakeGoogleCalendar, cal: str, master_id: str) -> str:
    """Read a series back as the Google target will: the master and its exceptions."""
    stored = fake.events(cal)
    master = next(e for e in stored if e["id"] == master_id)
    exceptions = [e for e in stored if e.get("recurringEventId") == master_id]
    return google_to_ics(master, exceptions, fake.calendars()[0]["timeZone"])


def google_starts(service: Any, cal: str) -> list[datetime]:
    """Instance starts (naive UTC) as Google's singleEvents listing shows them."""
    items = service.events().list(
        calendarId=cal, singleEvents=True, maxResults=2500,
        timeMin=WINDOW[0].isoformat() + "Z", timeMax=WINDOW[1].isoformat() + "Z",
    ).execute()["items"]
    starts = []
    for item in items:
        if "date" in item["start"]:
            starts.append(date_to_utc(date.fromisoformat(item["start"]["date"]), TZ))
        else:
            starts.append(to_utc(datetime.fromisoformat(item["start"]["dateTime"])))
    return sorted(starts)


def ics_starts(ics: str, tz: str = TZ) -> list[datetime]:
    """Occurrence starts (naive UTC) as Gestan materialises them, cancelled ones left out."""
    parsed = parse_object(ics, tz)
    if not parsed.is_series:
        return [parsed.master.start]
    return sorted(e.start for e in ical_series.expand(parsed.series_ics, *WINDOW, tz)
                  if e.status != "CANCELLED")


def round_trip(fake: FakeGoogleCalendar, cal: str, ics: str, tz: str = TZ) -> str:
    return pull(fake, cal, push(fake, cal, ics, tz))


# ---------------------------------------------------------------- single events

@pytest.mark.parametrize(("start", "end", "tzid", "expected"), [
    ("DTSTART;TZID=Europe/Paris:20270315T090000", "DTEND;TZID=Europe/Paris:20270315T103000",
     "Europe/Paris", {"dateTime": "2027-03-15T09:00:00+01:00", "timeZone": "Europe/Paris"}),
    ("DTSTART;TZID=America/Montreal:20270704T140000",
     "DTEND;TZID=America/Montreal:20270704T150000", "America/Montreal",
     {"dateTime": "2027-07-04T14:00:00-04:00", "timeZone": "America/Montreal"}),
    ("DTSTART:20270315T080000Z", "DTEND:20270315T090000Z", "UTC",
     {"dateTime": "2027-03-15T08:00:00+00:00", "timeZone": "UTC"}),
])
def test_single_timed_event_round_trip_keeps_its_zone(
        fake: FakeGoogleCalendar, cal: str, start: str, end: str, tzid: str,
        expected: dict[str, str]) -> None:
    ics = vcal(vevent("one@gestan", start, end, ALARM, "SEQUENCE:3", "X-GESTAN-ID:42"))
    body, exceptions = ics_to_google(ics, TZ)
    assert body["start"] == expected and body["end"]["timeZone"] == tzid
    assert body["recurrence"] == [] and exceptions == []
    assert body["iCalUID"] == "one@gestan" and body["status"] == "confirmed"

    back = round_trip(fake, cal, ics)
    parsed = parse_object(back, TZ)
    original = parse_object(ics, TZ)
    assert parsed.uid == "one@gestan"
    assert (parsed.master.start, parsed.master.end, parsed.master.tzid) == (
        original.master.start, original.master.end, tzid)
    assert "VALARM" not in back  # Google drops it in our mapping...
    assert content_key(back, TZ) == content_key(ics, TZ)  # ...and the key ignores it


@pytest.mark.parametrize(("start", "end", "google_end"), [
    ("20270501", "20270502", "2027-05-02"),   # one day
    ("20270501", "20270504", "2027-05-04"),   # three days, end exclusive
])
def test_all_day_round_trip(fake: FakeGoogleCalendar, cal: str, service: Any, start: str,
                            end: str, google_end: str) -> None:
    ics = vcal(vevent("day@gestan", f"DTSTART;VALUE=DATE:{start}", f"DTEND;VALUE=DATE:{end}",
                      summary="Salon"))
    body, _ = ics_to_google(ics, TZ)
    assert body["start"] == {"date": "2027-05-01"} and body["end"] == {"date": google_end}
    back = round_trip(fake, cal, ics)
    assert f"DTSTART;VALUE=DATE:{start}" in back and f"DTEND;VALUE=DATE:{end}" in back
    assert parse_object(back, TZ).master.all_day
    assert content_key(back, TZ) == content_key(ics, TZ)
    assert google_starts(service, cal) == ics_starts(ics)


def test_french_text_survives_both_ways(fake: FakeGoogleCalendar, cal: str) -> None:
    summary = "Réunion: Hélène, François; àéèêëïôùç «devis»"
    notes = "Première ligne,\nDeuxième ligne; tarifs à 12,50 €\n\nFin."
    location = "12, rue de l'Église, 75011 Paris"
    ics = render_object("texte@gestan", EventData(
        start=datetime(2027, 3, 15, 8), end=datetime(2027, 3, 15, 9), tzid=TZ,
        subject=summary, notes=notes, location=location))
    body, _ = ics_to_google(ics, TZ)
    assert (body["summary"], body["description"], body["location"]) == (
        summary, notes, location)
    back = parse_object(round_trip(fake, cal, ics), TZ).master
    assert (back.subject, back.notes, back.location) == (summary, notes, location)


def test_google_json_forms_are_read_as_google_means_them() -> None:
    """Offset without timeZone → UTC; a floating time → the calendar's zone; tentative."""
    event = {"id": "g1abcdef", "iCalUID": "g1@google.com", "status": "tentative",
             "summary": "Appel", "updated": "2027-01-02T03:04:05.678Z",
             "start": {"dateTime": "2027-03-15T09:00:00+01:00"},
             "end": {"dateTime": "2027-03-15T10:00:00+01:00"},
             "attendees": [{"email": "x@example.com"}], "colorId": "5",
             "reminders": {"useDefault": True}}
    parsed = parse_object(google_to_ics(event, [], TZ), TZ)
    assert (parsed.master.tzid, parsed.master.start) == ("UTC", datetime(2027, 3, 15, 8))
    assert parsed.master.status == "TENTATIVE" and parsed.uid == "g1@google.com"
    floating = dict(event, start={"dateTime": "2027-03-15T09:00:00"},
                    end={"dateTime": "2027-03-15T10:00:00"})
    parsed = parse_object(google_to_ics(floating, [], "America/Montreal"), TZ)
    assert (parsed.master.tzid, parsed.master.start) == (
        "America/Montreal", datetime(2027, 3, 15, 13))
    no_uid = {k: v for k, v in event.items() if k != "iCalUID"}
    assert parse_object(google_to_ics(no_uid, [], TZ), TZ).uid == "g1abcdef@google.com"


# ---------------------------------------------------------------- series

SERIES = {
    "until": vcal(WEEKLY),
    "until_local_date": vcal(vevent(
        "serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
        "DTEND;TZID=Europe/Paris:20270315T100000", "RRULE:FREQ=WEEKLY;UNTIL=20270426",
        summary="Point hebdo")),
    "count": vcal(vevent(
        "serie@gestan", "DTSTART;TZID=America/Montreal:20270301T170000",
        "DTEND;TZID=America/Montreal:20270301T173000",
        "RRULE:FREQ=WEEKLY;BYDAY=MO,TH;COUNT=6")),
    "exdate": vcal(vevent(
        "serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
        "DTEND;TZID=Europe/Paris:20270315T100000", "RRULE:FREQ=WEEKLY;COUNT=5",
        "EXDATE:20270329T070000Z", "EXDATE;TZID=Europe/Paris:20270405T090000")),
    "all_day": vcal(vevent(
        "serie@gestan", "DTSTART;VALUE=DATE:20270601", "DTEND;VALUE=DATE:20270602",
        "RRULE:FREQ=DAILY;UNTIL=20270610", "EXDATE;VALUE=DATE:20270603")),
    "open_ended_utc": vcal(vevent(
        "serie@gestan", "DTSTART:20270105T150000Z", "DTEND:20270105T160000Z",
        "RRULE:FREQ=MONTHLY;INTERVAL=2")),
    "moved_override": vcal(
        vevent("serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
               "DTEND;TZID=Europe/Paris:20270315T100000", "RRULE:FREQ=WEEKLY;COUNT=4"),
        vevent("serie@gestan", "DTSTART;TZID=Europe/Paris:20270330T140000",
               "DTEND;TZID=Europe/Paris:20270330T153000",
               "RECURRENCE-ID;TZID=Europe/Paris:20270329T090000", "LOCATION:Lyon",
               summary="Point déplacé")),
    "cancelled_override": vcal(
        vevent("serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
               "DTEND;TZID=Europe/Paris:20270315T100000", "RRULE:FREQ=WEEKLY;COUNT=4"),
        vevent("serie@gestan", "DTSTART;TZID=Europe/Paris:20270322T090000",
               "DTEND;TZID=Europe/Paris:20270322T100000",
               "RECURRENCE-ID;TZID=Europe/Paris:20270322T090000", "STATUS:CANCELLED")),
    "all_day_override": vcal(
        vevent("serie@gestan", "DTSTART;VALUE=DATE:20270601", "DTEND;VALUE=DATE:20270602",
               "RRULE:FREQ=WEEKLY;COUNT=3"),
        vevent("serie@gestan", "DTSTART;VALUE=DATE:20270609", "DTEND;VALUE=DATE:20270611",
               "RECURRENCE-ID;VALUE=DATE:20270608", summary="Salon décalé")),
}


@pytest.mark.parametrize("name", sorted(SERIES))
def test_series_round_trip_through_the_fake(fake: FakeGoogleCalendar, cal: str, service: Any,
                                            name: str) -> None:
    ics = SERIES[name]
    master_id = push(fake, cal, ics)
    # Google expands the pushed series into exactly the occurrences Gestan materialises.
    assert google_starts(service, cal) == ics_starts(ics)
    back = pull(fake, cal, master_id)
    assert ics_starts(back) == ics_starts(ics)
    assert content_key(back, TZ) == content_key(ics, TZ)
    assert parse_object(back, TZ).is_series
    # A second trip changes nothing: the mapping is a fixed point.
    assert ics_to_google(back, TZ) == ics_to_google(ics, TZ)


def test_series_bodies() -> None:
    body, exceptions = ics_to_google(SERIES["until_local_date"], TZ)
    # A DATE UNTIL on a timed series: the start of that day in Paris, as Gestan reads it.
    assert body["recurrence"] == ["RRULE:FREQ=WEEKLY;UNTIL=20270425T220000Z"]
    assert exceptions == []
    body, _ = ics_to_google(SERIES["exdate"], TZ)
    assert body["recurrence"] == [
        "RRULE:FREQ=WEEKLY;COUNT=5",
        "EXDATE;TZID=Europe/Paris:20270329T090000,20270405T090000"]
    body, _ = ics_to_google(SERIES["all_day"], TZ)
    assert body["recurrence"] == ["RRULE:FREQ=DAILY;UNTIL=20270610",
                                  "EXDATE;VALUE=DATE:20270603"]
    body, exceptions = ics_to_google(SERIES["cancelled_override"], TZ)
    assert body["recurrence"][-1] == "EXDATE;TZID=Europe/Paris:20270322T090000"
    assert exceptions == []
    body, exceptions = ics_to_google(SERIES["moved_override"], TZ)
    assert len(exceptions) == 1
    assert exceptions[0]["originalStartTime"] == {
        "dateTime": "2027-03-29T09:00:00+02:00", "timeZone": TZ}
    assert exceptions[0]["start"] == {"dateTime": "2027-03-30T14:00:00+02:00", "timeZone": TZ}
    assert (exceptions[0]["summary"], exceptions[0]["location"]) == ("Point déplacé", "Lyon")
    _, exceptions = ics_to_google(SERIES["all_day_override"], TZ)
    assert exceptions[0]["originalStartTime"] == {"date": "2027-06-08"}
    assert exceptions[0]["end"] == {"date": "2027-06-11"}


def test_moved_override_is_a_google_exception(fake: FakeGoogleCalendar, cal: str,
                                              service: Any) -> None:
    master_id = push(fake, cal, SERIES["moved_override"])
    stored = [e for e in fake.events(cal) if e.get("recurringEventId") == master_id]
    assert [e["id"] for e in stored] == [f"{master_id}_20270329T070000Z"]
    assert stored[0]["summary"] == "Point déplacé"
    back = pull(fake, cal, master_id)
    override = parse_object(back, TZ).overrides
    assert [(o.recurrence_id, o.start, o.location) for o in override] == [
        ("20270329T070000Z", datetime(2027, 3, 30, 12), "Lyon")]
    assert "RECURRENCE-ID;TZID=Europe/Paris:20270329T090000" in back


def test_occurrence_deleted_in_google_becomes_an_exdate(fake: FakeGoogleCalendar,
                                                        cal: str) -> None:
    master_id = push(fake, cal, SERIES["moved_override"])
    fake.delete_event(cal, f"{master_id}_20270405T070000Z")  # a cancelled exception
    cancelled = [e for e in fake.events(cal) if e.get("status") == "cancelled"]
    assert len(cancelled) == 1
    back = pull(fake, cal, master_id)
    assert "EXDATE;TZID=Europe/Paris:20270405T090000" in back
    assert datetime(2027, 4, 5, 7) not in ics_starts(back)
    assert content_key(back, TZ) != content_key(SERIES["moved_override"], TZ)
    # ...and that is what the same series with the EXDATE written in means.
    with_exdate = SERIES["moved_override"].replace(
        "RRULE:FREQ=WEEKLY;COUNT=4", "RRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE:20270405T070000Z")
    assert content_key(back, TZ) == content_key(with_exdate, TZ)


def test_google_series_read_like_google_expands_it(fake: FakeGoogleCalendar, cal: str,
                                                   service: Any) -> None:
    """Google-written forms: DATE UNTIL and DATE EXDATE on a timed series, minimal cancels."""
    master = fake.insert_event(cal, {
        "id": "googleseries1", "summary": "Cours",
        "start": {"dateTime": "2027-03-15T18:00:00", "timeZone": "America/Montreal"},
        "end": {"dateTime": "2027-03-15T19:00:00", "timeZone": "America/Montreal"},
        "recurrence": ["RRULE:FREQ=DAILY;UNTIL=20270320", "EXDATE;VALUE=DATE:20270317"]})
    fake.delete_event(cal, "googleseries1_20270318T220000Z")
    minimal = {"id": "googleseries1_20270318T220000Z", "status": "cancelled",
               "recurringEventId": "googleseries1"}  # all a listing guarantees
    ics = google_to_ics(master, [minimal], TZ)
    # Google includes the 20th (UNTIL as a whole day); the ICS says so in UTC.
    assert "UNTIL=20270321T035959Z" in ics
    assert ics_starts(ics) == google_starts(service, cal)
    assert [s.day for s in ics_starts(ics)] == [15, 16, 19, 20]  # the 17th and 18th gone
    again = google_to_ics(master, [e for e in fake.events(cal)
                                   if e.get("recurringEventId") == "googleseries1"], TZ)
    assert content_key(again, TZ) == content_key(ics, TZ)


def test_instance_ids_match_googles() -> None:
    fake = FakeGoogleCalendar(time_zone=TZ)
    for ics in (SERIES["exdate"], SERIES["all_day"], SERIES["count"]):
        body, _ = ics_to_google(ics, TZ)
        master = fake.insert_event("primary", dict(body, id=f"inst{next(_ids)}"))
        all_day = "date" in body["start"]
        parsed = parse_object(ics, TZ)
        for occurrence in ical_series.expand(parsed.series_ics, *WINDOW, TZ):
            original = ics_to_google(render_object(
                parsed.uid, parsed.master, [occurrence.with_changes(subject="x")],
                default_tz=TZ), TZ)[1][0]["originalStartTime"]
            eid = instance_id(master["id"], original, all_day)
            assert fake.patch_event("primary", eid, {"summary": "ok"})["id"] == eid
            assert recurrence_key(original, TZ) == occurrence.recurrence_id
    assert instance_id("abc", {"dateTime": "2027-07-01T09:00:00",
                               "timeZone": "America/Montreal"}, False) == "abc_20270701T130000Z"
    assert instance_id("abc", {"date": "2027-07-01"}, True) == "abc_20270701"
    with pytest.raises(ValueError):
        instance_id("abc", {"date": "2027-07-01"}, False)


# ---------------------------------------------------------------- content key

def test_content_key_ignores_what_is_rendering_not_meaning() -> None:
    base = content_key(SERIES["until"], TZ)
    variants = {
        "dtstamp, sequence, alarm gone": vcal(vevent(
            "serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
            "DTEND;TZID=Europe/Paris:20270315T100000",
            "RRULE:FREQ=WEEKLY;UNTIL=20270426T070000Z", "CONTACT:M. Dupont",
            "X-MOZ-GENERATION:4", summary="Point hebdo").replace(
                "DTSTAMP:20261120T101010Z", "DTSTAMP:20270101T000000Z")),
        "until as local time, parts reordered": vcal(vevent(
            "serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
            "DTEND;TZID=Europe/Paris:20270315T100000",
            "RRULE:UNTIL=20270426T090000;INTERVAL=1;WKST=MO;FREQ=WEEKLY",
            summary="Point hebdo")),
        "other uid, duration": vcal(vevent(
            "autre@google.com", "DTSTART;TZID=Europe/Paris:20270315T090000", "DURATION:PT1H",
            "RRULE:FREQ=WEEKLY;UNTIL=20270426T070000Z", summary="Point hebdo")),
        "override equal to its occurrence": vcal(WEEKLY, vevent(
            "serie@gestan", "DTSTART;TZID=Europe/Paris:20270322T090000",
            "DTEND;TZID=Europe/Paris:20270322T100000",
            "RECURRENCE-ID;TZID=Europe/Paris:20270322T090000", ALARM,
            summary="Point hebdo")),
        "rendered by the store, with VTIMEZONE": _store_rendering(SERIES["until"]),
    }
    for label, text in variants.items():
        assert content_key(text, TZ) == base, label
    cancelled = content_key(SERIES["cancelled_override"], TZ)
    assert cancelled == content_key(SERIES["cancelled_override"].replace(
        "RRULE:FREQ=WEEKLY;COUNT=4",
        "RRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID=Europe/Paris:20270322T090000"), TZ)
    assert cancelled == content_key(vcal(vevent(
        "serie@gestan", "DTSTART;TZID=Europe/Paris:20270315T090000",
        "DTEND;TZID=Europe/Paris:20270315T100000", "RRULE:FREQ=WEEKLY;COUNT=4",
        "EXDATE:20270322T080000Z")), TZ)


def _store_rendering(ics: str) -> str:
    parsed = parse_object(ics, TZ)
    return render_object(parsed.uid, parsed.master, parsed.overrides, default_tz=TZ,
                         dtstamp=datetime(2026, 5, 5), open_ended=True)


def test_floating_time_counts_in_the_users_zone(fake: FakeGoogleCalendar, cal: str) -> None:
    ics = vcal(vevent("flottant@gestan", "DTSTART:20270315T090000", "DTEND:20270315T100000"))
    body, _ = ics_to_google(ics, "America/Montreal")
    assert body["start"] == {"dateTime": "2027-03-15T09:00:00-04:00",
                             "timeZone": "America/Montreal"}
    back = round_trip(fake, cal, ics, "America/Montreal")
    assert content_key(back, "America/Montreal") == content_key(ics, "America/Montreal")


CHANGES = {
    "time": ("DTSTART;TZID=Europe/Paris:20270315T090000",
             "DTSTART;TZID=Europe/Paris:20270315T091500"),
    "end": ("DTEND;TZID=Europe/Paris:20270315T100000", "DTEND;TZID=Europe/Paris:20270315T110000"),
    "zone": ("DTSTART;TZID=Europe/Paris:20270315T090000", "DTSTART:20270315T080000Z"),
    "title": ("SUMMARY:Point hebdo", "SUMMARY:Point mensuel"),
    "place": ("SEQUENCE:2", "LOCATION:Salle 2"),
    "notes": ("SEQUENCE:2", "DESCRIPTION:Apporter le devis"),
    "status": ("SEQUENCE:2", "STATUS:TENTATIVE"),
    "until": ("UNTIL=20270426T070000Z", "UNTIL=20270419T070000Z"),
    "rule": ("FREQ=WEEKLY;", "FREQ=WEEKLY;INTERVAL=2;"),
    "exdate added": ("SEQUENCE:2", "EXDATE;TZID=Europe/Paris:20270322T090000"),
    "rdate added": ("SEQUENCE:2", "RDATE;TZID=Europe/Paris:20270324T090000"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_content_key_changes_with_each_real_change(change: str) -> None:
    before, after = CHANGES[change]
    original = SERIES["until"]
    assert before in original
    changed = original.replace(before, after)
    assert content_key(changed, TZ) != content_key(original, TZ)


def test_content_key_changes_when_an_override_moves_or_appears() -> None:
    moved = SERIES["moved_override"]
    keys = {
        content_key(moved, TZ),
        content_key(moved.replace("20270330T140000", "20270330T150000"), TZ),
        content_key(moved.replace("SUMMARY:Point déplacé", "SUMMARY:Autre titre"), TZ),
        content_key(moved.replace("LOCATION:Lyon", "LOCATION:Nantes"), TZ),
        content_key(vcal(moved.split("BEGIN:VEVENT")[1].split("END:VEVENT")[0]), TZ),
        content_key(SERIES["cancelled_override"], TZ),
    }
    assert len(keys) == 6


def test_content_key_of_all_day_and_single_events() -> None:
    day = vcal(vevent("d@gestan", "DTSTART;VALUE=DATE:20270501", "DTEND;VALUE=DATE:20270502"))
    longer = day.replace("DTEND;VALUE=DATE:20270502", "DTEND;VALUE=DATE:20270503")
    implicit_end = day.replace("DTEND;VALUE=DATE:20270502\r\n", "")
    timed = vcal(vevent("d@gestan", "DTSTART;TZID=Europe/Paris:20270501T000000",
                        "DTEND;TZID=Europe/Paris:20270502T000000"))
    assert content_key(implicit_end, TZ) == content_key(day, TZ)
    assert len({content_key(t, TZ) for t in (day, longer, timed)}) == 3
    assert len(content_key(day, TZ)) == 64 and int(content_key(day, TZ), 16) >= 0


def test_google_to_ics_is_deterministic_and_valid() -> None:
    master = {"id": "det12345", "iCalUID": "det@gestan", "summary": "A",
              "start": {"dateTime": "2027-03-15T09:00:00+01:00", "timeZone": TZ},
              "end": {"dateTime": "2027-03-15T10:00:00+01:00", "timeZone": TZ},
              "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
              "updated": "2027-01-01T10:00:00.000Z"}
    exceptions = [
        {"id": "det12345_20270322T080000Z", "status": "confirmed", "summary": "B",
         "recurringEventId": "det12345",
         "originalStartTime": {"dateTime": "2027-03-22T09:00:00+01:00", "timeZone": TZ},
         "start": {"dateTime": "2027-03-22T15:00:00+01:00", "timeZone": TZ},
         "end": {"dateTime": "2027-03-22T16:00:00+01:00", "timeZone": TZ}},
        {"id": "det12345_20270329T070000Z", "status": "cancelled",
         "recurringEventId": "det12345",
         "originalStartTime": {"dateTime": "2027-03-29T09:00:00+02:00", "timeZone": TZ}}]
    first = google_to_ics(master, exceptions, TZ)
    assert first == google_to_ics(master, list(reversed(exceptions)), TZ)
    calendar = Calendar.from_ical(first)
    assert [c.name for c in calendar.subcomponents] == ["VTIMEZONE", "VEVENT", "VEVENT"]
    assert calendar.subcomponents[1].decoded("DTSTAMP") == datetime(2027, 1, 1, 10, tzinfo=UTC)
    parsed = parse_object(first, TZ)
    assert [o.recurrence_id for o in parsed.overrides] == ["20270322T080000Z"]
    assert ics_starts(first) == [datetime(2027, 3, 15, 8), datetime(2027, 3, 22, 14)]


def test_exception_on_an_exdate_stays_visible_as_in_google() -> None:
    """Google still shows an exception whose original start is also EXDATEd: keep it."""
    master = {"id": "exd12345", "summary": "A",
              "start": {"dateTime": "2027-03-15T09:00:00+01:00", "timeZone": TZ},
              "end": {"dateTime": "2027-03-15T10:00:00+01:00", "timeZone": TZ},
              "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE:20270322T080000Z"]}
    moved = {"id": "exd12345_20270322T080000Z", "status": "confirmed", "summary": "B",
             "recurringEventId": "exd12345",
             "originalStartTime": {"dateTime": "2027-03-22T09:00:00+01:00", "timeZone": TZ},
             "start": {"dateTime": "2027-03-23T09:00:00+01:00", "timeZone": TZ},
             "end": {"dateTime": "2027-03-23T10:00:00+01:00", "timeZone": TZ}}
    ics = google_to_ics(master, [moved], TZ)
    assert "EXDATE" not in ics
    assert ics_starts(ics) == [datetime(2027, 3, 15, 8), datetime(2027, 3, 23, 8),
                               datetime(2027, 3, 29, 7)]
