"""Gestan's side of the appointments phones write (issue 10): ``agenda list`` at the user's
wall-clock time, ``agenda import`` of an unchanged file changing nothing a phone could see,
and local times that a DST change skips."""

from __future__ import annotations

import subprocess
from datetime import date, datetime, timedelta

import requests

from bridge.ical.timezones import local_to_utc
from tests.clirun import invoke
from tests.conftest import snapshot


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess:
    return invoke({"GESTAN_BRIDGE_DB": db_url}, *args)


def vcalendar(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//phone//EN\r\n"
            + "".join(events) + "END:VCALENDAR\r\n")


def vevent(uid: str, start: str, end: str, summary: str, extra: str = "") -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{start}\r\n{end}\r\n"
            f"SUMMARY:{summary}\r\n{extra}END:VEVENT\r\n")


def listing(db_url: str, first: str, days: int = 1, login: str = "alice") -> list[str]:
    result = cli(db_url, "agenda", "list", "--user", login, "--from", first, "--days", str(days))
    assert result.returncode == 0, result.stderr
    return [" ".join(line.split()[1:]) for line in result.stdout.splitlines()]  # without ids


# ------------------------------------------------------------------ agenda list
def test_list_shows_the_users_wall_clock_time_and_names_another_zone(store):
    """alice lives in Paris (UTC+2 in June): a phone's UTC time and a New York event are
    listed at Paris time; the New York one also at its own time, named."""
    store.put_object("alice", "utc.ics", vcalendar(vevent(
        "utc", "DTSTART:20270615T120000Z", "DTEND:20270615T130000Z", "Phone in UTC")))
    store.put_object("alice", "ny.ics", vcalendar(vevent(
        "ny", "DTSTART;TZID=America/New_York:20270615T090000",
        "DTEND;TZID=America/New_York:20270615T100000", "New York call")))
    store.put_object("alice", "paris.ics", vcalendar(vevent(
        "paris", "DTSTART;TZID=Europe/Paris:20270615T170000",
        "DTEND;TZID=Europe/Paris:20270615T173000", "Paris visit")))
    store.put_object("alice", "floating.ics", vcalendar(vevent(
        "floating", "DTSTART:20270615T180000", "DTEND:20270615T183000", "Floating")))
    assert listing(store.url, "2027-06-15") == [
        "2027-06-15 14:00-15:00 Phone in UTC",
        "2027-06-15 15:00-16:00 (09:00-10:00 America/New_York) New York call",
        "2027-06-15 17:00-17:30 Paris visit",
        "2027-06-15 18:00-18:30 Floating",
    ]


def test_list_picks_days_and_shows_them_in_the_users_zone(store):
    """A New York evening is the next morning in Paris: listed on that Paris day, with that
    date; the days stay Paris days across the spring DST change."""
    store.put_object("alice", "late.ics", vcalendar(vevent(
        "late", "DTSTART;TZID=America/New_York:20270615T200000",
        "DTEND;TZID=America/New_York:20270615T210000", "Late in New York")))
    assert listing(store.url, "2027-06-15") == []
    assert listing(store.url, "2027-06-16") == [
        "2027-06-16 02:00-03:00 (2027-06-15 20:00-21:00 America/New_York) Late in New York"]
    # 2027-03-29 00:30 in Paris is 22:30 UTC on the 28th: not one of the two days from the
    # 27th (two Paris days are 47 hours long there)
    store.put_object("alice", "after.ics", vcalendar(vevent(
        "after", "DTSTART;TZID=Europe/Paris:20270329T003000",
        "DTEND;TZID=Europe/Paris:20270329T010000", "Just after")))
    assert listing(store.url, "2027-03-27", days=2) == []
    assert listing(store.url, "2027-03-29") == ["2027-03-29 00:30-01:00 Just after"]


def test_list_shows_the_last_day_of_what_spans_days(store):
    store.put_object("alice", "fair.ics", vcalendar(vevent(
        "fair", "DTSTART;VALUE=DATE:20270615", "DTEND;VALUE=DATE:20270618", "Trade fair")))
    store.put_object("alice", "one.ics", vcalendar(vevent(
        "one", "DTSTART;VALUE=DATE:20270616", "DTEND;VALUE=DATE:20270617", "Holiday")))
    store.put_object("alice", "night.ics", vcalendar(vevent(
        "night", "DTSTART;TZID=Europe/Paris:20270616T220000",
        "DTEND;TZID=Europe/Paris:20270617T020000", "Night shift")))
    assert listing(store.url, "2027-06-16") == [
        "2027-06-15 to 2027-06-17 all day Trade fair",
        "2027-06-16 all day Holiday",
        "2027-06-16 22:00 to 2027-06-17 02:00 Night shift",
    ]
    assert listing(store.url, "2027-06-18") == []
    # an all-day appointment of a New York phone keeps its dates for a Paris user
    store.put_object("bob", "nyday.ics", vcalendar(vevent(
        "nyday", "DTSTART;VALUE=DATE:20270620", "DTEND;VALUE=DATE:20270622", "Two days")))
    store.set_user("bob", timezone="Asia/Tokyo")
    assert listing(store.url, "2027-06-21", login="bob") == [
        "2027-06-20 to 2027-06-21 all day Two days"]
    assert listing(store.url, "2027-06-22", login="bob") == []


# ------------------------------------------------------------------ agenda add: DST
def test_a_local_time_that_a_dst_change_skips_is_refused_with_the_reason(store):
    before = snapshot(store)
    for args in (["--start", "2027-03-28 02:30"],
                 ["--start", "2027-03-28 01:30", "--end", "2027-03-28 02:15"]):
        refused = cli(store.url, "agenda", "add", "--user", "alice", "--subject", "Gap", *args)
        assert refused.returncode == 1, refused.stdout
        [line] = refused.stderr.splitlines()
        assert "does not exist in Europe/Paris" in line and "02:00" in line, line
        assert "03:00" in line, "the reason says where the clocks jump to"
    assert snapshot(store) == before
    ny = cli(store.url, "agenda", "add", "--user", "alice", "--subject", "Gap in New York",
             "--start", "2027-03-14 02:30", "--timezone", "America/New_York")
    assert ny.returncode == 1 and "does not exist in America/New_York" in ny.stderr
    # just after the gap is fine, and keeps its hour
    after = cli(store.url, "agenda", "add", "--user", "alice", "--subject", "After",
                "--start", "2027-03-28 03:00")
    assert after.returncode == 0, after.stderr
    [action] = store.agenda("alice")
    assert action.event.start == local_to_utc(datetime(2027, 3, 28, 3), "Europe/Paris")
    assert (action.event.end - action.event.start).total_seconds() == 3600


def test_a_repeated_autumn_time_is_the_first_one(store):
    added = cli(store.url, "agenda", "add", "--user", "alice", "--subject", "Twice",
                "--start", "2027-10-31 02:30", "--duration", "30")
    assert added.returncode == 0, added.stderr
    [action] = store.agenda("alice")
    assert action.event.start.isoformat() == "2027-10-31T00:30:00"  # 02:30 summer time
    assert (action.event.end - action.event.start).total_seconds() == 1800


# ------------------------------------------------------------------ agenda import: unchanged
def _tuesday() -> date:
    """A Tuesday a month ahead: the series below is in the future whenever the suite runs."""
    day = date.today() + timedelta(days=30)
    return day + timedelta(days=(1 - day.weekday()) % 7)


def _paris(day: date, hour: int) -> str:
    return f"TZID=Europe/Paris:{day:%Y%m%d}T{hour:02d}0000"


FIRST = _tuesday()
EXPORT = vcalendar(
    vevent("single@x", "DTSTART;TZID=Europe/Paris:20270615T100000",
           "DTEND;TZID=Europe/Paris:20270615T110000", "Dentiste",
           "LOCATION:Lyon\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nDESCRIPTION:Rappel\r\n"
           "TRIGGER:-PT30M\r\nEND:VALARM\r\n"),
    vevent("allday@x", "DTSTART;VALUE=DATE:20270701", "DTEND;VALUE=DATE:20270703", "Salon"),
    vevent("series@x", f"DTSTART;{_paris(FIRST, 9)}", f"DTEND;{_paris(FIRST, 10)}", "Weekly",
           f"RRULE:FREQ=WEEKLY;COUNT=6\r\nEXDATE;{_paris(FIRST + timedelta(weeks=2), 9)}\r\n"),
    vevent("series@x", f"DTSTART;{_paris(FIRST + timedelta(weeks=3), 14)}",
           f"DTEND;{_paris(FIRST + timedelta(weeks=3), 15)}", "Weekly (moved)",
           f"RECURRENCE-ID;{_paris(FIRST + timedelta(weeks=3), 9)}\r\n"),
)

PROPFIND_ETAGS = ('<?xml version="1.0"?><propfind xmlns="DAV:" '
                  'xmlns:CS="http://calendarserver.org/ns/"><prop><getetag/><CS:getctag/>'
                  "</prop></propfind>")


def _tags(server) -> str:
    """The calendar's ctag and every object's etag, as a phone reads them."""
    answer = requests.request("PROPFIND", server.calendar_url("alice"), data=PROPFIND_ETAGS,
                              headers={"Depth": "1"}, auth=("alice", "alice"))
    assert answer.status_code == 207
    return answer.text


def test_reimporting_an_unchanged_file_changes_nothing_a_phone_sees(server, tmp_path):
    ics = tmp_path / "export.ics"
    ics.write_text(EXPORT, encoding="utf-8")
    first = cli(server.store.url, "agenda", "import", "--user", "alice", str(ics))
    assert first.returncode == 0, first.stderr
    assert "3 added, 0 updated, 0 unchanged, 0 rejected" in first.stdout
    tags, before = _tags(server), snapshot(server.store)
    assert tags.count(".ics</href>") == 3 and "</CS:getctag>" in tags

    again = cli(server.store.url, "agenda", "import", "--user", "alice", str(ics))
    assert again.returncode == 0, again.stderr
    assert "0 added, 0 updated, 3 unchanged, 0 rejected" in again.stdout
    assert _tags(server) == tags, "an unchanged import must not make phones download again"
    assert snapshot(server.store) == before

    # the calendar as a phone downloads it, imported back: still nothing changes
    exported = tmp_path / "downloaded.ics"
    exported.write_bytes(requests.get(server.calendar_url("alice"), auth=("alice", "alice"))
                         .content)
    back = cli(server.store.url, "agenda", "import", "--user", "alice", str(exported))
    assert "0 added, 0 updated, 3 unchanged, 0 rejected" in back.stdout, back.stdout
    assert _tags(server) == tags and snapshot(server.store) == before

    # one real change: that object only gets a new etag
    ics.write_text(EXPORT.replace("LOCATION:Lyon", "LOCATION:Vienne"), encoding="utf-8")
    changed = cli(server.store.url, "agenda", "import", "--user", "alice", str(ics))
    assert "0 added, 1 updated, 2 unchanged, 0 rejected" in changed.stdout
    assert _tags(server) != tags
    assert "Vienne" in "".join(a.event.location for a in server.store.agenda("alice"))


def test_reimport_restores_what_gestan_changed_since(store, tmp_path):
    """An import makes the calendar say what the file says: an occurrence deleted in Gestan
    since the first import comes back, and that counts as an update."""
    ics = tmp_path / "export.ics"
    ics.write_text(EXPORT, encoding="utf-8")
    cli(store.url, "agenda", "import", "--user", "alice", str(ics))
    weekly = [a for a in store.agenda("alice") if a.event.subject == "Weekly"]
    store.delete_action("alice", weekly[-1].id)
    again = cli(store.url, "agenda", "import", "--user", "alice", str(ics))
    assert "0 added, 1 updated, 2 unchanged, 0 rejected" in again.stdout
    assert len([a for a in store.agenda("alice") if a.event.subject == "Weekly"]) == len(weekly)
