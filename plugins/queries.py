"""calendar-query filters answered from the store, as stock Radicale answers them.

The VEVENT time range is decided from the index and the occurrences the store
materialised at write time (``actions`` rows), never by expanding a series over the span
they cover: a costly rule then costs nothing at query time, for its owner or anyone else.
Only the part of a range outside that span (before the series' last write, beyond the
one-year horizon) is expanded, over that part alone. The rest of a filter (prop-filters,
``is-not-defined``, text matches) goes to Radicale's own matcher.

Time ranges are read as Radicale reads them, so that answers equal stock Radicale's: DATE
and floating values are taken as UTC, a start without an end lasts one second (a DATE one
day), a range may be open at either end (RFC 4791 section 9.9).
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import recurring_ical_events
from icalendar import Calendar
from radicale import xmlutils
from radicale.item import filter as radicale_filter

from bridge.ical.model import EventData
from bridge.ical.parse import event_from_component
from bridge.ical.rules import LOOK_AHEAD_YEARS
from bridge.ical.timezones import utc_to_date, utc_to_local
from bridge.store.queries import SLACK, Candidate, shifted

_C = xmlutils.make_clark
FILTER, COMP_FILTER, TIME_RANGE = _C("C:filter"), _C("C:comp-filter"), _C("C:time-range")
IS_NOT_DEFINED = _C("C:is-not-defined")
_SECOND = timedelta(seconds=1)
# Beyond the horizon, an open range looks this far for an occurrence (a rule that makes
# none in 20 years is refused when it is written: bridge.ical.rules.LOOK_AHEAD_YEARS).
_LOOK_AHEAD = timedelta(days=LOOK_AHEAD_YEARS * 366)
_FIRST_LOOK = timedelta(days=366)


@dataclass(frozen=True)
class TimeRange:
    start: datetime | None  # naive UTC; None: open
    end: datetime | None

    def meets(self, start: datetime, end: datetime) -> bool:
        return (self.start is None or self.start < end) and (self.end is None or start < self.end)


@dataclass(frozen=True)
class Plan:
    """A filter split into the VEVENT time range (None: none) and what Radicale's matcher
    checks (empty: nothing else)."""

    time_range: TimeRange | None
    rest: tuple[ET.Element, ...]


def plan(filters) -> Plan | None:
    """The plan of a calendar-query's filters, or None for a shape left to Radicale (a
    malformed time range or one without bounds, several time ranges, a time range on a
    property or an alarm)."""
    ranges: list[TimeRange] = []
    rest: list[ET.Element] = []
    for original in filters:
        filter_ = copy.deepcopy(original)
        if filter_.tag != FILTER or len(filter_) != 1:
            return None
        calendar = filter_[0]
        if calendar.tag != COMP_FILTER or calendar.get("name", "").upper() != "VCALENDAR":
            return None
        holders = [calendar, *(c for c in calendar if c.tag == COMP_FILTER
                               and c.get("name", "").upper() == "VEVENT"
                               and c.find(IS_NOT_DEFINED) is None)]
        for holder in holders:
            for element in holder.findall(TIME_RANGE):
                found = _time_range(element)
                if found is None:
                    return None
                ranges.append(found)
                holder.remove(element)
        if calendar.find(".//" + TIME_RANGE) is not None:
            return None
        if not _trivial(calendar):
            rest.append(filter_)
    if len(ranges) > 1:
        return None
    return Plan(ranges[0] if ranges else None, tuple(rest))


def _time_range(element: ET.Element) -> TimeRange | None:
    if not element.get("start") and not element.get("end"):
        return None  # Radicale matches nothing with it
    try:
        start, end = radicale_filter.parse_time_range(element)
    except ValueError:
        return None
    return TimeRange(None if not element.get("start") else start.replace(tzinfo=None),
                     None if not element.get("end") else end.replace(tzinfo=None))


def _trivial(calendar: ET.Element) -> bool:
    """Whether the VCALENDAR filter left asks nothing every stored object does not have
    (each is a VCALENDAR of VEVENTs)."""
    return all(child.tag == COMP_FILTER and child.get("name", "").upper() == "VEVENT"
               and len(child) == 0 for child in calendar)


def radicale_span(event: EventData, default_tz: str) -> tuple[datetime, datetime]:
    """The instants Radicale gives an occurrence (naive UTC): DATE and floating values
    read as UTC, a zero-length event one second long."""
    if event.all_day:
        tz = event.tzid or default_tz
        start = datetime.combine(utc_to_date(event.start, tz), datetime.min.time())
        end = datetime.combine(utc_to_date(event.end, tz), datetime.min.time())
    elif event.tzid is None:
        start = utc_to_local(event.start, default_tz).replace(tzinfo=None)
        end = utc_to_local(event.end, default_tz).replace(tzinfo=None)
    else:
        start, end = event.start, event.end
    return start, end if end > start else start + _SECOND


def in_range(candidate: Candidate, wanted: TimeRange, default_tz: str) -> bool:
    """Whether an object has an instance in ``wanted``, from its materialised occurrences;
    a series is expanded only over the parts of ``wanted`` they do not cover."""
    stored = candidate.stored
    if candidate.exact:
        return wanted.meets(stored.first_start, stored.last_end)
    if any(wanted.meets(*radicale_span(e, default_tz)) for e in candidate.occurrences):
        return True
    for start, end in uncovered(candidate, wanted):
        # beyond the horizon, an open range looks a year ahead, then up to twenty
        windows = [(start, end)] if end is not None else [
            (start, shifted(start, _FIRST_LOOK)),
            (shifted(start, _FIRST_LOOK), shifted(start, _LOOK_AHEAD))]
        if any(a < b and _expanded_meets(stored.ics, a, b, wanted, default_tz)
               for a, b in windows):
            return True
    return False


def uncovered(candidate: Candidate, wanted: TimeRange
              ) -> list[tuple[datetime, datetime | None]]:
    """The parts of ``wanted`` (widened by the readings' slack) a series' materialised
    occurrences do not cover, naive UTC, an end None for an open range: before its last
    write (occurrences that had ended were not made) and beyond its horizon."""
    stored = candidate.stored
    if candidate.covered is None or not stored.ics or stored.first_start is None:
        return []
    covered_from, covered_until = candidate.covered
    lower = shifted(wanted.start, -SLACK) if wanted.start is not None else stored.first_start
    lower = max(lower, stored.first_start)
    upper = shifted(wanted.end, SLACK) if wanted.end is not None else None
    if stored.last_end is not None:
        upper = min(upper, stored.last_end) if upper is not None else stored.last_end
    parts: list[tuple[datetime, datetime | None]] = []
    end = min(upper, covered_from) if upper is not None else covered_from
    if lower < end:
        parts.append((lower, end))
    start = max(lower, covered_until)
    if upper is None or start < upper:
        parts.append((start, upper))
    return parts


def _expanded_meets(ics: str, start: datetime, end: datetime, wanted: TimeRange,
                    default_tz: str) -> bool:
    return any(wanted.meets(*radicale_span(e, default_tz))
               for e in occurrences(ics, start, end, default_tz))


def occurrences(ics: str, start: datetime, end: datetime | None, default_tz: str
                ) -> Iterator[EventData]:
    """The occurrences of a stored object overlapping [start, end) (naive UTC; an end None:
    every one after ``start``, one at a time), as recurring-ical-events reads them
    (overrides, EXDATE, RDATE included)."""
    query = recurring_ical_events.of(Calendar.from_ical(ics))
    found = (query.after(start.replace(tzinfo=UTC)) if end is None else
             query.between(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)))
    for component in found:
        yield event_from_component(component, default_tz)
