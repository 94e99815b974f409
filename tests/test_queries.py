"""calendar-query REPORTs answered as stock Radicale 3.9 answers them: the same bodies go
to a real gestan-bridge server and to stock Radicale (its own multifilesystem storage, in
this process); the answers must agree. Where stock Radicale fails (an expansion that one
object breaks), the reference is recurring-ical-events, the reading the store uses."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import dateutil.rrule
import pytest
import recurring_ical_events
import requests
from icalendar import Calendar

from tests.stock_radicale import StockServer, stock_radicale

TODAY = date.today()
STAMP = "%Y%m%dT%H%M%SZ"
PARIS = "TZID=Europe/Paris"


@pytest.fixture
def stock(tmp_path) -> Iterator[StockServer]:
    with stock_radicale(tmp_path / "stock") as running:
        yield running


def day(offset: int) -> date:
    return TODAY + timedelta(days=offset)


def local(offset: int, hour: int = 9) -> str:
    """A Paris wall-clock time ``offset`` days from today, as iCalendar text."""
    return f"{day(offset):%Y%m%d}T{hour:02d}0000"


def utc(offset: int, hour: int = 0) -> str:
    return f"{day(offset):%Y%m%d}T{hour:02d}0000Z"


def calendar(*vevents: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//queries//EN\r\n"
            + "".join(f"BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\n{v}END:VEVENT\r\n"
                      for v in vevents)
            + "END:VCALENDAR\r\n")


def put(session: requests.Session, url: str, name: str, text: str) -> None:
    answer = session.put(f"{url}{name}.ics", data=text.encode(),
                         headers={"Content-Type": "text/calendar"})
    assert answer.status_code == 201, (name, answer.status_code, answer.text)


def report(session: requests.Session, url: str, body: str) -> requests.Response:
    return session.request("REPORT", url, data=body.encode(), headers={"Depth": "1"})


def names(answer: requests.Response) -> list[str]:
    assert answer.status_code == 207, answer.text
    return sorted(re.findall(r"/([\w-]+)\.ics</href>", answer.text))


def query(filter_inside_vevent: str = "", props: str = "<D:getetag/>") -> str:
    return ('<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
            f'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop>{props}</D:prop>'
            '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            f"{filter_inside_vevent}</C:comp-filter></C:comp-filter></C:filter>"
            "</C:calendar-query>")


def time_range(start: str | None = None, end: str | None = None) -> str:
    bounds = "".join(f' {k}="{v}"' for k, v in (("start", start), ("end", end)) if v)
    return f"<C:time-range{bounds}/>"


def not_defined(name: str) -> str:
    return f'<C:prop-filter name="{name}"><C:is-not-defined/></C:prop-filter>'


# Real-world shapes around today: the past (before a series' last write, expanded over the
# asked part only), the year ahead (materialised), and beyond.
OBJECTS = {
    "single": calendar(f"UID:single\r\nDTSTART;{PARIS}:{local(3)}\r\n"
                       f"DTEND;{PARIS}:{local(3, 10)}\r\nSUMMARY:single\r\n"),
    "no-end": calendar(f"UID:no-end\r\nDTSTART;{PARIS}:{local(20)}\r\nSUMMARY:no end\r\n"),
    "duration": calendar(f"UID:duration\r\nDTSTART;{PARIS}:{local(40)}\r\nDURATION:PT2H\r\n"
                         "SUMMARY:duration\r\nLOCATION:Lyon\r\n"),
    "utc": calendar(f"UID:utc\r\nDTSTART:{utc(10, 12)}\r\nDTEND:{utc(10, 13)}\r\n"
                    "SUMMARY:utc\r\nCATEGORIES:Travail\r\n"),
    "floating": calendar(f"UID:floating\r\nDTSTART:{local(15, 12)}\r\n"
                         f"DTEND:{local(15, 13)}\r\nSUMMARY:floating\r\n"),
    "all-day": calendar(f"UID:all-day\r\nDTSTART;VALUE=DATE:{day(7):%Y%m%d}\r\n"
                        f"DTEND;VALUE=DATE:{day(9):%Y%m%d}\r\nSUMMARY:all day\r\n"
                        "CLASS:PRIVATE\r\n"),
    "all-day-no-end": calendar(f"UID:all-day-no-end\r\nDTSTART;VALUE=DATE:{day(60):%Y%m%d}"
                               "\r\nSUMMARY:one day\r\n"),
    "past": calendar(f"UID:past\r\nDTSTART;{PARIS}:{local(-30)}\r\n"
                     f"DTEND;{PARIS}:{local(-30, 11)}\r\nSUMMARY:past\r\n"),
    "weekly": calendar(
        f"UID:weekly\r\nDTSTART;{PARIS}:{local(-14)}\r\nDTEND;{PARIS}:{local(-14, 10)}\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=8\r\nSUMMARY:weekly\r\n"
        "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\nDESCRIPTION:r\r\nEND:VALARM\r\n",
        f"UID:weekly\r\nRECURRENCE-ID;{PARIS}:{local(7)}\r\nDTSTART;{PARIS}:{local(90, 14)}"
        f"\r\nDTEND;{PARIS}:{local(90, 15)}\r\nSUMMARY:weekly moved far\r\n"),
    "monthly": calendar(f"UID:monthly\r\nDTSTART;{PARIS}:{local(-400, 8)}\r\n"
                        f"DTEND;{PARIS}:{local(-400, 9)}\r\nRRULE:FREQ=MONTHLY\r\n"
                        "SUMMARY:monthly no end\r\n"),
    "yearly-past": calendar(
        f"UID:yearly-past\r\nDTSTART;VALUE=DATE:{day(-2000):%Y%m%d}\r\nRRULE:FREQ=YEARLY;COUNT=3"
        "\r\nSUMMARY:yearly over\r\n"),
    "all-day-weekly": calendar(
        f"UID:all-day-weekly\r\nDTSTART;VALUE=DATE:{day(-3):%Y%m%d}\r\n"
        f"DTEND;VALUE=DATE:{day(-2):%Y%m%d}\r\nRRULE:FREQ=WEEKLY;COUNT=6\r\n"
        f"EXDATE;VALUE=DATE:{day(4):%Y%m%d}\r\nSUMMARY:all-day weekly\r\n"),
}

# Instants around the objects' edges (midnights and the Paris/UTC hours they start at).
POINTS = [utc(-3000), utc(-420), utc(-31), utc(-30, 8), utc(-14, 7), utc(-3), utc(0),
          utc(3, 7), utc(3, 8), utc(7), utc(8, 22), utc(9), utc(10, 12), utc(10, 13),
          utc(15, 11), utc(15, 12), utc(20, 7), utc(20, 8), utc(40, 8), utc(60), utc(61),
          utc(90, 12), utc(200), utc(500), utc(3000)]

QUERIES = {
    **{f"from {p}": query(time_range(start=p)) for p in POINTS},
    **{f"until {p}": query(time_range(end=p)) for p in POINTS},
    **{f"{a} to {b}": query(time_range(a, b)) for a, b in zip(POINTS, POINTS[3:], strict=False)},
    **{f"{a} to {b}": query(time_range(a, b)) for a, b in zip(POINTS, POINTS[1:], strict=False)},
    **{f"no {name}": query(not_defined(name))
       for name in ("LOCATION", "CATEGORIES", "CLASS", "RRULE", "DESCRIPTION")},
    **{f"no {name} from {p}": query(time_range(start=p) + not_defined(name))
       for name in ("LOCATION", "RRULE") for p in POINTS[4:8]},
    "alarm from today": query(time_range(start=utc(0)) + '<C:comp-filter name="VALARM"/>'),
    "summary text": query('<C:prop-filter name="SUMMARY"><C:text-match>WEEKLY'
                          "</C:text-match></C:prop-filter>"),
}


@pytest.fixture(scope="module")
def stock_answers(tmp_path_factory) -> dict[str, list[str]]:
    """Stock Radicale's answer to every query of QUERIES over OBJECTS (once: it does not
    depend on the database gestan-bridge runs on)."""
    with stock_radicale(tmp_path_factory.mktemp("stock")) as running:
        session = running.session("alice")
        for name, text in OBJECTS.items():
            put(session, running.calendar_url(), name, text)
        return {label: names(report(session, running.calendar_url(), body))
                for label, body in QUERIES.items()}


def test_queries_answer_as_stock_radicale(server, stock_answers):
    """Time ranges closed or open at either end, events with DURATION or without DTEND,
    all-day and floating ones, series with overrides, EXDATEs, no end or long over; and
    is-not-defined / text filters alone or beside a time range."""
    ours = server.session("alice")
    for name, text in OBJECTS.items():
        put(ours, server.calendar_url("alice"), name, text)
    differ = {}
    for label, body in QUERIES.items():
        mine = names(report(ours, server.calendar_url("alice"), body))
        if mine != stock_answers[label]:
            differ[label] = {"ours": mine, "stock": stock_answers[label]}
    assert differ == {}
    assert len(QUERIES) > 100 and sum(map(len, stock_answers.values())) > 500


def test_is_not_defined_dtend_finds_the_events_sent_without_one(server, stock):
    ours, theirs = server.session("alice"), stock.session("alice")
    for name in ("single", "no-end", "duration"):
        put(ours, server.calendar_url("alice"), name, OBJECTS[name])
        put(theirs, stock.calendar_url(), name, OBJECTS[name])
    body = query(not_defined("DTEND"))
    assert names(report(theirs, stock.calendar_url(), body)) == ["duration", "no-end"]
    assert names(report(ours, server.calendar_url("alice"), body)) == ["duration", "no-end"]


# ---------------------------------------------------------------- expand

def expand_query(start: str, end: str, inside_vevent: str = "") -> str:
    return query(inside_vevent, props=(
        f'<D:getetag/><C:calendar-data><C:expand start="{start}" end="{end}"/>'
        "</C:calendar-data>"))


def instances(answer: requests.Response) -> dict[str, set[tuple]]:
    """href name → its expanded instances as (recurrence-id, start, end, summary) in UTC."""
    assert answer.status_code == 207, answer.text
    found = {}
    for response in ET.fromstring(answer.content).iter("{DAV:}response"):
        data = response.findtext(".//{urn:ietf:params:xml:ns:caldav}calendar-data")
        if data is None:
            continue
        name = response.findtext("{DAV:}href").rsplit("/", 1)[1].removesuffix(".ics")
        events = Calendar.from_ical(data).walk("VEVENT")
        assert all("RRULE" not in e and "EXDATE" not in e for e in events), data
        found[name] = {_instance(e) for e in events}
    return found


def _instance(event) -> tuple:
    def at(name: str):
        if name not in event:
            return None
        value = event[name].dt
        return value.astimezone(UTC) if isinstance(value, datetime) else value

    end = at("DTEND")
    if end is None and "DURATION" in event:
        end = at("DTSTART") + event["DURATION"].dt
    return at("RECURRENCE-ID"), at("DTSTART"), end, str(event["SUMMARY"])


def reference_instances(text: str, start: datetime, end: datetime) -> set[tuple]:
    """recurring-ical-events' instances, as a client expanding the object itself sees them."""
    found = recurring_ical_events.of(Calendar.from_ical(text)).between(start, end)
    recurring = "RRULE" in text or "RDATE" in text
    return {(_instance(e)[0] if recurring else None, *_instance(e)[1:]) for e in found}


def test_expand_answers_every_object_series_with_overrides_included(server, stock):
    """Stock Radicale and the store before agree; an override used to fail the whole
    REPORT (400, "does not have a vevent without a recurrence_id")."""
    texts = {name: OBJECTS[name] for name in ("single", "utc", "all-day-weekly", "monthly",
                                               "past")}
    texts["moved"] = calendar(
        f"UID:moved\r\nDTSTART;{PARIS}:{local(-14)}\r\nDTEND;{PARIS}:{local(-14, 10)}\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=8\r\nSUMMARY:weekly\r\n",
        f"UID:moved\r\nRECURRENCE-ID;{PARIS}:{local(7)}\r\nDTSTART;{PARIS}:{local(7, 15)}"
        f"\r\nDTEND;{PARIS}:{local(7, 16)}\r\nSUMMARY:weekly later that day\r\n")
    ours, theirs = server.session("alice"), stock.session("alice")
    for name, text in texts.items():
        put(ours, server.calendar_url("alice"), name, text)
        put(theirs, stock.calendar_url(), name, text)
    window = (utc(-20), utc(30))
    tr = time_range(*window)
    mine = instances(report(ours, server.calendar_url("alice"), expand_query(*window, tr)))
    reference = instances(report(theirs, stock.calendar_url(), expand_query(*window, tr)))
    assert mine == reference
    assert len(mine["moved"]) == 7 and len(mine["all-day-weekly"]) == 4
    # no time range: every object is expanded over the window; an override moved out of
    # it is not there (stock Radicale shows it by its RECURRENCE-ID, at its new time)
    put(ours, server.calendar_url("alice"), "weekly", OBJECTS["weekly"])
    texts["weekly"] = OBJECTS["weekly"]
    mine = instances(report(ours, server.calendar_url("alice"), expand_query(*window)))
    start, end = (datetime.strptime(v, STAMP).replace(tzinfo=UTC) for v in window)
    assert mine == {name: reference_instances(text, start, end)
                    for name, text in texts.items() if reference_instances(text, start, end)}
    assert len(mine["weekly"]) == 6  # the seventh moved 90 days ahead


def test_expand_serves_what_stock_radicale_cannot(server, stock):
    """A floating series (stock: 500 for the whole REPORT), RDATEs (stock: lost) and a
    single event without a time range (stock: left out) all come expanded; a multiget too."""
    texts = {
        "floating-series": calendar(f"UID:floating-series\r\nDTSTART:{local(2)}\r\n"
                                    f"DTEND:{local(2, 10)}\r\nRRULE:FREQ=DAILY;COUNT=3\r\n"
                                    "SUMMARY:floating daily\r\n"),
        "rdates": calendar(f"UID:rdates\r\nDTSTART;{PARIS}:{local(1)}\r\n"
                           f"DTEND;{PARIS}:{local(1, 10)}\r\n"
                           f"RDATE;{PARIS}:{local(5)},{local(6)}\r\nSUMMARY:rdates\r\n"),
        "single": OBJECTS["single"],
    }
    ours, theirs = server.session("alice"), stock.session("alice")
    for name, text in texts.items():
        put(ours, server.calendar_url("alice"), name, text)
        put(theirs, stock.calendar_url(), name, text)
    window = (utc(-1), utc(10))
    assert report(theirs, stock.calendar_url(), expand_query(*window)).status_code == 500
    mine = instances(report(ours, server.calendar_url("alice"), expand_query(*window)))
    start, end = (datetime.strptime(v, STAMP).replace(tzinfo=UTC) for v in window)
    paris = {name: reference_instances(text, start, end) for name, text in texts.items()}
    floating = {start for _, start, _, _ in mine.pop("floating-series")}
    assert floating == {  # floating times read in alice's zone
        datetime.combine(day(n), time(9), ZoneInfo("Europe/Paris")).astimezone(UTC)
        for n in (2, 3, 4)}
    assert mine == {k: v for k, v in paris.items() if k != "floating-series"}
    assert len(mine["rdates"]) == 3
    multiget = ('<?xml version="1.0"?><C:calendar-multiget xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data>'
                f'<C:expand start="{window[0]}" end="{window[1]}"/></C:calendar-data></D:prop>'
                "<D:href>/alice/rendez-vous/rdates.ics</D:href>"
                "<D:href>/alice/rendez-vous/missing.ics</D:href></C:calendar-multiget>")
    answer = report(ours, server.calendar_url("alice"), multiget)
    assert instances(answer) == {"rdates": paris["rdates"]}
    assert "missing.ics</href><status>HTTP/1.1 404" in answer.text.replace("\n", "")


def test_expand_with_a_filter_radicale_matches_itself(server, stock):
    """A shape the index does not plan for (an alarm's time range) is matched by
    Radicale's own matcher, the instances still expanded here (stock Radicale takes the
    alarm's range for the event's and answers nothing); a malformed filter is the request's
    fault: 400, as on stock Radicale."""
    alarm = "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT30M\r\nDESCRIPTION:r\r\nEND:VALARM\r\n"
    text = calendar(f"UID:floating-alarm\r\nDTSTART:{local(2)}\r\nDTEND:{local(2, 10)}\r\n"
                    f"RRULE:FREQ=DAILY;COUNT=3\r\nSUMMARY:floating with alarm\r\n{alarm}")
    ours, theirs = server.session("alice"), stock.session("alice")
    for session, url in ((ours, server.calendar_url("alice")), (theirs, stock.calendar_url())):
        put(session, url, "floating-alarm", text)
        put(session, url, "single", OBJECTS["single"])
    window = (utc(-1), utc(10))
    body = expand_query(*window, '<C:comp-filter name="VALARM">'
                        f'{time_range(utc(1), utc(8))}</C:comp-filter>')
    mine = instances(report(ours, server.calendar_url("alice"), body))
    assert list(mine) == ["floating-alarm"] and len(mine["floating-alarm"]) == 3
    bad = expand_query(*window, "<C:bogus/>")
    assert report(theirs, stock.calendar_url(), bad).status_code == 400
    refused = report(ours, server.calendar_url("alice"), bad)
    assert refused.status_code == 400 and "bogus" in refused.text


# ---------------------------------------------------------------- issue 12

def test_time_range_queries_read_the_materialised_occurrences_never_the_rule(
        server, stock, monkeypatch):
    """A costly series (daily since 1990, no end) and a never-ending weekly one: a
    time-range query inside the year the store materialised reads their occurrences
    from the index. dateutil's rule iteration is counted (every expansion goes through
    it: vobject's for Radicale, recurring-ical-events and ours); the answers stay stock
    Radicale's."""
    costly = calendar("UID:costly\r\nDTSTART;TZID=Europe/Paris:19900102T070000\r\n"
                      "DTEND;TZID=Europe/Paris:19900102T071500\r\nRRULE:FREQ=DAILY\r\n"
                      "SUMMARY:every day since 1990\r\n")
    weekly = calendar(f"UID:weekly-on\r\nDTSTART;{PARIS}:{local(2, 18)}\r\n"
                      f"DTEND;{PARIS}:{local(2, 19)}\r\nRRULE:FREQ=WEEKLY;INTERVAL=4\r\n"
                      "SUMMARY:every four weeks\r\nLOCATION:Lyon\r\n")
    objects = {"costly": costly, "weekly-on": weekly, **{
        k: OBJECTS[k] for k in ("single", "utc", "all-day", "duration")}}
    ours, theirs = server.session("alice"), stock.session("alice")
    for name, text in objects.items():
        put(ours, server.calendar_url("alice"), name, text)
        put(theirs, stock.calendar_url(), name, text)
    bodies = [query(time_range(utc(3), utc(12))), query(time_range(utc(5), utc(6))),
              query(time_range(utc(1), utc(300)) + not_defined("LOCATION")),
              query(time_range(utc(9), utc(11)), props="<D:getetag/><C:calendar-data/>")]
    expected = [names(report(theirs, stock.calendar_url(), body)) for body in bodies]
    assert "costly" in expected[0] and "weekly-on" not in expected[1]

    iterations = []
    original = dateutil.rrule.rrule._iter

    def counted(self):
        iterations.append(self)
        return original(self)

    monkeypatch.setattr(dateutil.rrule.rrule, "_iter", counted)
    answers = [names(report(ours, server.calendar_url("alice"), body)) for body in bodies]
    assert answers == expected
    assert iterations == [], "a time-range query expanded a rule the store had materialised"
    # the counter does see expansions: a range before the series' last write needs one
    names(report(ours, server.calendar_url("alice"), query(time_range(utc(-30), utc(-20)))))
    assert iterations


# ---------------------------------------------------------------- free-busy

def freebusy_query(start: str | None, end: str | None) -> str:
    return ('<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f"{time_range(start, end)}</C:free-busy-query>")


def busy(answer: requests.Response) -> tuple:
    """(DTSTART, DTEND, sorted FREEBUSY periods with their FBTYPE) of a VFREEBUSY answer."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/calendar")
    (found,) = Calendar.from_ical(answer.text).walk("VFREEBUSY")
    periods = found.get("FREEBUSY", [])
    periods = periods if isinstance(periods, list) else [periods]
    return (found.decoded("DTSTART"), found.decoded("DTEND"),
            sorted((str(p.params.get("FBTYPE", "BUSY")), p.to_ical().decode())
                   for p in periods))


sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
FREEBUSY_OBJECTS = {
    **{name: OBJECTS[name] for name in ("single", "no-end", "duration", "utc", "floating",
                                        "all-day", "all-day-no-end", "past", "weekly",
                                        "all-day-weekly")},
    "tentative": calendar(f"UID:tentative\r\nDTSTART;{PARIS}:{local(3, 9)}\r\n"
                          f"DTEND;{PARIS}:{local(3, 12)}\r\nSTATUS:TENTATIVE\r\nSUMMARY:t\r\n"),
    "cancelled": calendar(f"UID:cancelled\r\nDTSTART;{PARIS}:{local(4)}\r\n"
                          f"DTEND;{PARIS}:{local(4, 10)}\r\nSTATUS:CANCELLED\r\nSUMMARY:c\r\n"),
    "transparent": calendar(f"UID:transparent\r\nDTSTART;{PARIS}:{local(5)}\r\n"
                            f"DTEND;{PARIS}:{local(5, 10)}\r\nTRANSP:TRANSPARENT\r\n"
                            "SUMMARY:tr\r\n"),
    "daily-overridden": calendar(
        f"UID:daily-overridden\r\nDTSTART;{PARIS}:{local(-2, 13)}\r\n"
        f"DTEND;{PARIS}:{local(-2, 14)}\r\nRRULE:FREQ=DAILY;COUNT=12\r\n"
        f"EXDATE;{PARIS}:{local(2, 13)}\r\nSUMMARY:daily\r\n",
        f"UID:daily-overridden\r\nRECURRENCE-ID;{PARIS}:{local(3, 13)}\r\n"
        f"DTSTART;{PARIS}:{local(3, 16)}\r\nDTEND;{PARIS}:{local(3, 18)}\r\n"
        "STATUS:TENTATIVE\r\nSUMMARY:daily, later\r\n",
        f"UID:daily-overridden\r\nRECURRENCE-ID;{PARIS}:{local(4, 13)}\r\n"
        f"DTSTART;{PARIS}:{local(4, 13)}\r\nDTEND;{PARIS}:{local(4, 14)}\r\n"
        "TRANSP:TRANSPARENT\r\nSUMMARY:daily, free\r\n"),
}
FREEBUSY_RANGES = [(a, b) for a, b in zip(POINTS, POINTS[2:], strict=False)] + [
    (utc(-40), utc(120)), (utc(-3000), utc(3000)), (None, utc(30)), (utc(-5), utc(30))]


def test_free_busy_answers_as_stock_radicale_from_the_stored_occurrences(
        server, stock, monkeypatch):
    """Issue 12: a free-busy-query is answered from the occurrences stored at write time,
    never by expanding what was materialised; the periods are stock Radicale's (STATUS,
    TRANSP, overrides, EXDATE, all-day, floating, no end, zero length)."""
    ours, theirs = server.session("alice"), stock.session("alice")
    for name, text in FREEBUSY_OBJECTS.items():
        put(ours, server.calendar_url("alice"), name, text)
        put(theirs, stock.calendar_url(), name, text)
    expected = {r: busy(report(theirs, stock.calendar_url(), freebusy_query(*r)))
                for r in FREEBUSY_RANGES}
    types = {kind for _, _, periods in expected.values() for kind, _ in periods}
    assert types == {"BUSY", "BUSY-TENTATIVE", "FREE"}
    inside = (utc(2), utc(200))  # in the year the store materialised, a day past the writes
    reference = busy(report(theirs, stock.calendar_url(), freebusy_query(*inside)))
    iterations = []  # dateutil's rule walks (stock Radicale's too: it is asked before)
    original = dateutil.rrule.rrule._iter
    monkeypatch.setattr(dateutil.rrule.rrule, "_iter",
                        lambda self: iterations.append(self) or original(self))
    assert busy(report(ours, server.calendar_url("alice"), freebusy_query(*inside))) == \
        reference
    assert iterations == [], "a free-busy-query expanded a rule the store had materialised"
    mine = {r: busy(report(ours, server.calendar_url("alice"), freebusy_query(*r)))
            for r in FREEBUSY_RANGES}
    assert {r: v for r, v in mine.items() if v != expected[r]} == {}
    assert iterations, "the ranges before the series' last write are expanded"


@sqlite_only
def test_free_busy_where_stock_radicale_is_wrong_follows_the_store(server, stock):
    """Two series whose occurrences stock Radicale 3.9 gets wrong: one begun in winter,
    asked about in summer (stock: an hour off, vobject expands the rule in UTC), an
    all-day one without an end (stock: busy one second of each day). Here they are the
    store's occurrences, as recurring-ical-events (and every phone) reads them."""
    ours, theirs = server.session("alice"), stock.session("alice")
    window = (utc(-2000), utc(300))
    start, end = (datetime.strptime(v, STAMP).replace(tzinfo=UTC) for v in window)
    for name in ("monthly", "yearly-past"):
        put(ours, server.calendar_url("alice"), name, OBJECTS[name])
        put(theirs, stock.calendar_url(), name, OBJECTS[name])
    mine = busy(report(ours, server.calendar_url("alice"), freebusy_query(*window)))[2]
    reference = sorted(("BUSY", f"{_utc(a):{STAMP}}/{_utc(b or a + timedelta(days=1)):{STAMP}}")
                       for name in ("monthly", "yearly-past")
                       for _, a, b, _ in reference_instances(OBJECTS[name], start, end))
    assert mine == reference and len(mine) > 20
    stock_periods = busy(report(theirs, stock.calendar_url(), freebusy_query(*window)))[2]
    assert len(stock_periods) == len(mine) and stock_periods != mine


def _utc(value: date) -> datetime:
    """As Radicale reads it: a DATE is midnight UTC."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    return value.astimezone(UTC)


@sqlite_only
def test_a_free_busy_query_refused_says_why(server, stock):
    """Without a time-range stock Radicale fails (500); an appointment with more instances
    in the range than [reporting] max_freebusy_occurrence: its bare 400."""
    ours, theirs = server.session("alice"), stock.session("alice")
    daily = calendar(f"UID:every-day\r\nDTSTART;{PARIS}:{local(-30)}\r\n"
                     f"DTEND;{PARIS}:{local(-30, 10)}\r\nRRULE:FREQ=DAILY\r\nSUMMARY:d\r\n")
    put(ours, server.calendar_url("alice"), "every-day", daily)
    put(theirs, stock.calendar_url(), "every-day", daily)
    bare = ('<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"'
            "/>")
    assert report(theirs, stock.calendar_url(), bare).status_code == 500
    answer = report(ours, server.calendar_url("alice"), bare)
    assert answer.status_code == 400 and "needs a time-range" in answer.text
    endless = freebusy_query(utc(0), None)  # 10,000 days and more
    assert report(theirs, stock.calendar_url(), endless).status_code == 400
    answer = report(ours, server.calendar_url("alice"), endless)
    assert answer.status_code == 400
    assert "every-day.ics has 10000 instances or more in the range" in answer.text
