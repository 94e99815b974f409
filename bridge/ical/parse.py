"""iCalendar text → :class:`ParsedObject`, refusing what Gestan cannot store with a reason.

Every refusal is an :class:`InvalidObject` carrying an HTTP status: the CalDAV layer answers
it as is and the database is never touched. What real clients send that can be read as
recurring-ical-events reads it is repaired instead (:mod:`bridge.ical.repair`), and the
repairs are listed in :attr:`ParsedObject.repairs`.
"""

from __future__ import annotations

import re

from icalendar import Calendar, Component, Event

from bridge.config import max_content_length
from bridge.ical import reading, repair, rules, structure
from bridge.ical.model import EventData, InvalidObject, ParsedObject, Repair
from bridge.ical.timezones import (
    is_iana,
    rid_key,
)

MAX_TEXT = {"SUMMARY": 1000, "LOCATION": 1000, "CONTACT": 1000, "DESCRIPTION": 64 * 1024}
_SERIES_PROPS = ("RRULE", "RDATE", "EXRULE", "RECURRENCE-ID")
MAX_OVERRIDES = 1000
STATUSES = {"CONFIRMED", "TENTATIVE", "CANCELLED"}

# Held by the actions columns (or re-rendered by us); everything else goes to ``extra_ics``.
_COLUMN_PROPS = {"UID", "DTSTAMP", "LAST-MODIFIED", "DTSTART", "DTEND", "DURATION", "SUMMARY",
                 "DESCRIPTION", "LOCATION", "STATUS", "RECURRENCE-ID"}
_RECURRENCE_PROPS = {"RRULE", "RDATE", "EXDATE", "EXRULE"}


def parse_object(data: str | bytes, default_tz: str) -> ParsedObject:
    """Validate one CalDAV object (a VCALENDAR with the VEVENTs of one UID)."""
    limit = max_content_length()  # the one body limit: [server] max_content_length
    if isinstance(data, bytes):
        if len(data) > limit:
            raise InvalidObject(f"calendar object larger than {limit} bytes", 413)
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidObject(f"body is not valid UTF-8 (byte {exc.start})") from exc
    if len(data.encode("utf-8")) > limit:
        raise InvalidObject(f"calendar object larger than {limit} bytes", 413)
    if "\x00" in data:
        raise InvalidObject(f"NUL character in the body (at character {data.index(chr(0))}):"
                            " not iCalendar text")
    head = data.lstrip("\ufeff \r\n\t")[:15].upper()
    if head.startswith("BEGIN:VCARD"):
        raise InvalidObject("a vCard is not an appointment: this calendar holds VEVENTs only", 415)
    if not head.startswith("BEGIN:VCALENDAR"):
        raise InvalidObject("not an iCalendar object: the body must start with BEGIN:VCALENDAR")
    structure.check_text(data.lstrip("\ufeff \t"))
    data = without_iana_vtimezones(data)
    try:
        calendars = Calendar.from_ical(data, multiple=True)
    except Exception as exc:  # icalendar raises ValueError, KeyError, IndexError...
        raise InvalidObject(f"malformed iCalendar: {exc}") from exc
    if len(calendars) != 1:
        raise InvalidObject("exactly one VCALENDAR is expected per object")
    structure.check_components(calendars[0])
    try:
        return _interpret(calendars[0], default_tz)
    except InvalidObject:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as exc:
        # a property icalendar parsed lazily and could not read (an RRULE with COUNT=\, a
        # DURATION of 99,999,999 weeks...): the client's mistake, said so, never a 500
        name = type(exc).__name__
        raise InvalidObject(f"malformed iCalendar ({name}): {exc}"[:300]) from exc


def _interpret(calendar: Calendar, default_tz: str) -> ParsedObject:
    """The checks and the reading of one parsed VCALENDAR."""
    kinds = {c.name for c in calendar.subcomponents} - {"VTIMEZONE"}
    if kinds - {"VEVENT"}:
        raise InvalidObject(
            "this calendar holds appointments (VEVENT) only, not "
            + ", ".join(sorted(kinds - {"VEVENT"})), 403)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if not events:
        raise InvalidObject("no VEVENT in the calendar object")
    uids = {str(e.get("UID", "")) for e in events}
    if "" in uids:
        raise InvalidObject("a VEVENT has no UID")
    if len(uids) > 1:
        raise InvalidObject("one object must hold one UID, found " + ", ".join(sorted(uids)))
    uid = uids.pop()
    if len(uid) > 255:
        raise InvalidObject("UID longer than 255 characters")
    repairs, extras = repair.repair_versions(calendar)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    masters = [e for e in events if "RECURRENCE-ID" not in e]
    if len(masters) != 1:
        raise InvalidObject(f"expected one VEVENT without RECURRENCE-ID, found {len(masters)}")
    master_component = masters[0]
    if len(events) > MAX_OVERRIDES + 1:
        raise InvalidObject(f"more than {MAX_OVERRIDES} overridden occurrences")
    recurring = any(p in master_component for p in ("RRULE", "RDATE"))
    if recurring:
        repairs += repair.repair_rules(master_component)
        _check_rrule(master_component)
    elif len(events) > 1:
        raise InvalidObject("RECURRENCE-ID on an event that has no RRULE or RDATE")
    repairs += repair.repair_occurrences(calendar, master_component, extras, default_tz)
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    if len(events) > MAX_OVERRIDES + 1:
        raise InvalidObject(f"more than {MAX_OVERRIDES} overridden occurrences")
    recurring = any(p in master_component for p in ("RRULE", "RDATE"))
    master = event_from_component(master_component, default_tz, keep_recurrence=True,
                                  repairs=repairs)
    kind = series_kind(master_component)
    override_data = []
    seen = set()
    for component in events:
        if component is master_component:
            continue
        event = override_from_component(component, kind, default_tz, repairs)
        if event.recurrence_id in seen:
            raise InvalidObject(f"occurrence {event.recurrence_id} overridden twice")
        seen.add(event.recurrence_id)
        override_data.append(event)
    series_ics = _series_text(calendar, events) if recurring else None
    repaired = calendar.to_ical(sorted=False).decode("utf-8") if repairs else None
    return ParsedObject(uid=uid, master=master, overrides=override_data, series_ics=series_ics,
                        repairs=repairs, repaired_ics=repaired)


_VTIMEZONE = re.compile(r"BEGIN:VTIMEZONE\r?\n.*?END:VTIMEZONE\r?\n", re.S | re.I)
_TZID_LINE = re.compile(r"^TZID[;:](?:[^:\r\n]*:)?([^\r\n]*)", re.M | re.I)


def without_iana_vtimezones(text: str) -> str:
    """The text without the VTIMEZONE blocks of IANA zones: icalendar reads such a TZID as
    the zoneinfo zone whatever the block says, so the block (dozens of lines, most of the
    text of a one-event object) is only parsing cost. Other zones' blocks stay."""
    if "BEGIN:VTIMEZONE" not in text.upper():
        return text

    def drop(block: re.Match[str]) -> str:
        found = _TZID_LINE.search(block.group(0))
        return "" if found and is_iana(found.group(1).strip()) else block.group(0)

    return _VTIMEZONE.sub(drop, text)


def series_kind(master: Component) -> str:
    """The kind (:func:`bridge.ical.reading.kind`) of a series' occurrences."""
    return reading.kind(reading.ordered(*reading.raw_times(master))[0])


def override_from_component(component: Component, series: str, default_tz: str,
                            repairs: list[Repair] | None = None) -> EventData:
    """An override as received: it keeps what it came with (an RRULE copy says it is an
    older version of the series, recurring-ical-events reads it so), and a RECURRENCE-ID
    of another kind than the series' (``series``: :func:`series_kind`), one that names no
    occurrence, stays as written: it is read by its spelling (recurring-ical-events matches
    wall-clock times, and a THISANDFUTURE override moves later occurrences by it)."""
    rid = reading.decoded(component, "RECURRENCE-ID")
    return event_from_component(component, default_tz, keep_recurrence=True, repairs=repairs,
                                keep_rid=reading.kind(rid) != series)


def event_from_component(component: Component, default_tz: str,
                         keep_recurrence: bool = False,
                         repairs: list[Repair] | None = None,
                         keep_rid: bool = False) -> EventData:
    """One VEVENT as columns + extras. ``keep_recurrence``: RRULE & co. go to the extras.

    Times are read as :mod:`bridge.ical.reading` says; a DTSTART and end of different kinds
    also stay in the extras as written, so that they are served back as they came. With
    ``repairs``, times no calendar can hold as written are repaired in ``component`` first
    (:func:`bridge.ical.repair.repair_times`) and the repairs added there."""
    start_value, end_value = reading.raw_times(component)
    if repairs is not None:
        fixed = repair.repair_times(component, start_value, end_value)
        if fixed:
            repairs += fixed
            start_value, end_value = reading.raw_times(component)
    # served as written: a DTSTART and end of two kinds, and a single event's end not given
    # as DTEND (a DURATION, or none at all), so that a query for events without DTEND finds
    # it (a series' occurrences are expanded from columns: their ends stay computed)
    written = reading.as_written(start_value, end_value) or (
        "DTEND" not in component and not any(p in component for p in _SERIES_PROPS))
    start, end, tzid, all_day = reading.instants(start_value, end_value, default_tz)
    recurrence_id = None
    if "RECURRENCE-ID" in component:
        recurrence_id = rid_key(_decoded(component, "RECURRENCE-ID"), default_tz)
    status = str(component.get("STATUS", "CONFIRMED")).upper()
    if status not in STATUSES:
        raise InvalidObject(f"unknown STATUS {status!r} for an event")
    texts = {}
    for name, limit in MAX_TEXT.items():
        value = component.get(name, "")
        if isinstance(value, list):
            if name != "CONTACT":
                raise InvalidObject(f"{name} appears more than once")
            value = ""  # several CONTACTs stay in the extras as they came
        value = str(value)
        if len(value) > limit:
            raise InvalidObject(f"{name} longer than {limit} characters", 413)
        texts[name] = value
    skip = set(_COLUMN_PROPS)
    if written:
        skip.difference_update(reading.TIME_PROPS)
    if keep_rid:
        skip.discard("RECURRENCE-ID")
    if not isinstance(component.get("CONTACT", ""), list):
        skip.add("CONTACT")
    if not keep_recurrence:
        skip |= _RECURRENCE_PROPS
    return EventData(
        start=start, end=end, tzid=tzid, all_day=all_day,
        subject=texts["SUMMARY"], notes=texts["DESCRIPTION"], location=texts["LOCATION"],
        contact=texts["CONTACT"], status=status,
        extra_ics=_extras(component, skip), recurrence_id=recurrence_id,
    )


_decoded = reading.decoded


def _extras(component: Component, skip: set[str]) -> str:
    extra = Event()
    for name, value in component.items():
        if name.upper() not in skip:
            extra[name] = value
    extra.subcomponents = list(component.subcomponents)
    if not extra and not extra.subcomponents:
        return ""
    return extra.to_ical(sorted=False).decode("utf-8")


def _check_rrule(master: Component) -> None:
    """Refuse rules that would flood the agenda or never occur (:mod:`bridge.ical.rules`).

    Several RRULEs mean the union of their occurrences (RFC 5545 allows it, Outlook and
    recurring-ical-events read it so): each is checked, and an EXRULE as a rule."""
    for name in ("RRULE", "EXRULE"):
        found = master.get(name)
        for rule in found if isinstance(found, list) else [found] if found is not None else []:
            rules.check_rule(master, rule, name)


def _series_text(calendar: Calendar, events: list[Component]) -> str:
    """The series source: its VEVENTs and the VTIMEZONEs they use, nothing else."""
    source = Calendar()
    source.add("VERSION", "2.0")
    source.add("PRODID", "-//gestan-bridge//series//EN")
    for component in calendar.subcomponents:
        if component.name == "VTIMEZONE":
            source.add_component(component)
    for event in events:
        source.add_component(event)
    return source.to_ical(sorted=False).decode("utf-8")
