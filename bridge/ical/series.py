"""Series: expanding a stored series into occurrences with recurring-ical-events.

Only the requested window is ever expanded (DESIGN.md, "Series"); the series source
(master + overrides) stays one object.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import recurring_ical_events
from icalendar import Calendar

from bridge.ical import fast_series, reading
from bridge.ical.model import EventData
from bridge.ical.parse import event_from_component
from bridge.ical.timezones import rid_key

_MAX_BOUNDED = 20000
_SLACK = timedelta(days=1)
_FAR_FUTURE = datetime(2200, 1, 1)


def calendar_of(series_ics: str, with_overrides: bool = True) -> Calendar:
    calendar = Calendar.from_ical(series_ics)
    if not with_overrides:
        calendar.subcomponents = [c for c in calendar.subcomponents
                                  if not (c.name == "VEVENT" and "RECURRENCE-ID" in c)]
    return calendar


def master_component(series_ics: str):
    return next(c for c in calendar_of(series_ics).subcomponents
                if c.name == "VEVENT" and "RECURRENCE-ID" not in c)


def expand(series_ics: str, start: datetime, end: datetime, default_tz: str,
           with_overrides: bool = True) -> list[EventData]:
    """Occurrences overlapping [start, end) (naive UTC), overrides applied, EXDATEs removed.

    ``with_overrides=False`` gives what the master alone generates: an occurrence that
    differs from it must be written back as an override. Plain series (one RRULE, dates of
    the master's own kind) take the fast path of :mod:`bridge.ical.fast_series`;
    anything else is left to recurring-ical-events.
    """
    calendar = calendar_of(series_ics, with_overrides)
    fast = fast_series.expand(calendar, start, end, default_tz)
    if fast is not None:
        return fast
    return expand_general(calendar, start, end, default_tz)


def expand_general(calendar: Calendar, start: datetime, end: datetime, default_tz: str
                   ) -> list[EventData]:
    """recurring-ical-events' expansion: any series RFC 5545 allows.

    An occurrence changed by a RANGE=THISANDFUTURE override comes with that override's
    RECURRENCE-ID: it is keyed on its own original start (the override's move undone)."""
    query = recurring_ical_events.of(calendar)
    window = (start.replace(tzinfo=UTC), end.replace(tzinfo=UTC))
    moves = _future_moves(calendar, default_tz)
    found = []
    for component in query.between(*window):
        event = event_from_component(component, default_tz)
        move = moves.get(event.recurrence_id) if moves else None
        if move is not None:
            original = component.decoded("DTSTART") - move
            event = event.with_changes(recurrence_id=rid_key(original, default_tz))
        found.append(event)
    return found


def _future_moves(calendar: Calendar, default_tz: str) -> dict[str | None, timedelta]:
    """RANGE=THISANDFUTURE overrides by recurrence-id key: how far they move occurrences
    (DTSTART minus RECURRENCE-ID, as recurring-ical-events moves them)."""
    moves: dict[str | None, timedelta] = {}
    for component in calendar.subcomponents:
        rid = component.get("RECURRENCE-ID") if component.name == "VEVENT" else None
        if rid is None or str(rid.params.get("RANGE", "")).upper() != "THISANDFUTURE":
            continue
        start = reading.ordered(*reading.raw_times(component))[0]
        start, original = reading.comparable(start, rid.dt)
        moves[rid_key(rid.dt, default_tz)] = start - original
    return moves


@functools.lru_cache(maxsize=1024)
def bounds(series_ics: str, default_tz: str) -> tuple[datetime, datetime | None]:
    """First start and last end of all instances (naive UTC); last end None if unbounded.

    A day of slack on each side: DST and floating times never push an instance past it.
    Memoised by text: the engine asks before storing, the store again when storing.
    """
    calendar = calendar_of(series_ics)
    events = [event_from_component(c, default_tz) for c in calendar.walk("VEVENT")]
    first = min(e.start for e in events) - _SLACK
    master = next(c for c in calendar.subcomponents
                  if c.name == "VEVENT" and "RECURRENCE-ID" not in c)
    rules = master.get("RRULE")
    rules = rules if isinstance(rules, list) else [rules] if rules is not None else []
    if any(not (rule.get("COUNT") or rule.get("UNTIL")) for rule in rules):
        return first, None
    if any(rule.get("COUNT") and not rule.get("UNTIL") and _count(rule) >= _MAX_BOUNDED
           for rule in rules):
        return first, None  # (COUNT=999999999 walked 20,000 instances: 47 s)
    last = max(e.end for e in events)
    # a plain series goes the fast way (checked equal to recurring-ical-events)
    fast = fast_series.expand(calendar, first, _FAR_FUTURE, default_tz)
    if fast is not None:
        if len(fast) >= _MAX_BOUNDED:
            return first, None
        return first, max([last, *(e.end for e in fast)]) + _SLACK
    occurrences = recurring_ical_events.of(calendar).all()
    for count, component in enumerate(occurrences):
        if count >= _MAX_BOUNDED:
            return first, None
        last = max(last, event_from_component(component, default_tz).end)
    return first, last + _SLACK


def _count(rule) -> int:
    counts = rule.get("COUNT")
    return int((counts if isinstance(counts, list) else [counts])[0])


def span(parsed, default_tz: str) -> tuple[datetime, datetime | None]:
    """First start and last end of a parsed object (a series: all its instances)."""
    if parsed.is_series:
        return bounds(parsed.series_ics, default_tz)
    return parsed.master.start, parsed.master.end
