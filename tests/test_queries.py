"""calendar-query REPORTs answered as stock Radicale 3.9 answers them: the same bodies go
to a real gestan-bridge server and to stock Radicale (its own multifilesystem storage, in
this process); the answers must agree. Where stock Radicale fails (an expansion that one
object breaks), the reference is recurring-ical-events, the reading the store uses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import dateutil.rrule
import pytest
import requests

from tests.stock_radicale import StockServer, stock_radicale

TODAY = date.today()
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


def test_queries_answer_as_stock_radicale(server, stock):
    """Time ranges closed or open at either end, events with DURATION or without DTEND,
    all-day and floating ones, series with overrides, EXDATEs, no end or long over; and
    is-not-defined / text filters alone or beside a time range."""
    ours, theirs = server.session("alice"), stock.session("alice")
    for name, text in OBJECTS.items():
        put(ours, server.calendar_url("alice"), name, text)
        put(theirs, stock.calendar_url(), name, text)
    differ = {}
    for label, body in QUERIES.items():
        mine = names(report(ours, server.calendar_url("alice"), body))
        reference = names(report(theirs, stock.calendar_url(), body))
        if mine != reference:
            differ[label] = {"ours": mine, "stock": reference}
    assert differ == {}
    assert len(QUERIES) > 100


@pytest.mark.xfail(strict=True, reason="the store renders DTEND for every event (a DURATION "
                   "or a missing DTEND comes back as DTEND): iCalendar fidelity, issue 10, "
                   "bridge/ical/parse.py and render.py")
def test_is_not_defined_dtend_finds_the_events_sent_without_one(server, stock):
    ours, theirs = server.session("alice"), stock.session("alice")
    for name in ("single", "no-end", "duration"):
        put(ours, server.calendar_url("alice"), name, OBJECTS[name])
        put(theirs, stock.calendar_url(), name, OBJECTS[name])
    body = query(not_defined("DTEND"))
    assert names(report(theirs, stock.calendar_url(), body)) == ["duration", "no-end"]
    assert names(report(ours, server.calendar_url("alice"), body)) == ["duration", "no-end"]


# ---------------------------------------------------------------- issue 12

def test_time_range_queries_read_the_materialised_occurrences_never_the_rule(
        server, stock, monkeypatch):
    """A costly series (daily since 1950, no end) and a never-ending weekly one: a
    time-range query inside the year the store materialised reads their occurrences
    from the index. dateutil's rule iteration is counted (every expansion goes through
    it: vobject's for Radicale, recurring-ical-events and ours); the answers stay stock
    Radicale's."""
    costly = calendar("UID:costly\r\nDTSTART;TZID=Europe/Paris:19500102T070000\r\n"
                      "DTEND;TZID=Europe/Paris:19500102T071500\r\nRRULE:FREQ=DAILY\r\n"
                      "SUMMARY:every day since 1950\r\n")
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
