"""How a VEVENT's times are read, however a client wrote them: as recurring-ical-events
reads them (the reference reading of odd input, tests/test_fidelity.py).

RFC 5545 wants DTSTART and DTEND of one kind; clients mix them (a floating start with a UTC
end, a DATE start with a DURATION in hours, an end before the start). recurring-ical-events
gives the floating or DATE value the other one's zone, reads a DATE plus hours as floating
date-times, and swaps an end that comes first; parsing, rendering and repairing share this
one reading so that Gestan's occurrences are the ones every other calendar shows.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, tzinfo

from icalendar import Component

from bridge.ical.model import InvalidObject
from bridge.ical.timezones import ONE_DAY, date_to_utc, iana_name, to_utc, zone

TIME_PROPS = ("DTSTART", "DTEND", "DURATION")


def decoded(component: Component, name: str):
    """A property's value (a date, date-time, duration...), None when absent."""
    prop = component.get(name)
    if prop is None:
        return None
    if isinstance(prop, list):
        raise InvalidObject(f"{name} appears more than once")
    value = getattr(prop, "dt", None)  # parsed already: the common case, read directly
    if value is not None:
        return value
    try:
        value = component.decoded(name, None)
    except Exception as exc:
        raise InvalidObject(f"invalid {name}: {exc}") from exc
    return getattr(value, "dt", value)


def _moment(component: Component, name: str) -> date:
    value = decoded(component, name)
    if not isinstance(value, date):
        raise InvalidObject(f"{name} is neither a date nor a date-time")
    if isinstance(value, datetime) and value.tzinfo is None:
        tzid = component[name].params.get("TZID")
        if tzid:
            raise InvalidObject(f"unknown TZID {tzid!r} in {name}: use an IANA zone name "
                                "or include its VTIMEZONE")
    return value


def raw_times(component: Component) -> tuple[date, date]:
    """DTSTART and the end as written (DTEND, DTSTART + DURATION, or the default end)."""
    if "DTSTART" not in component:
        raise InvalidObject("a VEVENT has no DTSTART")
    start = _moment(component, "DTSTART")
    if "DTEND" in component:
        return start, _moment(component, "DTEND")
    if "DURATION" in component:
        duration = decoded(component, "DURATION")
        if not isinstance(duration, timedelta):
            raise InvalidObject("DURATION is not a duration")
        base = start
        if duration.seconds and not isinstance(start, datetime):
            base = datetime.combine(start, time())  # a day plus hours: floating date-times
        try:
            return start, base + duration
        except OverflowError:
            raise InvalidObject("DURATION ends beyond the year 9999") from None
    return start, start + ONE_DAY if not isinstance(start, datetime) else start


def comparable(start: date, end: date) -> tuple[date, date]:
    """Both values of one kind: a DATE or floating value takes the other one's zone (a DATE
    becomes that day's midnight); two DATEs stay DATEs."""
    if not isinstance(start, datetime) and not isinstance(end, datetime):
        return start, end
    tz = next((v.tzinfo for v in (start, end)
               if isinstance(v, datetime) and v.tzinfo is not None), None)
    return _as_datetime(start, tz), _as_datetime(end, tz)


def _as_datetime(value: date, tz: tzinfo | None) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is None and tz is not None:
        value = value.replace(tzinfo=tz)
    return value


def ordered(start: date, end: date) -> tuple[date, date, bool]:
    """(start, end, swapped): the written values made comparable, start first."""
    start, end = comparable(start, end)
    if end < start:
        return end, start, True
    return start, end, False


def kind(value: date) -> str:
    """``date``, ``floating``, the zone's IANA name (``UTC`` included), or ``""`` for a zone
    known only from a custom VTIMEZONE."""
    if not isinstance(value, datetime):
        return "date"
    if value.tzinfo is None:
        return "floating"
    return iana_name(value.tzinfo) or ""


def one_kind(start: date, end: date) -> bool:
    """Whether DTSTART and the end are of one kind (what the actions columns render back)."""
    if isinstance(start, datetime) and isinstance(end, datetime) and start.tzinfo is end.tzinfo:
        return True
    return kind(start) == kind(end)


def as_written(start: date, end: date) -> bool:
    """Whether a mixed DTSTART/end pair is kept in the extras, to be served as it came: only
    zones we can write a VTIMEZONE for (a custom zone is shown in the user's zone)."""
    return not one_kind(start, end) and "" not in (kind(start), kind(end))


def instant(value: date, default_tz: str) -> tuple[datetime, str | None]:
    """Naive UTC instant and the zone to keep for one comparable value (a floating time is
    the user's wall-clock time; a DATE starts at midnight there)."""
    if not isinstance(value, datetime):
        return date_to_utc(value, default_tz), default_tz
    if value.tzinfo is None:
        return to_utc(value.replace(tzinfo=zone(default_tz))), None
    # A zone we only know from an embedded VTIMEZONE: keep the instant, show it in the
    # user's own zone.
    return to_utc(value), iana_name(value.tzinfo) or default_tz


def instants(start: date, end: date, default_tz: str
             ) -> tuple[datetime, datetime, str | None, bool]:
    """(start, end, zone, all-day) as the actions columns hold them, for the written values
    of :func:`raw_times`."""
    start, end, _ = ordered(start, end)
    first, tzid = instant(start, default_tz)
    last, _ = instant(end, default_tz)
    return first, last, tzid, not isinstance(start, datetime)
