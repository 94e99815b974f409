"""CALDAV:free-busy-query (RFC 4791 7.10) answered from the occurrences stored at write time.

Radicale 3.9 reads every object with an instance in the range through vobject and expands
its series again at each query. Here the busy periods come from the rows a time-range
calendar-query reads (:mod:`plugins.queries`): the occurrences the store materialised when
the series was written, and only the parts of the range they do not cover (before the
series' last write, beyond the one-year horizon) expanded, over those parts alone.

The answer is stock Radicale's: occurrences read as Radicale reads them (DATE and floating
values as UTC, an event without an end busy for one second), TRANSPARENT ones left out,
CANCELLED ones FREE and TENTATIVE ones BUSY-TENTATIVE, periods cut to the range and merged
by Radicale's own ``render_freebusy``; an appointment with ``[reporting]
max_freebusy_occurrence`` instances in the range or more is refused, with the reason where
Radicale answered a bare 400. Where stock Radicale 3.9 is wrong, the occurrences are those
of the store (recurring-ical-events): a series' occurrences stay at their wall-clock time
across a DST change (stock: an hour off), an all-day series without an end is busy all day
(RFC 5545 3.6.1; stock: one second), and a zero-length event with a DTEND is busy for one
second as one without (stock: not at all).
"""

from __future__ import annotations

import posixpath
import re
from datetime import datetime, timedelta

from defusedxml import ElementTree as DefusedET
from radicale import xmlutils
from radicale.app.base import Access
from radicale.app.report import render_freebusy
from radicale.item import filter as radicale_filter

from bridge.ical import series as ical_series
from bridge.ical.model import EventData
from bridge.store.queries import shifted
from plugins import queries
from plugins.common import calendar_owner
from plugins.storage import RendezVousCalendar

_C = xmlutils.make_clark
FREE_BUSY_QUERY, TIME_RANGE = _C("C:free-busy-query"), _C("C:time-range")
_TRANSP = re.compile(r"^TRANSP(?:;[^:\r\n]*)?:([^\r\n]*)", re.M | re.I)
_STATUS_TYPES = {"CONFIRMED": "BUSY", "CANCELLED": "FREE", "TENTATIVE": "BUSY-TENTATIVE"}

Period = tuple[datetime, datetime, str]
_FIRST_WINDOW = timedelta(days=366)


class FreeBusyRefused(ValueError):
    """A free-busy-query refused with the reason (a 400)."""


class FreeBusyReports:
    def __init__(self, storage, rights, encoding: str, max_occurrences: int) -> None:
        self.storage = storage
        self.rights = rights
        self.encoding = encoding
        self.max_occurrences = max_occurrences

    def answer(self, raw: bytes, path: str, user: str, user_groups: set
               ) -> tuple[int, dict, bytes] | None:
        """The VFREEBUSY of a free-busy-query on a readable Rendez-vous calendar, or None to
        let Radicale answer (other requests and paths)."""
        if b"free-busy-query" not in raw:
            return None
        if calendar_owner(path) is None:
            return None
        try:
            root = DefusedET.fromstring(raw)
        except Exception:  # malformed XML is refused before (bridge.caldav_app)
            return None
        if root.tag != FREE_BUSY_QUERY or not Access(self.rights, user, user_groups,
                                                      path).check("r"):
            return None
        element = root.find(TIME_RANGE)
        if element is None:  # Radicale 3.9: an AssertionError, a 500
            raise FreeBusyRefused("a free-busy-query needs a time-range (RFC 4791 section "
                                  "9.9)")
        try:
            start, end = radicale_filter.parse_time_range(element)
        except ValueError as exc:
            raise FreeBusyRefused(f"invalid time-range: {exc}") from exc
        collection = next(iter(self.storage.discover(path)), None)
        if not isinstance(collection, RendezVousCalendar):
            return None
        wanted = queries.TimeRange(
            start.replace(tzinfo=None) if element.get("start") else None,
            end.replace(tzinfo=None) if element.get("end") else None)
        periods = self.periods(collection, wanted)
        body = render_freebusy(periods, start, end).encode(self.encoding)
        return 200, {"Content-Type": f"text/calendar; charset={self.encoding}"}, body

    def periods(self, collection: RendezVousCalendar, wanted: queries.TimeRange
                ) -> list[Period]:
        """The busy periods of ``wanted``, from the stored occurrences."""
        default_tz = collection.user.timezone
        start, end = wanted.start or datetime.min, wanted.end or datetime.max
        found: list[Period] = []
        for candidate in collection.store.range_candidates(
                collection.user.id, wanted.start, wanted.end, every_action=True):
            seen: set[tuple] = set()
            for event in _instances(candidate, wanted, default_tz):
                span = queries.radicale_span(event, default_tz)
                if not (start < span[1] and span[0] < end):
                    continue
                key = (event.recurrence_id, event.start, event.end)
                if key in seen:  # met both stored and expanded (it spans the last write)
                    continue
                seen.add(key)
                if self.max_occurrences and len(seen) >= self.max_occurrences:
                    name = posixpath.basename(candidate.stored.href)
                    raise FreeBusyRefused(
                        f"{name} has {self.max_occurrences} instances or more in the range "
                        "([reporting] max_freebusy_occurrence): ask for a shorter one")
                kind = busy_type(event)
                if kind is not None:
                    found.append((max(span[0], start), min(span[1], end), kind))
        return [p for p in found if p[0] < p[1]]


def _instances(candidate, wanted: queries.TimeRange, default_tz: str):
    """The stored occurrences, then those of the parts of the range they do not cover."""
    yield from candidate.occurrences
    for start, end in queries.uncovered(candidate, wanted):
        yield from _expanded(candidate.stored.ics, start, end, default_tz)


def _expanded(ics: str, start: datetime, end: datetime | None, default_tz: str):
    """The occurrences of [start, end) (end None: open), a window at a time, each four
    times the last: the caller stops at its limit, and a long range of a series without
    end is never expanded whole (the store's expansion: bridge.ical.series)."""
    step = _FIRST_WINDOW
    while end is None or start < end:
        stop = shifted(start, step) if end is None else min(shifted(start, step), end)
        yield from ical_series.expand(ics, start, stop, default_tz)
        if stop == datetime.max:
            return
        start, step = stop, step * 4


def busy_type(event: EventData) -> str | None:
    """FBTYPE of an occurrence as Radicale gives it; None: TRANSPARENT, not busy."""
    transp = _TRANSP.search(event.extra_ics) if event.extra_ics else None
    if transp and transp.group(1).strip().upper() not in ("", "OPAQUE"):
        return None
    return _STATUS_TYPES.get(event.status.upper(), "BUSY")
