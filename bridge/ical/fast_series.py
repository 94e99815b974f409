"""Expanding a plain series without recurring-ical-events' per-occurrence component copies.

recurring-ical-events copies and re-reads a whole VEVENT for every occurrence: right for
any series, but most of the cost of materialising a year of a thousand series. For the
series phones, Google and Outlook actually send (one RRULE, EXDATE/RDATE of the master's
own kind, DTSTART/DTEND in one zone, overrides by RECURRENCE-ID) the occurrences are the
master's content at the instants dateutil's rruleset gives. ``tests/test_fast_series.py``
checks the result equals recurring-ical-events' over many series; anything outside this
shape returns None and goes the general way.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dateutil import rrule
from icalendar import Calendar, Component

from bridge.ical import reading
from bridge.ical.model import EventData
from bridge.ical.parse import event_from_component
from bridge.ical.timezones import rid_key, to_utc, zone

_UNSUPPORTED = ("EXRULE",)
_RECURRENCE_PROPS = ("RRULE", "RDATE", "EXDATE", "EXRULE")
_DATE_KEY, _TIME_KEY = "%Y%m%d", "%Y%m%dT%H%M%SZ"


def date_values(component: Component, name: str) -> list:
    """The dates and date-times of every ``name`` property of ``component`` (RDATE,
    EXDATE), in order."""
    found = component.get(name)
    if found is None:
        return []
    out = []
    for prop in found if isinstance(found, list) else [found]:
        for item in prop.dts:
            out.append(item.dt)
    return out


def _local(value, kind: type, tz) -> datetime | date | None:
    """A RDATE/EXDATE value in the master's form, or None if it is of another kind."""
    if kind is date:
        return value if type(value) is date else None
    if not isinstance(value, datetime):
        return None
    if tz is None:
        return value if value.tzinfo is None else None
    if value.tzinfo is None:
        return None
    return value.astimezone(tz)


def _special(override: Component) -> bool:
    """An override recurring-ical-events reads otherwise than as one occurrence as written:
    one with RANGE=THISANDFUTURE, one carrying rules (an older version of the series, hidden
    when its occurrence is no longer the rule's), one with times of two kinds."""
    rid = override["RECURRENCE-ID"]
    return ("RANGE" in rid.params or any(n in override for n in _RECURRENCE_PROPS)
            or not reading.one_kind(*reading.raw_times(override)))


def expand(calendar: Calendar, start: datetime, end: datetime, default_tz: str
           ) -> list[EventData] | None:
    """Occurrences overlapping [start, end) (naive UTC), or None for a series of another
    shape than the fast path handles."""
    events = [c for c in calendar.subcomponents if c.name == "VEVENT"]
    masters = [c for c in events if "RECURRENCE-ID" not in c]
    if len(masters) != 1:
        return None
    master = masters[0]
    rule = master.get("RRULE")
    if rule is None or isinstance(rule, list) or any(n in master for n in _UNSUPPORTED):
        return None
    begin = master.decoded("DTSTART")
    if "DTEND" in master:
        finish = master.decoded("DTEND")
        if type(finish) is not type(begin) or (
                isinstance(begin, datetime) and finish.tzinfo != begin.tzinfo):
            return None
    elif "DURATION" in master:
        duration = master.decoded("DURATION")
        if type(begin) is date and duration.seconds:
            return None  # a day plus hours: floating date-times (bridge.ical.reading)
        finish = begin + duration
    else:
        finish = begin + timedelta(days=1) if type(begin) is date else begin
    kind = date if type(begin) is date else datetime
    tz = begin.tzinfo if kind is datetime else None
    if tz is not None and tz is not UTC and getattr(tz, "key", None) is None:
        return None  # a zone known only from a custom VTIMEZONE
    until = rule.get("UNTIL")
    if until:
        value = until[0]
        if kind is date and type(value) is not date:
            return None
        if kind is datetime and (type(value) is date or (tz is None) != (value.tzinfo is None)):
            return None
    template = event_from_component(master, default_tz)
    length = finish - begin
    if length < timedelta(0):
        return None
    # dateutil wants naive dates as midnights and an aware UNTIL in UTC
    dtstart = datetime.combine(begin, datetime.min.time()) if kind is date else begin
    try:
        ruleset = rrule.rruleset()
        text = rule.to_ical().decode("ascii")
        if until and kind is date:
            text = text.replace(f"UNTIL={until[0]:%Y%m%d}", f"UNTIL={until[0]:%Y%m%d}T000000")
        generator = rrule.rrulestr(text, dtstart=dtstart)
        if generator.after(dtstart, inc=True) != dtstart:
            return None  # DTSTART off the rule: it counts as an occurrence, dateutil disagrees
        ruleset.rrule(generator)
        exdates = []
        for name, add in (("RDATE", ruleset.rdate), ("EXDATE", exdates.append)):
            for raw in date_values(master, name):
                value = _local(raw, kind, tz)
                if value is None:
                    return None
                add(datetime.combine(value, datetime.min.time()) if kind is date else value)
        for value in exdates:
            ruleset.exdate(value)
    except (ValueError, TypeError):
        return None
    overrides = {}
    excluded = {rid_key(v.date() if kind is date else v, default_tz) for v in exdates}
    for component in events:
        if component is master:
            continue
        if _special(component):
            return None
        event = event_from_component(component, default_tz)
        if event.recurrence_id in excluded:
            continue  # an override of a deleted occurrence is not shown (as r-i-e does)
        original = component.decoded("RECURRENCE-ID")
        original = _local(original, kind, tz)
        if original is None:
            return None
        if kind is date:
            original = datetime.combine(original, datetime.min.time())
        if ruleset.after(original - timedelta(seconds=1)) != original:
            return None  # an override of an occurrence the rule does not make
        overrides[event.recurrence_id] = event
    tz_name = template.tzid if kind is date else None
    zone_of_day = zone(tz_name or default_tz)
    floating = zone(default_tz)

    def instant(value: datetime) -> datetime:
        if kind is date:
            return to_utc(value.replace(tzinfo=zone_of_day))
        return to_utc(value if value.tzinfo else value.replace(tzinfo=floating))

    lo, hi = start.replace(tzinfo=UTC), end.replace(tzinfo=UTC)
    if kind is date:
        search = (datetime.combine((lo - length - timedelta(days=2)).date(), datetime.min.time()),
                  datetime.combine((hi + timedelta(days=2)).date(), datetime.min.time()))
    elif tz is None:
        search = ((lo - length - timedelta(days=2)).replace(tzinfo=None),
                  (hi + timedelta(days=2)).replace(tzinfo=None))
    else:
        search = (lo - length - timedelta(hours=1), hi + timedelta(hours=1))
    def span(event: EventData) -> tuple[datetime, datetime]:
        """What the window is compared with: all-day dates count as floating midnights,
        as recurring-ical-events reads them."""
        if not event.all_day:
            return event.start, event.end
        return (event.start.replace(tzinfo=UTC).astimezone(zone_of_day).replace(tzinfo=None),
                event.end.replace(tzinfo=UTC).astimezone(zone_of_day).replace(tzinfo=None))

    t = template  # built field by field: dataclasses.replace costs more than the rest
    out = []
    for occurrence in ruleset.between(*search, inc=True):
        first = instant(occurrence)
        # the recurrence-id key (timezones.rid_key): the UTC instant, or the date if all-day
        key = occurrence.strftime(_DATE_KEY) if kind is date else first.strftime(_TIME_KEY)
        if key in overrides:
            continue
        out.append(EventData(first, instant(occurrence + length), t.tzid, t.all_day,
                             t.subject, t.notes, t.location, t.contact, t.status, t.extra_ics,
                             key))
    out += overrides.values()
    kept = []
    for event in out:
        first, last = span(event)
        if first < end and (last > start or (first == last and first >= start)):
            kept.append(event)
    return sorted(kept, key=lambda e: (e.start, e.recurrence_id or ""))
