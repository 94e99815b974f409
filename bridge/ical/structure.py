"""The shape of an iCalendar text, checked before it is parsed, with the line at fault.

icalendar reads leniently what Radicale's reader (vobject, and dateutil for VTIMEZONEs)
then refused with a bare "400 Bad Request", and what means nothing to any calendar: a line
that is not ``NAME;PARAM=VALUE:VALUE``, a line ending in a lone CR, a component never
closed or closed by another's END, components nested hundreds deep (vobject's recursion
gives up near 800 levels, and below that they were stored), a component where RFC 5545
has no place for it, a VTIMEZONE dateutil cannot read, a property given twice that RFC
5545 allows once. Each is refused here with its reason; the check is one pass over the
lines, a few tens of microseconds for a phone's PUT.
"""

from __future__ import annotations

import functools
import io
import re
from datetime import date, datetime

from dateutil import tz
from icalendar import Calendar

from bridge.ical.model import InvalidObject

# VCALENDAR › VEVENT › VALARM › VLOCATION (RFC 9074, a proximity alarm's place) is the
# deepest shape RFC 5545 and its extensions give a calendar object.
MAX_DEPTH = 4

# A content line as Radicale's reader (vobject) accepts it: a name (a group before it, an
# underscore in it: Lotus Notes), parameters with quoted or plain values, a colon.
_NAME = r"[A-Za-z0-9_-]+"
_VALUE = r'(?:"[^"]*"|[^";:,]*)'
_LINE = re.compile(rf"(?:{_NAME}\.)?({_NAME})(?:;{_NAME}(?:={_VALUE}(?:,{_VALUE})*)?)*:")
_COMPONENT_NAME = re.compile(r"[A-Za-z0-9-]+")

# Where RFC 5545 puts each component it defines (None: at the top).
_PARENTS = {"VCALENDAR": {None}, "VEVENT": {"VCALENDAR"}, "VTODO": {"VCALENDAR"},
            "VJOURNAL": {"VCALENDAR"}, "VFREEBUSY": {"VCALENDAR"},
            "VTIMEZONE": {"VCALENDAR"}, "STANDARD": {"VTIMEZONE"},
            "DAYLIGHT": {"VTIMEZONE"}, "VALARM": {"VEVENT", "VTODO"}}
# What may be inside them when RFC 5545 says exactly (dateutil reads nothing else).
_CHILDREN = {"VTIMEZONE": {"STANDARD", "DAYLIGHT"}, "STANDARD": set(), "DAYLIGHT": set()}
# The lines of a VTIMEZONE vobject hands to dateutil (vobject.icalendar.gettzinfo).
_ZONE_LINES = {"BEGIN", "END", "RDATE", "RRULE", "DTSTART", "TZNAME", "TZOFFSETFROM",
               "TZOFFSETTO", "TZID"}
# RFC 5545 3.6.1, 3.6.6, 3.7: properties that MUST NOT occur more than once.
ONCE = {
    "VCALENDAR": ("PRODID", "VERSION", "CALSCALE", "METHOD"),
    "VEVENT": ("DTSTAMP", "UID", "DTSTART", "CLASS", "CREATED", "DESCRIPTION", "GEO",
               "LAST-MODIFIED", "LOCATION", "ORGANIZER", "PRIORITY", "SEQUENCE", "STATUS",
               "SUMMARY", "TRANSP", "URL", "RECURRENCE-ID", "DTEND", "DURATION"),
    "VALARM": ("ACTION", "TRIGGER", "DURATION", "REPEAT", "DESCRIPTION"),
}
_QUOTED = 60  # characters of a line quoted in a reason


def check_text(text: str) -> None:
    """Refuse ``text`` (a whole body) if a line or the nesting of its components is not
    iCalendar's, or a VTIMEZONE cannot be read; the reason names the line."""
    stack: list[tuple[str, int]] = []        # open components: (name, line number)
    zone: list[str] | None = None             # the lines of the VTIMEZONE being read
    zone_line = 0
    for number, line in _logical_lines(text):
        found = _LINE.match(line)
        if found is None:
            if not line.strip():
                continue  # blank lines are skipped by every reader
            raise InvalidObject(f"line {number} is not an iCalendar content line "
                                f"(NAME:VALUE): {_quote(line)}")
        name = found.group(1).upper()
        if zone is not None and name in _ZONE_LINES:
            zone.append(line)
        if name not in ("BEGIN", "END"):
            continue
        value = line[found.end():]
        component = value.upper()
        if name == "BEGIN":
            _check_begin(component, value, number, stack)
            stack.append((component, number))
            if component == "VTIMEZONE":
                zone, zone_line = [line], number
            continue
        if not stack:
            raise InvalidObject(f"END:{_name(value)} at line {number} closes no component")
        opened, since = stack.pop()
        if component != opened:
            raise InvalidObject(f"END:{_name(value)} at line {number} does not close "
                                f"BEGIN:{opened} of line {since}")
        if component == "VTIMEZONE" and zone is not None:
            _check_zone(zone, zone_line)
            zone = None
    if stack:
        opened, since = stack[-1]
        outer = ", ".join(name for name, _ in reversed(stack[:-1]))
        raise InvalidObject(f"BEGIN:{opened} at line {since} is never closed"
                            + (f" (nor its {outer})" if outer else "")
                            + ": the body was cut short?")


def check_components(calendar: Calendar) -> None:
    """Refuse what icalendar read but could not understand: a line it skipped, a property
    RFC 5545 allows once given twice, a time whose VALUE says otherwise or whose TZID is
    no zone (Radicale's reader fails on each)."""
    for component in calendar.walk():
        for prop, error in component.errors:
            if prop is None:  # a line skipped whole (a property's bad value is kept)
                raise InvalidObject(f"a line of a {component.name} cannot be read: "
                                    f"{error[:160]}")
        for name in ONCE.get(component.name, ()):
            if isinstance(component.get(name), list):
                raise InvalidObject(f"{name} appears more than once in a {component.name}"
                                    " (RFC 5545 allows one)")
        if component.name == "VEVENT":
            for name in _TIMES:
                found = component.get(name)
                for prop in found if isinstance(found, list) else [found] if found else []:
                    _check_time(name, prop)


_TIMES = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE")


def _check_time(name: str, prop) -> None:
    try:
        values = [d.dt for d in prop.dts] if hasattr(prop, "dts") else [prop.dt]
    except Exception:  # a value icalendar could not read: refused when it is read
        return
    kind = str(prop.params.get("VALUE", "")).upper()
    tzid = prop.params.get("TZID")
    for value in values:
        if kind == "DATE" and isinstance(value, datetime) or (
                kind == "DATE-TIME" and isinstance(value, date)
                and not isinstance(value, datetime)):
            raise InvalidObject(f"{name};VALUE={kind} holds {value.isoformat()}: a "
                                f"{'date-time' if kind == 'DATE' else 'date'}")
        if tzid and isinstance(value, datetime) and value.tzinfo is None:
            raise InvalidObject(f"unknown TZID {_quote(str(tzid))} in {name}: use an IANA zone"
                                " name or include its VTIMEZONE")


def _check_begin(component: str, value: str, number: int,
                 stack: list[tuple[str, int]]) -> None:
    if not _COMPONENT_NAME.fullmatch(value):
        raise InvalidObject(f"BEGIN:{_name(value)} at line {number}: not a component name")
    parent = stack[-1][0] if stack else None
    if len(stack) >= MAX_DEPTH:
        raise InvalidObject(f"BEGIN:{component} at line {number} is nested {len(stack) + 1}"
                            f" levels deep: a calendar object has {MAX_DEPTH} at most "
                            "(VCALENDAR, VEVENT, VALARM, VLOCATION)")
    places = _PARENTS.get(component)
    if places is not None and parent not in places:
        where = "at the top" if parent is None else f"inside {parent}"
        belongs = " or ".join(sorted(p for p in places if p)) or "at the top"
        raise InvalidObject(f"BEGIN:{component} at line {number} is {where}: it belongs "
                            + (belongs if belongs == "at the top" else f"in {belongs}"))
    if parent in _CHILDREN and component not in _CHILDREN[parent]:
        allowed = " and ".join(sorted(_CHILDREN[parent])) or "no component"
        raise InvalidObject(f"BEGIN:{component} at line {number} is inside {parent}, which "
                            f"holds {allowed}")
    if parent is None and component != "VCALENDAR":
        raise InvalidObject(f"BEGIN:{component} at line {number} is outside VCALENDAR")


def _check_zone(lines: list[str], number: int) -> None:
    """A VTIMEZONE as Radicale's reader reads it: its rule lines handed to dateutil."""
    problem = _zone_problem("\n".join(lines) + "\n")
    if problem:
        tzid = next((line.split(":", 1)[1] for line in lines
                     if line.upper().startswith("TZID:")), "?")
        raise InvalidObject(f"the VTIMEZONE {_quote(tzid)} of line {number} cannot be read: "
                            f"{_quote(problem, 120)}")


@functools.lru_cache(maxsize=256)
def _zone_problem(text: str) -> str | None:
    """Why dateutil cannot read a VTIMEZONE (None: it can). Memoised: a phone sends the
    same few zones again and again, and dateutil takes most of a millisecond on each."""
    try:
        tz.tzical(io.StringIO(text))
    except Exception as exc:  # dateutil raises ValueError, IndexError, KeyError...
        return str(exc) or type(exc).__name__
    return None


def _logical_lines(text: str):
    """(number of its first physical line, unfolded line); a CR must end a line (CRLF)."""
    number, start, parts = 0, 0, []
    for physical in text.split("\n"):
        number += 1
        if physical.endswith("\r"):
            physical = physical[:-1]
        if "\r" in physical:
            raise InvalidObject(f"line {number} has a carriage return inside it: iCalendar "
                                "lines end with CRLF (or LF)")
        if physical[:1] in (" ", "\t") and parts:
            parts.append(physical[1:])
            continue
        if parts:
            yield start, "".join(parts)
        start, parts = number, [physical]
    if parts:
        yield start, "".join(parts)


def _name(value: str) -> str:
    """A component name as written, quoted when it is not one."""
    return value if _COMPONENT_NAME.fullmatch(value) else _quote(value)


def _quote(text: str, limit: int = _QUOTED) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
