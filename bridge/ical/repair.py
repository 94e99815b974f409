"""Accept and repair what real clients send rather than refuse it (Postel).

Stock Radicale stores these shapes as they come; refusing them leaves a phone with a sync
error and the user's edit stuck. Each repair rewrites the object into a well-formed one
with the occurrences recurring-ical-events reads in what was sent (the reference reading,
:mod:`bridge.ical.reading`), except where that reading would lose an appointment or keep a
moved occurrence beside its original: then every appointment is kept, once. Each repair is
said in words (:class:`Repair`); the repaired text is what is stored and served back.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import recurring_ical_events
from icalendar import Calendar, Component, Event
from icalendar.prop import vDDDTypes

from bridge.ical import reading
from bridge.ical.model import Repair
from bridge.ical.timezones import rid_key, zone

# The kinds of repair (what is counted)
SWAPPED = "end before start"
DATE_MADE_TIME = "DATE beside a date-time"
COUNT_IGNORED = "COUNT ignored beside UNTIL"
COPY_DROPPED = "identical copy dropped"
OLDER_DROPPED = "older version dropped"
KEPT_AS_OCCURRENCE = "second version kept as an occurrence"
VERSION_DROPPED = "second version dropped"
RID_REWRITTEN = "RECURRENCE-ID rewritten"

logger = logging.getLogger("gestan_bridge")
# How many repairs of each kind were made to objects stored since the server started.
REPAIRS: Counter[str] = Counter()
_COUNTING = threading.Lock()

_RECURRENCE_PROPS = ("RRULE", "RDATE", "EXDATE", "EXRULE")
_LOOK_AROUND = timedelta(days=20 * 366)  # how far from DTSTART an occurrence is looked for


def note(href: str, repairs: Iterable[Repair]) -> None:
    """Log each repair made to the object stored at ``href``, and count it by kind."""
    for found in repairs:
        logger.warning("repaired %s: %s", href, found)
        with _COUNTING:
            REPAIRS[found.kind] += 1


def repair_versions(calendar: Calendar) -> tuple[list[Repair], list[Component]]:
    """Several VEVENTs without RECURRENCE-ID for one UID (exports of edited series).

    Identical copies collapse to one; a lower SEQUENCE is an older version of the same
    appointment (recurring-ical-events shows the highest only). Other versions are all
    kept: the first series (or the first event when none repeats) stays the master, and
    each other single event is returned, removed from the calendar, for
    :func:`repair_occurrences` to make an occurrence of it once the master is checked. A
    second, different series cannot be held beside the first: it is dropped, and said so.
    """
    masters = [c for c in calendar.subcomponents
               if c.name == "VEVENT" and "RECURRENCE-ID" not in c]
    if len(masters) < 2:
        return [], []
    repairs: list[Repair] = []
    kept, dropped = _distinct(masters, "the event", repairs)
    series = [c for c in kept if _recurs(c)]
    main = series[0] if series else kept[0]
    extras = []
    for component in kept:
        if component is main:
            continue
        dropped.append(component)
        if _recurs(component):
            repairs.append(Repair(VERSION_DROPPED, "a second, different series of the same "
                                  f"UID starting {_start_text(component)}: the first is kept"))
        else:
            extras.append(component)
    _remove(calendar, dropped)
    return repairs, extras


def repair_times(component: Component, start: date, end: date) -> list[Repair]:
    """A DATE beside a date-time DTSTART or DTEND (the date becomes that midnight, as
    recurring-ical-events reads it; Radicale cannot even index it), and an end before the
    start (swapped, as it reads it). ``start`` and ``end`` are the times as written
    (:func:`bridge.ical.reading.raw_times`); read them again after a repair."""
    repairs = []
    if "DTEND" in component and isinstance(start, datetime) != isinstance(end, datetime):
        first, last = reading.comparable(start, end)
        name, was, value = (("DTEND", end, last) if isinstance(start, datetime)
                            else ("DTSTART", start, first))
        component[name] = vDDDTypes(value)
        repairs.append(Repair(DATE_MADE_TIME, f"{name} {_text(was)} beside a date-time: "
                              f"written as {_text(value)}"))
        start, end = reading.raw_times(component)
    if reading.ordered(start, end)[2]:
        _swap(component, end)
        repairs.append(Repair(SWAPPED, f"the event at {_text(start)} ended at {_text(end)}: "
                              "start and end swapped"))
    return repairs


def repair_rules(master: Component) -> list[Repair]:
    """An RRULE COUNT of zero or less beside an UNTIL: the COUNT is ignored (the UNTIL ends
    the rule), where recurring-ical-events would end the series at once or fail."""
    repairs = []
    rules = master.get("RRULE")
    for rule in rules if isinstance(rules, list) else [rules] if rules else []:
        count = rule.get("COUNT")
        if count and rule.get("UNTIL") and not _positive(count[0]):
            del rule["COUNT"]
            repairs.append(Repair(COUNT_IGNORED, f"RRULE COUNT={count[0]} beside UNTIL: "
                                  "the UNTIL ends the series"))
    return repairs


def repair_occurrences(calendar: Calendar, master: Component, extras: list[Component],
                       default_tz: str) -> list[Repair]:
    """Overrides, once the master's rule is checked (expanding it is then safe).

    * a RECURRENCE-ID of another kind than the master's DTSTART (a DATE for a timed series,
      UTC for a zoned one, a date-time for an all-day one) is rewritten as the occurrence
      it names, spelled like DTSTART;
    * two overrides of one occurrence: identical copies collapse, an older SEQUENCE goes,
      and a second, different version is kept as an occurrence of its own;
    * ``extras`` (other versions of the event, :func:`repair_versions`) become occurrences:
      an RDATE at their start and an override holding them, unless an occurrence is
      already there (then recurring-ical-events' choice, the first, stays).
    """
    overrides = [c for c in calendar.subcomponents
                 if c.name == "VEVENT" and "RECURRENCE-ID" in c]
    if not overrides and not extras:
        return []
    repairs: list[Repair] = []
    rule = _Rule(master, default_tz)
    for component in overrides:
        _rewrite_rid(component, rule, repairs)
    groups: dict[str, list[Component]] = {}
    for component in overrides:
        key = rid_key(reading.decoded(component, "RECURRENCE-ID"), default_tz)
        groups.setdefault(key, []).append(component)
    extras = list(extras)
    for key, group in groups.items():
        if len(group) < 2:
            continue
        kept, dropped = _distinct(group, f"the occurrence {key}", repairs)
        dropped += kept[1:]
        extras += kept[1:]
        _remove(calendar, dropped)
    taken = set(groups)
    for extra in extras:
        value = rule.in_kind(reading.decoded(extra, "DTSTART"))
        key = rid_key(value, default_tz)
        if key in taken or rule.occurs(value):
            repairs.append(Repair(VERSION_DROPPED, f"a second version of the event at "
                                  f"{_text(value)} (SUMMARY {str(extra.get('SUMMARY', ''))!r}) "
                                  "where the series already has one: the first is kept"))
            continue
        for name in _RECURRENCE_PROPS:
            extra.pop(name, None)
        extra["RECURRENCE-ID"] = vDDDTypes(value)
        master.add("RDATE", value)
        rule.changed()
        calendar.subcomponents.append(extra)
        taken.add(key)
        repairs.append(Repair(KEPT_AS_OCCURRENCE, f"a second version of the event at "
                              f"{_text(value)} (SUMMARY {str(extra.get('SUMMARY', ''))!r}): "
                              "kept as an occurrence of its own (RDATE)"))
    return repairs


# ---------------------------------------------------------------- helpers

class _Rule:
    """The master's occurrences (EXDATEs ignored: an excluded occurrence still exists),
    expanded only around a day asked about."""

    def __init__(self, master: Component, default_tz: str) -> None:
        self.master = master
        self.default_tz = default_tz
        self.start = reading.ordered(*reading.raw_times(master))[0]
        self._query = None

    def changed(self) -> None:
        self._query = None

    def starts_on(self, day: date) -> list[date]:
        """Occurrence starts on ``day`` (in the series' own zone), in order."""
        first = self.start.date() if isinstance(self.start, datetime) else self.start
        if abs(day - first) > _LOOK_AROUND:
            return []
        if self._query is None:
            source = Event()
            for name, value in self.master.items():
                if name != "EXDATE":
                    source[name] = value
            calendar = Calendar()
            calendar.add_component(source)
            self._query = recurring_ical_events.of(calendar)
        found = []
        for component in self._query.between(day - timedelta(days=1), day + timedelta(days=2)):
            start = component["DTSTART"].dt
            if isinstance(start, datetime) and isinstance(self.start, datetime):
                if self.start.tzinfo is not None:
                    start = start.astimezone(self.start.tzinfo)
                if start.date() == day:
                    found.append(start)
            elif start == day:
                found.append(start)
        return sorted(found)

    def occurs(self, value: date) -> bool:
        day = value.date() if isinstance(value, datetime) else value
        key = rid_key(value, self.default_tz)
        return any(rid_key(s, self.default_tz) == key for s in self.starts_on(day))

    def in_kind(self, value: date) -> date:
        """``value`` spelled like DTSTART (a DATE at DTSTART's time of day; a floating
        time in the user's zone)."""
        like = self.start
        if not isinstance(like, datetime):
            if not isinstance(value, datetime):
                return value
            if value.tzinfo is not None:
                value = value.astimezone(zone(self.default_tz))
            return value.date()
        if not isinstance(value, datetime):
            return datetime.combine(value, like.time(), tzinfo=like.tzinfo)
        if like.tzinfo is None:
            if value.tzinfo is not None:
                value = value.astimezone(zone(self.default_tz)).replace(tzinfo=None)
            return value
        if value.tzinfo is None:
            value = value.replace(tzinfo=zone(self.default_tz))
        return value.astimezone(like.tzinfo)

    def candidates(self, rid: date) -> list[date]:
        """Values of DTSTART's kind the RECURRENCE-ID may name, most likely first: the same
        instant, then what recurring-ical-events matches (it compares wall-clock times and
        UTC times across zones), then the occurrence on the day a DATE names."""
        like = self.start
        if not isinstance(like, datetime):
            if not isinstance(rid, datetime):
                return []
            if rid.tzinfo is None:
                return [rid.date()]
            wall, utc = rid.replace(tzinfo=None), rid.astimezone(UTC).replace(tzinfo=None)
            midnight = [v.date() for v in (utc, wall) if v.time() == time()]
            local = rid.astimezone(zone(self.default_tz)).date()
            return _unique([*midnight, local, wall.date(), utc.date()])
        if not isinstance(rid, datetime):
            midnight = datetime.combine(rid, time())
            starts = self.starts_on(rid)
            at_start_time = [s for s in starts if s.time() == like.time()]
            return _unique([*self._same_clock([midnight]), *at_start_time, *starts])
        clocks = [rid.replace(tzinfo=None)]
        if rid.tzinfo is not None:
            clocks.append(rid.astimezone(UTC).replace(tzinfo=None))
        if like.tzinfo is None:
            if rid.tzinfo is not None:
                clocks.append(rid.astimezone(zone(self.default_tz)).replace(tzinfo=None))
            return _unique(clocks)
        same_instant = [rid.astimezone(like.tzinfo)] if rid.tzinfo is not None else []
        return _unique([*same_instant, *self._same_clock(clocks)])

    def _same_clock(self, clocks: list[datetime]) -> list[datetime]:
        """Zoned values whose wall-clock or UTC time is one of ``clocks`` (naive)."""
        tz = self.start.tzinfo
        if tz is None:
            return clocks
        found = []
        for clock in clocks:
            found.append(clock.replace(tzinfo=tz))
            found.append(clock.replace(tzinfo=UTC).astimezone(tz))
        return found


def _rewrite_rid(component: Component, rule: _Rule, repairs: list[Repair]) -> None:
    """The RECURRENCE-ID spelled like the master's DTSTART, when it names an occurrence."""
    rid = reading.decoded(component, "RECURRENCE-ID")
    if not isinstance(rid, date) or reading.kind(rid) == reading.kind(rule.start):
        return
    if isinstance(rid, datetime) and isinstance(rule.start, datetime) and "" in (
            reading.kind(rid), reading.kind(rule.start)):
        return  # a custom VTIMEZONE: the instant is matched as it is
    chosen = next((c for c in rule.candidates(rid) if rule.occurs(c)), None)
    if chosen is None:
        return  # it names no occurrence: read as recurring-ical-events reads it
    old = component["RECURRENCE-ID"]
    new = vDDDTypes(chosen)
    for name, value in old.params.items():
        if name.upper() == "RANGE":
            new.params[name] = value
    component["RECURRENCE-ID"] = new
    repairs.append(Repair(RID_REWRITTEN, f"RECURRENCE-ID {old.to_ical().decode()} "
                          f"names the occurrence {_text(chosen)}: written like DTSTART"))


def _distinct(components: list[Component], what: str, repairs: list[Repair]
              ) -> tuple[list[Component], list[Component]]:
    """(kept, dropped): the versions of the highest SEQUENCE, each once."""
    top = max(_sequence(c) for c in components)
    kept: list[Component] = []
    dropped: list[Component] = []
    seen = set()
    for component in components:
        if _sequence(component) < top:
            repairs.append(Repair(OLDER_DROPPED, f"{what} with SEQUENCE "
                                  f"{_sequence(component)} beside one with SEQUENCE {top}"))
            dropped.append(component)
            continue
        fingerprint = _fingerprint(component)
        if fingerprint in seen:
            repairs.append(Repair(COPY_DROPPED, f"{what} came twice"))
            dropped.append(component)
            continue
        seen.add(fingerprint)
        kept.append(component)
    return kept, dropped


def _fingerprint(component: Component) -> bytes:
    """The component's text without DTSTAMP (exports stamp each copy)."""
    return b"\n".join(line for line in component.to_ical().splitlines()
                      if not line.upper().startswith(b"DTSTAMP"))


def _sequence(component: Component) -> int:
    try:
        return int(component.get("SEQUENCE", -1))
    except (TypeError, ValueError):
        return -1


def _recurs(component: Component) -> bool:
    return "RRULE" in component or "RDATE" in component


def _positive(count) -> bool:
    return isinstance(count, int) and count >= 1


def _swap(component: Component, end: date) -> None:
    if "DTEND" in component:
        component["DTSTART"], component["DTEND"] = component["DTEND"], component["DTSTART"]
        return
    # DTSTART with a negative DURATION: start at the end, for as long
    duration = reading.decoded(component, "DURATION")
    component["DTSTART"] = vDDDTypes(end)
    component["DURATION"] = vDDDTypes(-duration)


def _remove(calendar: Calendar, components: list[Component]) -> None:
    gone = {id(c) for c in components}
    calendar.subcomponents = [c for c in calendar.subcomponents if id(c) not in gone]


def _unique(values: list[date]) -> list[date]:
    found: list[date] = []
    for value in values:
        if value not in found:
            found.append(value)
    return found


def _start_text(component: Component) -> str:
    return _text(reading.decoded(component, "DTSTART"))


def _text(value: date) -> str:
    if not isinstance(value, datetime):
        return value.isoformat()
    zone_name = reading.kind(value)
    text = value.replace(tzinfo=None).isoformat(sep=" ")
    return text if zone_name == "floating" else f"{text} {zone_name or value.tzname()}"
