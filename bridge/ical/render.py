"""EventData → iCalendar text, byte-deterministic (etags are hashes of it).

Same row, same bytes: no "now" anywhere (DTSTAMP is the row's own timestamp), a fixed
property order, extras in the order they were received, and VTIMEZONEs computed from the
object's own years only.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from icalendar import Calendar, Event

from bridge.ical import reading
from bridge.ical.model import EventData, InvalidObject
from bridge.ical.reading import TIME_PROPS
from bridge.ical.timezones import (
    is_iana,
    rid_value,
    utc_to_date,
    utc_to_local,
    vtimezone,
    zone,
)

PRODID = "-//gestan-bridge//Gestan Rendez-vous//FR"
_LAST_VTIMEZONE_YEAR = 2037


def render_object(uid: str, master: EventData, overrides: Iterable[EventData] = (),
                  default_tz: str = "Europe/Paris", dtstamp: datetime | None = None,
                  exdates: Iterable[str] = (), open_ended: bool = False,
                  this_and_future: Iterable[str] = ()) -> str:
    """One CalDAV object: ``master`` (a single event or a series master) and its overrides.

    ``exdates`` are recurrence-id keys to exclude (occurrences deleted in Gestan);
    ``open_ended`` says the series has no end, so its VTIMEZONEs must reach far ahead;
    ``this_and_future`` names the overrides that apply to later occurrences too
    (RECURRENCE-ID;RANGE=THISANDFUTURE).
    """
    overrides = sorted(overrides, key=lambda e: e.recurrence_id or "")
    events = [master, *overrides]
    calendar = Calendar()
    calendar.add("PRODID", PRODID)
    calendar.add("VERSION", "2.0")
    first_year = min(e.start.year for e in events)
    last_year = max(e.end.year for e in events)
    if open_ended:
        last_year = max(last_year, min(first_year + 20, _LAST_VTIMEZONE_YEAR))
    tzids = {e.tzid for e in events if not e.all_day}
    stamp = (dtstamp or datetime(2000, 1, 1)).replace(tzinfo=UTC)
    calendar.add_component(_vevent(uid, master, default_tz, stamp, tzids, exdates=exdates))
    future = set(this_and_future)
    for override in overrides:
        calendar.add_component(_vevent(uid, override, default_tz, stamp, tzids, master=master,
                                       this_and_future=override.recurrence_id in future))
    text = calendar.to_ical(sorted=False).decode("utf-8")
    zones = "".join(_vtimezone_text(tzid, first_year, last_year) for tzid in sorted(
        t for t in tzids if t not in (None, "UTC") and is_iana(t)))
    if not zones:
        return text
    # the VTIMEZONEs go first, as add_component would have put them (same bytes)
    head, sep, rest = text.partition("BEGIN:VEVENT\r\n")
    return head + zones + sep + rest


@functools.lru_cache(maxsize=256)
def _vtimezone_text(tzid: str, first_year: int, last_year: int) -> str:
    """A VTIMEZONE block as text, serialised once (it is most of a one-event object)."""
    return vtimezone(tzid, first_year, last_year).to_ical(sorted=False).decode("utf-8")


def etag_of(ics: str) -> str:
    return f'"{hashlib.sha256(ics.encode("utf-8")).hexdigest()[:40]}"'


def _vevent(uid: str, event: EventData, default_tz: str, stamp: datetime, tzids: set,
            master: EventData | None = None, exdates: Iterable[str] = (),
            this_and_future: bool = False) -> Event:
    """One VEVENT; the zones its extras name are added to ``tzids`` (their VTIMEZONEs)."""
    vevent = Event()
    vevent.add("UID", uid)
    vevent.add("DTSTAMP", stamp)
    extra = Event.from_ical(event.extra_ics) if event.extra_ics else None
    if extra is not None and "DTSTART" in extra and _as_written(extra, event, default_tz):
        for name in TIME_PROPS:
            if name in extra:
                vevent[name] = extra[name]
    else:
        vevent.add("DTSTART", _time_value(event.start, event, default_tz))
        vevent.add("DTEND", _time_value(event.end, event, default_tz))
    if event.recurrence_id and master is not None:
        vevent.add("RECURRENCE-ID", _rid(event.recurrence_id, master, default_tz),
                   parameters={"RANGE": "THISANDFUTURE"} if this_and_future else None)
    for name, value in (("SUMMARY", event.subject), ("LOCATION", event.location),
                        ("DESCRIPTION", event.notes), ("CONTACT", event.contact)):
        if value:
            vevent.add(name, value)
    if event.status != "CONFIRMED":
        vevent.add("STATUS", event.status)
    if extra is not None:
        for name, value in extra.items():
            if name not in TIME_PROPS:
                vevent[name] = value
        for component in extra.subcomponents:
            vevent.add_component(component)
        if "TZID=" in event.extra_ics:
            for value in extra.values():
                for item in value if isinstance(value, list) else [value]:
                    tzid = getattr(item, "params", {}).get("TZID")
                    if tzid:
                        tzids.add(str(tzid))
    exdates = sorted(exdates)
    if exdates:
        vevent.add("EXDATE", [_rid(key, event, default_tz) for key in exdates])
    return vevent


def _as_written(extra: Event, event: EventData, default_tz: str) -> bool:
    """Whether the times the event came with (kept in its extras when DTSTART and DTEND
    were of two kinds) still say what its columns say: then they are served as written,
    else the columns (changed in Gestan since) win."""
    try:
        start, end = reading.raw_times(extra)
        first, last, _, all_day = reading.instants(start, end, default_tz)
    except (InvalidObject, ValueError):
        return False
    return (first, last, all_day) == (event.start, event.end, event.all_day)


def _time_value(instant: datetime, event: EventData, default_tz: str):
    if event.all_day:
        return utc_to_date(instant, event.tzid or default_tz)
    if event.tzid == "UTC":
        return instant.replace(tzinfo=UTC)
    if event.tzid is None:
        return utc_to_local(instant, default_tz).replace(tzinfo=None)
    return instant.replace(tzinfo=UTC).astimezone(zone(event.tzid))


def _rid(key: str, master: EventData, default_tz: str):
    return rid_value(key, None if master.all_day else master.tzid, default_tz)
