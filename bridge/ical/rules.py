"""Which recurrence rules an appointment series may have, decided in bounded time.

A rule that never occurs (February 30, week 54, day 366 of February) makes dateutil walk
period by period to the year 9999 looking for its first occurrence: from a quarter of a
second (yearly) to thirteen seconds (hourly) for each PUT, and again at every expansion.
So a rule is read in two steps:

* from its text alone: values outside RFC 5545's ranges (``BYHOUR=25``, ``BYWEEKNO=54``),
  parts its frequency may not have (RFC 5545 3.3.10: ``BYYEARDAY`` in a daily rule) and
  combinations no date meets (February 30, day 366 in February, the sixth Monday of a
  month, a ``BYSETPOS`` beyond the size of every set, a daily rule stepping a whole number
  of weeks on another weekday) are refused at once, with the reason;
* what is left is walked on a copy of the rule moved towards the year 9999 by whole
  calendar cycles (the same weekdays, leap years and week numbers): dateutil's walk ends at
  the year 9999, so it covers the :data:`LOOK_AHEAD_YEARS` checked and never more than
  :data:`_CYCLE` years beyond them (400 when the years walked cross a century that is not
  a leap year, such as 2100).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta

from dateutil import rrule as dateutil_rrule
from icalendar import Component

from bridge.ical.model import InvalidObject
from bridge.ical.reading import decoded

MAX_OCCURRENCES_PER_YEAR = 1000
LOOK_AHEAD_YEARS = 20  # a rule must make an occurrence within this many years
ALLOWED_FREQ = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")

# RFC 5545 3.3.10: (lowest, highest, may be negative)
_RANGES = {"BYSECOND": (0, 60, False), "BYMINUTE": (0, 59, False), "BYHOUR": (0, 23, False),
           "BYMONTHDAY": (1, 31, True), "BYYEARDAY": (1, 366, True),
           "BYWEEKNO": (1, 53, True), "BYMONTH": (1, 12, False), "BYSETPOS": (1, 366, True)}
_PARTS = {"FREQ", "UNTIL", "COUNT", "INTERVAL", "BYDAY", "WKST", *_RANGES}
# RFC 5545 3.3.10: the frequencies a part MUST NOT be used with
_NOT_WITH = {"BYWEEKNO": {"HOURLY", "DAILY", "WEEKLY", "MONTHLY"},
             "BYYEARDAY": {"DAILY", "WEEKLY", "MONTHLY"},
             "BYMONTHDAY": {"WEEKLY"}}
_PERIOD = {"HOURLY": "hour", "DAILY": "day", "WEEKLY": "week", "MONTHLY": "month",
           "YEARLY": "year"}
_CYCLE = 28                # years after which weekdays and leap years repeat in a century
_GREGORIAN_CYCLE = 400     # ... across centuries
_LAST_YEAR = 9999          # dateutil's walk ends there
_COMMON, _LEAP = 2023, 2024


def check_rule(master: Component, rule, name: str = "RRULE") -> None:
    """Refuse a rule that would flood the agenda (SECONDLY, INTERVAL=0, more than
    :data:`MAX_OCCURRENCES_PER_YEAR` a year) or never occurs, with the reason; ``name``:
    RRULE or EXRULE (an EXRULE is not counted)."""
    text = f"{name} {rule.to_ical().decode()}"
    freq = str((rule.get("FREQ") or [""])[0]).upper()
    if freq not in ALLOWED_FREQ:
        raise InvalidObject(f"{name} FREQ={freq or '?'} is not supported for appointments"
                            " (HOURLY to YEARLY)")
    for key in ("INTERVAL", "COUNT"):
        values = rule.get(key)
        if values is not None and (not isinstance(values[0], int) or values[0] < 1):
            raise InvalidObject(f"{name} {key} must be a positive integer")
    start = decoded(master, "DTSTART")
    naive_start = naive(start)
    problem = _static_problem(rule, freq, naive_start)
    if problem:
        raise InvalidObject(f"{text}: {problem}")
    until = rule.get("UNTIL")
    try:
        last = naive(until[0], like=start) if until else None
    except (TypeError, ValueError) as exc:
        raise InvalidObject(f"{text}: invalid UNTIL ({exc})") from exc
    if last is not None and last < naive_start:
        raise InvalidObject(f"{text}: UNTIL is before DTSTART ({naive_start:%Y-%m-%d %H:%M}):"
                            " the rule makes no occurrence")
    # COUNT and UNTIL are left out of the walk: dateutil only checks them on a match
    parts = [p for p in text.split(" ", 1)[1].split(";")
             if p.split("=")[0].upper() not in ("UNTIL", "COUNT")]
    probe = probe_start(naive_start)
    try:
        occurrences = iter(dateutil_rrule.rrulestr(";".join(parts), dtstart=probe))
        first = next(occurrences, None)
        if first is None:
            raise InvalidObject(f"{text} makes no occurrence in its first "
                                f"{LOOK_AHEAD_YEARS} years")
        count = (rule.get("COUNT") or [None])[0]
        if name == "RRULE" and (count is None or count > MAX_OCCURRENCES_PER_YEAR):
            _count_a_year(text, probe, first, occurrences,
                          None if last is None else last - naive_start)
    except InvalidObject:
        raise
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidObject(f"invalid {name}: {exc}") from exc


def _count_a_year(text: str, start: datetime, first: datetime, rest,
                  until: timedelta | None) -> None:
    window = timedelta(days=366) if until is None else min(until, timedelta(days=366))
    end = start + window
    number = 0
    occurrence: datetime | None = first
    while occurrence is not None and occurrence <= end:
        number += 1
        if number > MAX_OCCURRENCES_PER_YEAR:
            raise InvalidObject(f"{text} repeats more than {MAX_OCCURRENCES_PER_YEAR} times "
                                "in a year: not an appointment series")
        occurrence = next(rest, None)


def probe_start(start: datetime) -> datetime:
    """``start`` moved to the year ``Y'`` whose calendar, and that of every year after it,
    is the calendar of ``start``'s year and of the years after it: a walk from ``Y'``
    meets the same dates on the same weekdays, in the same week numbers, with the same
    intervals between them, and ends at the year 9999 after at least
    :data:`LOOK_AHEAD_YEARS` years."""
    year = start.year
    latest = _LAST_YEAR - LOOK_AHEAD_YEARS
    if year > latest - _CYCLE:
        return start  # the walk ends soon anyway
    years = range(year - 1, year + LOOK_AHEAD_YEARS + _CYCLE + 1)
    if not any(_skipped_leap(y) for y in years):
        # the years 9901 to 9999 cross no century: their calendars repeat every 28 years
        first_jan = date(year, 1, 1).weekday()
        for candidate in range(latest - _CYCLE + 1, latest + 1):
            if candidate % 4 == year % 4 and date(candidate, 1, 1).weekday() == first_jan:
                return start.replace(year=candidate)
    cycles = (latest - year) // _GREGORIAN_CYCLE
    return start.replace(year=year + cycles * _GREGORIAN_CYCLE)


def _skipped_leap(year: int) -> bool:
    return year % 100 == 0 and year % 400 != 0


# ---------------------------------------------------------------- the text alone

def _static_problem(rule, freq: str, start: datetime) -> str | None:
    """Why the rule is invalid or never occurs, read from its parts alone (None: it may
    occur, the walk tells)."""
    unknown = sorted(str(k) for k in rule if str(k).upper() not in _PARTS)
    if unknown:
        return f"{', '.join(unknown)} is not an iCalendar rule part"
    values: dict[str, list[int]] = {}
    for part, (low, high, signed) in _RANGES.items():
        found = rule.get(part)
        if found is None:
            continue
        try:
            numbers = [int(v) for v in found]
        except (TypeError, ValueError):
            return f"{part} must be numbers"
        for n in numbers:
            if not (low <= n <= high or signed and -high <= n <= -low):
                span = f"{low} to {high}" + (f" or -{high} to -{low}" if signed else "")
                return f"{part}={n} is out of range ({span})"
        if part in _NOT_WITH and freq in _NOT_WITH[part]:
            return f"{part} cannot be used in a {freq} rule (RFC 5545)"
        values[part] = numbers
    days, problem = _weekdays(rule, freq, values)
    if problem:
        return problem
    wkst = rule.get("WKST")
    if wkst and str(wkst[0]).upper() not in WEEKDAYS:
        return f"WKST={wkst[0]} is not a weekday"
    if "BYSETPOS" in values and not (set(values) - {"BYSETPOS"} or days):
        return "BYSETPOS needs another BYxxx part to select from (RFC 5545)"
    return (_no_date(values) or _setpos_beyond(freq, values, days)
            or _fixed_weekday(rule, freq, days, start))


def _weekdays(rule, freq: str, values: dict) -> tuple[list[tuple[int, int]], str | None]:
    """BYDAY as (ordinal or 0, weekday index), or the reason it is refused."""
    found = rule.get("BYDAY")
    if found is None:
        return [], None
    days = []
    for value in found:
        text = str(value).upper().strip()
        weekday, ordinal = text[-2:], text[:-2]
        if weekday not in WEEKDAYS:
            return [], f"BYDAY={value} is not a weekday"
        try:
            number = int(ordinal) if ordinal not in ("", "+") else 0
        except ValueError:
            return [], f"BYDAY={value} is not a weekday"
        if number:
            if freq not in ("MONTHLY", "YEARLY") or "BYWEEKNO" in values:
                return [], (f"BYDAY={value}: a numbered weekday needs a MONTHLY or YEARLY rule "
                            "without BYWEEKNO (RFC 5545)")
            most = 5 if freq == "MONTHLY" or "BYMONTH" in values else 53
            if abs(number) > most:
                period = "month" if most == 5 else "year"
                return [], (f"BYDAY={value} never occurs: a {period} has at most {most} of "
                            "each weekday")
        days.append((number, WEEKDAYS.index(weekday)))
    return days, None


_MONTH_LENGTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31,
                 11: 30, 12: 31}


def _no_date(values: dict[str, list[int]]) -> str | None:
    """Whether BYMONTH, BYMONTHDAY and BYYEARDAY together leave no date in any year."""
    months = values.get("BYMONTH") or list(_MONTH_LENGTH)
    days = values.get("BYMONTHDAY")
    if days and not any(abs(d) <= _MONTH_LENGTH[m] for m in months for d in days):
        return "no month of BYMONTH has a day of BYMONTHDAY: it never occurs"
    yeardays = values.get("BYYEARDAY")
    if not yeardays:
        return None
    for year in (_COMMON, _LEAP):
        length = 366 if year == _LEAP else 365
        for yearday in yeardays:
            if abs(yearday) > length:
                continue
            day = date(year, 1, 1) + timedelta(days=yearday - 1 if yearday > 0
                                               else length + yearday)
            month_length = calendar.monthrange(year, day.month)[1]
            if day.month in months and (not days or day.day in days
                                        or day.day - month_length - 1 in days):
                return None
    limits = " or ".join(p for p in ("BYMONTH", "BYMONTHDAY") if p in values)
    return f"no day of BYYEARDAY is in {limits}: it never occurs"


def _setpos_beyond(freq: str, values: dict[str, list[int]],
                   days: list[tuple[int, int]]) -> str | None:
    """A BYSETPOS beyond the largest set the rule can make in one period."""
    positions = values.get("BYSETPOS")
    if not positions:
        return None
    times = 1
    for part in ("BYMINUTE", "BYSECOND") if freq == "HOURLY" else (
            "BYHOUR", "BYMINUTE", "BYSECOND"):
        times *= len(set(values.get(part, ()))) or 1
    months = len(set(values.get("BYMONTH", ()))) or 0
    weekdays = len({w for _, w in days})
    if freq in ("HOURLY", "DAILY"):
        dates = 1
    elif freq == "WEEKLY":
        dates = weekdays or 1
    else:
        dates = 31 if freq == "MONTHLY" else 366
        if "BYMONTHDAY" in values:
            dates = min(dates, len(set(values["BYMONTHDAY"])) * (
                1 if freq == "MONTHLY" else months or 12))
        if "BYYEARDAY" in values:
            dates = min(dates, len(set(values["BYYEARDAY"])))
        if "BYWEEKNO" in values:
            dates = min(dates, 7 * len(set(values["BYWEEKNO"])))
        if days:
            # a numbered weekday is one date a month (or year); a plain one five a month
            spans = (months or 1) if freq == "YEARLY" else 1
            plain = 5 * spans if freq == "MONTHLY" or months else 53
            dates = min(dates, sum(spans if n else plain for n, _ in days))
        if not ({"BYMONTHDAY", "BYYEARDAY", "BYWEEKNO"} & set(values) or days):
            dates = (months or 1) if freq == "YEARLY" else 1  # DTSTART's day
    largest = dates * times
    if min(abs(p) for p in positions) > largest:
        return (f"BYSETPOS={','.join(map(str, positions))} never occurs: each "
                f"{_PERIOD[freq]} has at most {largest} instance{'s' if largest > 1 else ''}"
                " to choose from")
    return None


def _fixed_weekday(rule, freq: str, days: list[tuple[int, int]],
                   start: datetime) -> str | None:
    """A daily rule stepping a whole number of weeks stays on DTSTART's weekday."""
    interval = (rule.get("INTERVAL") or [1])[0]
    if freq != "DAILY" or not days or not isinstance(interval, int) or interval % 7:
        return None
    if start.weekday() not in {w for _, w in days}:
        return (f"every {interval} days from a {WEEKDAYS[start.weekday()]} is always a "
                f"{WEEKDAYS[start.weekday()]}, never BYDAY: it never occurs")
    return None


def naive(value, like=None) -> datetime:
    """A comparable naive datetime: dates at midnight, aware values in ``like``'s zone."""
    if not isinstance(value, datetime):
        return datetime.combine(value, datetime.min.time())
    if value.tzinfo is not None:
        target = like.tzinfo if isinstance(like, datetime) and like.tzinfo else None
        value = value.astimezone(target) if target else value
        return value.replace(tzinfo=None)
    return value
