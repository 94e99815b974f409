"""Appointments come back as they were sent: the shapes real clients write (Outlook, Lotus,
Thunderbird, phones, exports), PUT to a real server, read back with GET, and compared
occurrence by occurrence as recurring-ical-events reads them (the reference reading of odd
input), in the served text and in what Gestan's agenda materialised.

Each case gives the text sent and, where recurring-ical-events would read the sent text
otherwise than its sender meant (a DATE RECURRENCE-ID on a timed series keeps the original
occurrence beside the moved one; a COUNT of 0 ends the series at once), the text meant:
the well-formed spelling of the same appointments. The served text must mean that.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
import requests
from icalendar import Calendar

from bridge.ical.render import etag_of
from bridge.ical.repair import REPAIRS

HORIZON = timedelta(days=360)  # Gestan materialises a year ahead; compared a bit less
MONDAY = date.today() + timedelta(days=14 + (7 - date.today().weekday()) % 7)
WINDOW = (date.today() - timedelta(days=2), date.today() + timedelta(days=400))


def day(offset: int) -> str:
    """The date ``offset`` days after MONDAY, as iCalendar writes it."""
    return f"{MONDAY + timedelta(days=offset):%Y%m%d}"


def vevent(uid: str, *lines: str) -> str:
    return ("BEGIN:VEVENT\r\n" f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n")


def vcalendar(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//fidelity//EN\r\n"
            + "".join(events) + "END:VCALENDAR\r\n")


def paris_weekly(uid: str, *extra: str, count: int = 4) -> str:
    """A weekly Monday 10:00-11:00 Paris series (the master every case edits)."""
    return vevent(uid, f"DTSTART;TZID=Europe/Paris:{day(0)}T100000",
                  f"DTEND;TZID=Europe/Paris:{day(0)}T110000",
                  f"RRULE:FREQ=WEEKLY;COUNT={count}", "SUMMARY:Weekly", *extra)


def moved(uid: str, rid: str, to: int, summary: str = "Moved", hour: int = 10) -> str:
    return vevent(uid, f"RECURRENCE-ID{rid}",
                  f"DTSTART;TZID=Europe/Paris:{day(to)}T{hour:02d}0000",
                  f"DTEND;TZID=Europe/Paris:{day(to)}T{hour + 1:02d}0000", f"SUMMARY:{summary}")


# ---------------------------------------------------------------- reading occurrences

def _when(value: date) -> tuple:
    """A start or end, comparable whatever its kind: a DATE, a floating wall-clock time,
    or an instant with its zone's name."""
    if not isinstance(value, datetime):
        return ("date", value.isoformat())
    if value.tzinfo is None:
        return ("floating", value.isoformat())
    name = getattr(value.tzinfo, "key", None) or str(value.tzinfo)
    name = "UTC" if name in ("Etc/UTC", "UTC", "UTC+00:00") else name
    return ("at", value.astimezone(UTC).isoformat(), name)


def occurrences(text: str) -> list[tuple]:
    """Every occurrence recurring-ical-events reads in ``text`` (in WINDOW)."""
    found = []
    for component in recurring_ical_events.of(Calendar.from_ical(text)).between(*WINDOW):
        found.append((_when(component["DTSTART"].dt), _when(component["DTEND"].dt),
                      str(component.get("SUMMARY", "")),
                      str(component.get("STATUS", "CONFIRMED")).upper()))
    return sorted(found)


def _utc(value: date, tz: str) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(UTC).replace(tzinfo=None)


def agenda_expected(text: str, tz: str) -> list[tuple]:
    """The Rendez-vous Gestan must hold for ``text``: recurring-ical-events' occurrences as
    instants (floating times and dates in the user's zone) that have not ended yet and
    start within HORIZON."""
    now = datetime.now(UTC).replace(tzinfo=None)
    found = []
    for component in recurring_ical_events.of(Calendar.from_ical(text)).between(*WINDOW):
        start, end = component["DTSTART"].dt, component["DTEND"].dt
        entry = (_utc(start, tz), _utc(end, tz), not isinstance(start, datetime),
                 str(component.get("SUMMARY", "")),
                 str(component.get("STATUS", "CONFIRMED")).upper())
        if entry[1] > now and entry[0] < now + HORIZON:
            found.append(entry)
    return sorted(found)


def agenda_of(server, login: str, href: str) -> list[tuple]:
    """What Gestan's agenda holds for the object at ``href`` (not ended yet, starting
    within HORIZON)."""
    user = server.store.user(login)
    stored = server.store.calendar_object(user.id, href)
    now = datetime.now(UTC).replace(tzinfo=None)
    return sorted((a.event.start, a.event.end, a.event.all_day, a.event.subject, a.event.status)
                  for a in server.store.agenda(login, now, now + HORIZON)
                  if a.object_id == stored.id)


@dataclass
class Answer:
    status: int
    etag: str | None
    text: str
    served_etag: str


def put_and_get(server, name: str, text: str, login: str = "alice") -> Answer:
    url = server.calendar_url(login) + f"{name}.ics"
    auth = (login, login)
    put = requests.put(url, data=text.encode("utf-8"), auth=auth,
                       headers={"Content-Type": "text/calendar; charset=utf-8"})
    assert put.status_code in (201, 204), put.text
    got = requests.get(url, auth=auth)
    assert got.status_code == 200
    return Answer(put.status_code, put.headers.get("ETag"), got.text, got.headers["ETag"])


def assert_round_trip(server, name: str, sent: str, meant: str | None = None,
                      login: str = "alice") -> Answer:
    """PUT ``sent``, GET it back: the served text has the occurrences of ``meant`` (the
    sent text unless said otherwise), and so has Gestan's agenda."""
    meant = meant or sent
    answer = put_and_get(server, name, sent, login)
    assert occurrences(answer.text) == occurrences(meant), answer.text
    tz = server.store.user(login).timezone
    assert agenda_of(server, login, f"{name}.ics") == agenda_expected(meant, tz)
    return answer


def component(text: str, summary: str | None = None, override: bool = False):
    """The (first) VEVENT of ``text``: the master, or an override, or by SUMMARY."""
    for found in Calendar.from_ical(text).walk("VEVENT"):
        if summary is not None and str(found.get("SUMMARY")) != summary:
            continue
        if summary is None and ("RECURRENCE-ID" in found) != override:
            continue
        return found
    raise AssertionError(f"no such VEVENT in {text}")


# ---------------------------------------------------------------- as they were sent

def test_all_day_series_with_a_utc_until_keeps_its_last_occurrence_and_no_more(server):
    """Outlook ends an all-day weekly series with UNTIL as a UTC date-time (local midnight
    of the last day, in UTC): recurring-ical-events reads the date part."""
    sent = vcalendar(vevent(
        "outlook-until", f"DTSTART;VALUE=DATE:{day(2)}", f"DTEND;VALUE=DATE:{day(3)}",
        f"RRULE:FREQ=WEEKLY;UNTIL={day(22)}T230000Z;INTERVAL=1;BYDAY=WE;WKST=SU",
        "SUMMARY:Astreinte", "X-MICROSOFT-CDO-ALLDAYEVENT:TRUE"))
    answer = assert_round_trip(server, "outlook-until", sent)
    starts = [o[0] for o in occurrences(answer.text)]
    assert starts == [("date", (MONDAY + timedelta(days=n)).isoformat()) for n in (2, 9, 16)]
    assert len(agenda_of(server, "alice", "outlook-until.ics")) == 3


RID_KINDS: dict[str, tuple[str, str]] = {
    # a DATE (no VALUE=DATE) names the day's occurrence of a timed series
    "date-for-timed": (f":{day(7)}", f";TZID=Europe/Paris:{day(7)}T100000"),
    "value-date-for-timed": (f";VALUE=DATE:{day(7)}", f";TZID=Europe/Paris:{day(7)}T100000"),
    # Outlook and Lotus write UTC whatever the series' zone
    "utc-for-zoned": (f":{day(7)}T090000Z", f";TZID=Europe/Paris:{day(7)}T100000"),
    "floating-for-zoned": (f":{day(7)}T100000", f";TZID=Europe/Paris:{day(7)}T100000"),
    "other-zone-for-zoned": (f";TZID=America/New_York:{day(7)}T040000",
                             f";TZID=Europe/Paris:{day(7)}T100000"),
}


@pytest.mark.parametrize("kind", sorted(RID_KINDS))
def test_an_override_named_in_another_kind_replaces_its_occurrence(server, kind):
    written, meant_rid = RID_KINDS[kind]
    sent = vcalendar(paris_weekly("rid"), moved("rid", written, to=8))
    meant = vcalendar(paris_weekly("rid"), moved("rid", meant_rid, to=8))
    answer = assert_round_trip(server, f"rid-{kind}", sent, meant)
    summaries = [o[2] for o in occurrences(answer.text)]
    assert summaries.count("Weekly") == 3 and summaries.count("Moved") == 1
    assert len(agenda_of(server, "alice", f"rid-{kind}.ics")) == 4


ALL_DAY_RID_KINDS = {
    "utc-midnight-paris": f":{day(6)}T230000Z",  # Monday 00:00 in Paris, Sunday in UTC
    "utc-midnight": f":{day(7)}T000000Z",
    "floating-midnight": f":{day(7)}T000000",
}


@pytest.mark.parametrize("kind", sorted(ALL_DAY_RID_KINDS))
def test_an_all_day_override_named_by_a_date_time_replaces_its_occurrence(server, kind):
    def series(rid: str) -> str:
        return vcalendar(
            vevent("allday", f"DTSTART;VALUE=DATE:{day(0)}", f"DTEND;VALUE=DATE:{day(1)}",
                   "RRULE:FREQ=WEEKLY;COUNT=3", "SUMMARY:Weekly"),
            vevent("allday", f"RECURRENCE-ID{rid}", f"DTSTART;VALUE=DATE:{day(8)}",
                   f"DTEND;VALUE=DATE:{day(9)}", "SUMMARY:Moved"))

    answer = assert_round_trip(server, f"allday-{kind}", series(ALL_DAY_RID_KINDS[kind]),
                               series(f";VALUE=DATE:{day(7)}"))
    assert [o[2] for o in occurrences(answer.text)] == ["Weekly", "Moved", "Weekly"]


def test_a_floating_override_of_a_series_in_another_zone_than_the_user(server):
    """A floating RECURRENCE-ID names the series' own wall-clock time (New York here, the
    user lives in Paris)."""
    def series(rid: str) -> str:
        return vcalendar(
            vevent("ny", f"DTSTART;TZID=America/New_York:{day(0)}T090000",
                   f"DTEND;TZID=America/New_York:{day(0)}T100000",
                   "RRULE:FREQ=DAILY;COUNT=5", "SUMMARY:Stand-up"),
            vevent("ny", f"RECURRENCE-ID{rid}", f"DTSTART;TZID=America/New_York:{day(2)}T150000",
                   f"DTEND;TZID=America/New_York:{day(2)}T160000", "SUMMARY:Later"))

    assert_round_trip(server, "ny-floating", series(f":{day(2)}T090000"),
                      series(f";TZID=America/New_York:{day(2)}T090000"))


def test_this_and_future_applies_to_every_later_occurrence(server):
    """RANGE=THISANDFUTURE (Outlook, Lotus): moved to 14:00 from the third on, retitled."""
    sent = vcalendar(
        paris_weekly("future", count=6),
        vevent("future", f"RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Paris:{day(14)}T100000",
               f"DTSTART;TZID=Europe/Paris:{day(14)}T140000",
               f"DTEND;TZID=Europe/Paris:{day(14)}T153000", "SUMMARY:Weekly (afternoon)"))
    answer = assert_round_trip(server, "future", sent)
    found = occurrences(answer.text)
    assert [o[2] for o in found] == ["Weekly"] * 2 + ["Weekly (afternoon)"] * 4
    assert len({o[0] for o in found}) == 6
    served = component(answer.text, override=True)
    assert served["RECURRENCE-ID"].params["RANGE"] == "THISANDFUTURE"
    subjects = [a[3] for a in agenda_of(server, "alice", "future.ics")]
    assert subjects == ["Weekly"] * 2 + ["Weekly (afternoon)"] * 4


def test_occurrences_of_a_this_and_future_series_deleted_in_gestan(server):
    """Gestan deletes the occurrence that carries RANGE=THISANDFUTURE and a later one: the
    phone sees both as EXDATEs, and the later occurrences keep the change."""
    def series(*exdates: int) -> str:
        excluded = [f"EXDATE;TZID=Europe/Paris:{day(n)}T100000" for n in exdates]
        return vcalendar(
            paris_weekly("future-gestan", *excluded, count=6),
            vevent("future-gestan",
                   f"RECURRENCE-ID;RANGE=THISANDFUTURE;TZID=Europe/Paris:{day(14)}T100000",
                   f"DTSTART;TZID=Europe/Paris:{day(14)}T140000",
                   f"DTEND;TZID=Europe/Paris:{day(14)}T150000", "SUMMARY:Afternoon"))

    put_and_get(server, "future-gestan", series())
    stored = server.store.calendar_object(server.store.user("alice").id, "future-gestan.ics")
    doomed = {_utc(datetime.combine(MONDAY + timedelta(days=n), time(14)), "Europe/Paris")
              for n in (14, 28)}
    for action in server.store.agenda("alice"):
        if action.object_id == stored.id and action.event.start in doomed:
            server.store.delete_action("alice", action.id)
    served = requests.get(server.calendar_url("alice") + "future-gestan.ics",
                          auth=("alice", "alice")).text
    assert occurrences(served) == occurrences(series(14, 28)), served
    assert [o[2] for o in occurrences(served)] == ["Weekly"] * 2 + ["Afternoon"] * 2
    assert agenda_of(server, "alice", "future-gestan.ics") == agenda_expected(
        series(14, 28), "Europe/Paris")


def test_an_override_left_behind_by_a_cut_series_shows_nothing(server):
    """A client cut the series with UNTIL (SEQUENCE 2) and left the older version of a later
    occurrence (SEQUENCE 1, with the series' RRULE): recurring-ical-events shows no
    occurrence for it, nor may the server."""
    sent = vcalendar(
        vevent("cut", f"DTSTART;TZID=Europe/Paris:{day(0)}T100000",
               f"DTEND;TZID=Europe/Paris:{day(0)}T110000",
               f"RRULE:FREQ=WEEKLY;UNTIL={day(15)}T000000Z", "SEQUENCE:2", "SUMMARY:Weekly"),
        vevent("cut", "SEQUENCE:1", "RRULE:FREQ=WEEKLY",
               f"RECURRENCE-ID;TZID=Europe/Paris:{day(21)}T100000",
               f"DTSTART;TZID=Europe/Paris:{day(22)}T100000",
               f"DTEND;TZID=Europe/Paris:{day(22)}T110000", "SUMMARY:Left behind"))
    answer = assert_round_trip(server, "cut", sent)
    assert [o[2] for o in occurrences(answer.text)] == ["Weekly"] * 3
    assert "Left behind" in answer.text  # kept as sent, not lost


MIXED_TIMES = {
    "floating-start-utc-end": (f"DTSTART:{day(1)}T100000", f"DTEND:{day(1)}T110000Z"),
    "utc-start-floating-end": (f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000"),
    "paris-to-new-york": (f"DTSTART;TZID=Europe/Paris:{day(1)}T100000",
                          f"DTEND;TZID=America/New_York:{day(1)}T130000"),
    "zoned-start-utc-end": (f"DTSTART;TZID=Europe/Paris:{day(1)}T100000",
                            f"DTEND:{day(1)}T100000Z"),
    "date-start-duration-hours": (f"DTSTART;VALUE=DATE:{day(1)}", "DURATION:PT2H"),
}


@pytest.mark.parametrize("name", sorted(MIXED_TIMES))
def test_start_and_end_of_different_kinds_come_back_as_sent(server, name):
    start, end = MIXED_TIMES[name]
    sent = vcalendar(vevent(f"mixed-{name}", start, end, "SUMMARY:Mixed"))
    answer = assert_round_trip(server, f"mixed-{name}", sent)
    served = component(answer.text)
    for line in (start, end):
        prop = line.split(":")[0].split(";")[0]
        assert served[prop].to_ical().decode() == line.split(":", 1)[1]
        assert {k: str(v) for k, v in served[prop].params.items()} == dict(
            p.split("=") for p in line.split(":")[0].split(";")[1:])
    assert "DTEND" not in served if "DURATION" in end else "DURATION" not in served
    for tzid in {p.params["TZID"] for p in (served["DTSTART"], served.get("DTEND"))
                 if p is not None and "TZID" in p.params}:
        assert f"TZID:{tzid}" in answer.text  # its VTIMEZONE is there


def test_a_series_with_mixed_times_and_its_overrides(server):
    sent = vcalendar(
        vevent("mixed-series", f"DTSTART:{day(0)}T080000", f"DTEND:{day(0)}T090000Z",
               "RRULE:FREQ=DAILY;COUNT=4", "SUMMARY:Daily"),
        vevent("mixed-series", f"RECURRENCE-ID:{day(1)}T080000Z",
               f"DTSTART:{day(1)}T120000", f"DTEND:{day(1)}T130000Z", "SUMMARY:Noon"))
    answer = assert_round_trip(server, "mixed-series", sent)
    assert [o[2] for o in occurrences(answer.text)] == ["Daily", "Noon", "Daily", "Daily"]


# ---------------------------------------------------------------- repaired, not refused

@dataclass
class Repaired:
    sent: str
    meant: str
    kind: str
    check: Callable[[str], None] = lambda text: None


def _swapped(text: str) -> None:
    served = component(text)
    start = served["DTSTART"].dt
    end = served["DTEND"].dt if "DTEND" in served else start + served["DURATION"].dt
    assert start < end


def _one_override(text: str) -> None:
    assert text.count("RECURRENCE-ID") == 1


REPAIRED: dict[str, Repaired] = {
    "end-before-start": Repaired(
        vcalendar(vevent("swap", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T090000Z",
                         "SUMMARY:Swapped")),
        vcalendar(vevent("swap", f"DTSTART:{day(1)}T090000Z", f"DTEND:{day(1)}T100000Z",
                         "SUMMARY:Swapped")), "end before start", _swapped),
    "series-ending-before-it-starts": Repaired(
        vcalendar(vevent("swap-series", f"DTSTART;TZID=Europe/Paris:{day(0)}T180000",
                         f"DTEND;TZID=Europe/Paris:{day(0)}T170000",
                         "RRULE:FREQ=DAILY;COUNT=3", "SUMMARY:Evening")),
        vcalendar(vevent("swap-series", f"DTSTART;TZID=Europe/Paris:{day(0)}T170000",
                         f"DTEND;TZID=Europe/Paris:{day(0)}T180000",
                         "RRULE:FREQ=DAILY;COUNT=3", "SUMMARY:Evening")),
        "end before start", _swapped),
    # stock Radicale cannot index this one (it subtracts a date from a date-time)
    "date-start-timed-end": Repaired(
        vcalendar(vevent("date-timed", f"DTSTART;VALUE=DATE:{day(1)}",
                         f"DTEND;TZID=Europe/Paris:{day(1)}T083000", "SUMMARY:Morning")),
        vcalendar(vevent("date-timed", f"DTSTART;TZID=Europe/Paris:{day(1)}T000000",
                         f"DTEND;TZID=Europe/Paris:{day(1)}T083000", "SUMMARY:Morning")),
        "DATE beside a date-time"),
    "negative-duration": Repaired(
        vcalendar(vevent("negative", f"DTSTART:{day(1)}T100000Z", "DURATION:-PT30M",
                         "SUMMARY:Backwards")),
        vcalendar(vevent("negative", f"DTSTART:{day(1)}T093000Z", "DURATION:PT30M",
                         "SUMMARY:Backwards")), "end before start", _swapped),
    "identical-overrides": Repaired(
        vcalendar(paris_weekly("twice"), moved("twice", f";TZID=Europe/Paris:{day(7)}T100000", 8),
                  moved("twice", f";TZID=Europe/Paris:{day(7)}T100000", 8)),
        vcalendar(paris_weekly("twice"), moved("twice", f";TZID=Europe/Paris:{day(7)}T100000", 8)),
        "identical copy dropped", _one_override),
    "different-overrides": Repaired(
        vcalendar(paris_weekly("both"), moved("both", f";TZID=Europe/Paris:{day(7)}T100000", 8),
                  moved("both", f";TZID=Europe/Paris:{day(7)}T100000", 9, "Moved again")),
        vcalendar(paris_weekly("both", f"RDATE;TZID=Europe/Paris:{day(9)}T100000"),
                  moved("both", f";TZID=Europe/Paris:{day(7)}T100000", 8),
                  moved("both", f";TZID=Europe/Paris:{day(9)}T100000", 9, "Moved again")),
        "second version kept as an occurrence"),
    "older-override": Repaired(
        vcalendar(paris_weekly("older"),
                  moved("older", f";TZID=Europe/Paris:{day(7)}T100000", 8).replace(
                      "SUMMARY:", "SEQUENCE:1\r\nSUMMARY:"),
                  moved("older", f";TZID=Europe/Paris:{day(7)}T100000", 9, "Newer").replace(
                      "SUMMARY:", "SEQUENCE:2\r\nSUMMARY:")),
        vcalendar(paris_weekly("older"),
                  moved("older", f";TZID=Europe/Paris:{day(7)}T100000", 9, "Newer")),
        "older version dropped", _one_override),
    "identical-masters": Repaired(
        vcalendar(paris_weekly("copies"), paris_weekly("copies").replace(
            "DTSTAMP:20260101T000000Z", "DTSTAMP:20260102T000000Z")),
        vcalendar(paris_weekly("copies")), "identical copy dropped"),
    "different-masters": Repaired(
        vcalendar(vevent("two", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         "SUMMARY:First"),
                  vevent("two", f"DTSTART:{day(2)}T140000Z", f"DTEND:{day(2)}T150000Z",
                         "SUMMARY:Second")),
        vcalendar(vevent("two", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         "SUMMARY:First", f"RDATE:{day(2)}T100000Z"),
                  vevent("two", f"RECURRENCE-ID:{day(2)}T100000Z", f"DTSTART:{day(2)}T140000Z",
                         f"DTEND:{day(2)}T150000Z", "SUMMARY:Second")),
        "second version kept as an occurrence"),
    "a-series-and-a-single-event": Repaired(
        vcalendar(vevent("mix", f"DTSTART:{day(5)}T080000Z", f"DTEND:{day(5)}T090000Z",
                         "SUMMARY:Extra"), paris_weekly("mix")),
        vcalendar(paris_weekly("mix", f"RDATE;TZID=Europe/Paris:{day(5)}T090000"),
                  vevent("mix", f"RECURRENCE-ID;TZID=Europe/Paris:{day(5)}T090000",
                         f"DTSTART:{day(5)}T080000Z", f"DTEND:{day(5)}T090000Z",
                         "SUMMARY:Extra")),
        "second version kept as an occurrence"),
    "count-zero-with-until": Repaired(
        vcalendar(vevent("count0", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         f"RRULE:FREQ=DAILY;COUNT=0;UNTIL={day(4)}T100000Z", "SUMMARY:Daily")),
        vcalendar(vevent("count0", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         f"RRULE:FREQ=DAILY;UNTIL={day(4)}T100000Z", "SUMMARY:Daily")),
        "COUNT ignored beside UNTIL"),
    "negative-count-with-until": Repaired(
        vcalendar(vevent("count-1", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         f"RRULE:FREQ=DAILY;UNTIL={day(3)}T100000Z;COUNT=-1", "SUMMARY:Daily")),
        vcalendar(vevent("count-1", f"DTSTART:{day(1)}T100000Z", f"DTEND:{day(1)}T110000Z",
                         f"RRULE:FREQ=DAILY;UNTIL={day(3)}T100000Z", "SUMMARY:Daily")),
        "COUNT ignored beside UNTIL"),
}


@pytest.mark.parametrize("name", sorted(REPAIRED))
def test_what_clients_really_send_is_repaired_not_refused(server, caplog, name):
    case = REPAIRED[name]
    counted = REPAIRS[case.kind]
    with caplog.at_level(logging.WARNING, logger="gestan_bridge"):
        answer = assert_round_trip(server, name, case.sent, case.meant)
    case.check(answer.text)
    # the phone fetches the repaired version: no ETag for a text stored otherwise than sent
    assert answer.etag is None
    assert answer.served_etag == etag_of(answer.text)
    assert REPAIRS[case.kind] > counted
    logged = [r.getMessage() for r in caplog.records if r.name == "gestan_bridge"]
    assert any(f"/alice/rendez-vous/{name}.ics" in m and case.kind in m for m in logged), logged
    again = put_and_get(server, name, answer.text)  # the repaired text needs no repair
    assert again.etag is not None and occurrences(again.text) == occurrences(case.meant)


def test_two_rrules_mean_the_union_of_both(server):
    sent = vcalendar(vevent("two-rules", f"DTSTART:{day(0)}T100000Z", f"DTEND:{day(0)}T110000Z",
                            "RRULE:FREQ=WEEKLY;COUNT=3", "RRULE:FREQ=WEEKLY;BYDAY=WE;COUNT=2",
                            "SUMMARY:Twice"))
    answer = assert_round_trip(server, "two-rules", sent)
    assert [o[0][1][:10] for o in occurrences(answer.text)] == [
        (MONDAY + timedelta(days=n)).isoformat() for n in (0, 2, 7, 9, 14)]
    assert len(component(answer.text)["RRULE"]) == 2


def test_a_plain_event_is_served_with_an_etag_and_counts_no_repair(server):
    before = sum(REPAIRS.values())
    sent = vcalendar(vevent("plain", f"DTSTART;TZID=Europe/Paris:{day(1)}T100000",
                            f"DTEND;TZID=Europe/Paris:{day(1)}T110000", "SUMMARY:Plain"))
    answer = assert_round_trip(server, "plain", sent)
    assert answer.etag == answer.served_etag
    assert sum(REPAIRS.values()) == before


def test_a_series_moved_by_the_phone_comes_back_without_its_old_times_excluded(server):
    """A new version of a series at another time: the occurrences of the old version are
    gone from Gestan, not "deleted in Gestan", so the served text names no EXDATE for them
    (nor does a sync carry such EXDATEs to Google or Outlook)."""
    def series(hour: int) -> str:
        return vcalendar(vevent(
            "moved-series", f"DTSTART;TZID=Europe/Paris:{day(0)}T{hour}0000",
            f"DTEND;TZID=Europe/Paris:{day(0)}T{hour + 1}0000", "RRULE:FREQ=WEEKLY;COUNT=4",
            f"EXDATE;TZID=Europe/Paris:{day(7)}T{hour}0000", "SUMMARY:Weekly"))

    put_and_get(server, "moved-series", series(10))
    answer = assert_round_trip(server, "moved-series", series(14))
    def excluded(text: str) -> list[datetime]:
        found = component(text).get("EXDATE")
        found = found if isinstance(found, list) else [found]
        return sorted(d.dt.astimezone(UTC) for prop in found for d in prop.dts)

    assert excluded(answer.text) == excluded(series(14)), answer.text
