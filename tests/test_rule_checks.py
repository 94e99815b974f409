"""Recurrence rules checked in bounded time (issue 12): a rule that never occurs is refused
with the reason, from its text when it can be, else after a walk that ends at the year 9999
within 20 to 48 years (bridge/ical/rules.py). In process: no server needed."""

from __future__ import annotations

import calendar
from datetime import date, datetime

import dateutil.rrule
import pytest

from bridge.ical import InvalidObject, parse_object
from bridge.ical.rules import LOOK_AHEAD_YEARS, probe_start


def series(rule: str, start: str = "20270105T100000Z") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//rules//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:r\r\nDTSTAMP:20261201T000000Z\r\nDTSTART:{start}\r\n"
            f"DTEND:{start[:9]}11{start[11:]}\r\nRRULE:{rule}\r\nSUMMARY:s\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


# Each refused from the rule's text alone (2027-01-05, a Tuesday, is DTSTART).
NEVER = {
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30": "no month of BYMONTH has a day of BYMONTHDAY",
    "FREQ=YEARLY;BYWEEKNO=54": "BYWEEKNO=54 is out of range",
    "FREQ=YEARLY;BYYEARDAY=366;BYMONTH=2": "no day of BYYEARDAY is in BYMONTH",
    "FREQ=YEARLY;BYYEARDAY=1;BYMONTHDAY=2": "no day of BYYEARDAY is in BYMONTHDAY",
    "FREQ=HOURLY;BYYEARDAY=-366;BYMONTH=12": "no day of BYYEARDAY is in BYMONTH",
    "FREQ=DAILY;BYYEARDAY=366;BYMONTH=2": "BYYEARDAY cannot be used in a DAILY rule",
    "FREQ=DAILY;BYWEEKNO=53;BYMONTH=6": "BYWEEKNO cannot be used in a DAILY rule",
    "FREQ=WEEKLY;BYMONTHDAY=30": "BYMONTHDAY cannot be used in a WEEKLY rule",
    "FREQ=MONTHLY;BYSETPOS=400;BYDAY=MO": "BYSETPOS=400 is out of range",
    "FREQ=MONTHLY;BYSETPOS=6;BYDAY=MO": "each month has at most 5 instances",
    "FREQ=WEEKLY;BYDAY=MO,TU;BYSETPOS=3": "each week has at most 2 instances",
    "FREQ=MONTHLY;BYDAY=6MO": "a month has at most 5 of each weekday",
    "FREQ=YEARLY;BYDAY=54MO": "a year has at most 53 of each weekday",
    "FREQ=YEARLY;BYMONTH=3;BYDAY=-6FR": "a month has at most 5 of each weekday",
    "FREQ=DAILY;BYDAY=2MO": "a numbered weekday needs a MONTHLY or YEARLY rule",
    "FREQ=DAILY;INTERVAL=14;BYDAY=MO": "always a TU, never BYDAY",
    "FREQ=HOURLY;BYHOUR=25": "BYHOUR=25 is out of range",
    "FREQ=HOURLY;BYMINUTE=60": "BYMINUTE=60 is out of range",
    "FREQ=MONTHLY;BYMONTH=13": "BYMONTH=13 is out of range",
    "FREQ=MONTHLY;BYMONTHDAY=0": "BYMONTHDAY=0 is out of range",
    "FREQ=MONTHLY;BYSETPOS=1": "BYSETPOS needs another BYxxx part",
    "FREQ=YEARLY;BYEASTER=0": "BYEASTER is not an iCalendar rule part",
    "FREQ=DAILY;UNTIL=19000101": "UNTIL is before DTSTART",
}


@pytest.mark.parametrize("rule", sorted(NEVER))
def test_a_rule_that_never_occurs_is_refused_from_its_text(rule, monkeypatch):
    """Refused with the reason, before dateutil walks a single period."""
    walks = []
    original = dateutil.rrule.rrule._iter
    monkeypatch.setattr(dateutil.rrule.rrule, "_iter",
                        lambda self: walks.append(self) or original(self))
    with pytest.raises(InvalidObject) as refused:
        parse_object(series(rule), "Europe/Paris")
    assert NEVER[rule] in refused.value.reason
    assert refused.value.reason.startswith("RRULE FREQ="), refused.value.reason
    assert walks == []


# Never occurring, but only a walk can tell (from DTSTART's year): each ends at the year 9999.
WALKED = {
    ("FREQ=YEARLY;BYWEEKNO=1;BYMONTH=6", "20270105T100000Z"): 20 + 28,
    ("FREQ=YEARLY;INTERVAL=4;BYMONTH=2;BYMONTHDAY=29", "20270105T100000Z"): 20 + 28,
    ("FREQ=MONTHLY;INTERVAL=12;BYMONTH=3", "20270105T100000Z"): 20 + 28,
    ("FREQ=DAILY;INTERVAL=365;BYMONTH=3", "20270105T100000Z"): 20 + 28,
    # across 2100 (not a leap year): the 400-year cycle
    ("FREQ=YEARLY;BYWEEKNO=53;BYDAY=MO;BYMONTH=7", "20900105T100000Z"): 20 + 400,
}


@pytest.mark.parametrize("rule,start", sorted(WALKED))
def test_a_walk_for_an_occurrence_is_bounded(rule, start, monkeypatch):
    """dateutil rebuilds its year (month) tables once per period walked: a rule that never
    matches used to be walked to the year 9999 (8,000 years, up to 13 s for an hourly
    one); now at most the years checked plus one calendar cycle."""
    years = set()
    original = dateutil.rrule._iterinfo.rebuild

    def counted(self, year, month):
        years.add(year)
        return original(self, year, month)

    monkeypatch.setattr(dateutil.rrule._iterinfo, "rebuild", counted)
    with pytest.raises(InvalidObject) as refused:
        parse_object(series(rule, start), "Europe/Paris")
    assert f"no occurrence in its first {LOOK_AHEAD_YEARS} years" in refused.value.reason
    first, last = min(years), max(years)
    assert last > 9999 - 4 and 9999 - WALKED[rule, start] <= first <= 9999 - LOOK_AHEAD_YEARS
    assert len(years) <= WALKED[rule, start] + 1


OCCURS = ["FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;BYYEARDAY=366",
          "FREQ=YEARLY;BYYEARDAY=-1;BYMONTH=12", "FREQ=YEARLY;BYWEEKNO=53",
          "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1", "FREQ=MONTHLY;BYDAY=5FR",
          "FREQ=DAILY;INTERVAL=14;BYDAY=TU", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29;BYDAY=MO",
          "FREQ=HOURLY;INTERVAL=24;BYHOUR=10", "FREQ=DAILY;UNTIL=20270105T100000Z",
          "FREQ=WEEKLY;BYDAY=MO,TU;BYSETPOS=2;COUNT=4"]


@pytest.mark.parametrize("rule", OCCURS)
def test_rare_rules_that_occur_are_kept(rule):
    assert parse_object(series(rule), "Europe/Paris").series_ics is not None


@pytest.mark.parametrize("year", [*range(1840, 1910, 3), *range(1990, 2110, 3), 2399, 2400,
                                  9940, 9990])
def test_the_walk_starts_on_the_same_calendar_near_the_year_9999(year):
    """The probe's years have the same weekdays and leap days as DTSTART's, for every year
    the walk meets (and the one before: week numbers look at it)."""
    start = datetime(year, 3, 1, 9, 30)
    moved = probe_start(start)
    assert (moved.month, moved.day, moved.time()) == (3, 1, start.time())
    walk = 9999 - moved.year
    if year <= 9999 - LOOK_AHEAD_YEARS - 28:
        assert LOOK_AHEAD_YEARS <= walk < LOOK_AHEAD_YEARS + 400
    for k in range(-1, walk + 1):
        ours, theirs = year + k, moved.year + k
        assert calendar.isleap(ours) == calendar.isleap(theirs), (year, k)
        assert date(ours, 1, 1).weekday() == date(theirs, 1, 1).weekday(), (year, k)
    if not any(y % 100 == 0 and y % 400 for y in range(year - 1, year + 50)):
        assert walk < LOOK_AHEAD_YEARS + 28
