"""Content keys: what a calendar object *means*, comparable whoever rendered it.

Gestan's rendering and a target's round trip differ in spelling (UNTIL forms, EXDATE zones,
DURATION vs DTEND, DTSTAMP, properties a target cannot carry); the sync engine compares
these keys, never texts. Also the series helpers the target mappings share.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from icalendar import Component, vRecur

from bridge.ical import series as ical_series
from bridge.ical.future import future_keys
from bridge.ical.model import EventData, ParsedObject
from bridge.ical.parse import parse_object
from bridge.ical.timezones import (
    iana_name,
    rid_instant,
    to_utc,
    utc_to_date,
    utc_to_local,
    zone,
)

RULE_PROPS = ("RRULE", "EXRULE")
UNTIL_FMT = "%Y%m%dT%H%M%SZ"

# ---------------------------------------------------------------- series shape

@dataclass(frozen=True)
class SeriesShape:
    """A series' recurrence in one spelling, whatever form it came in."""

    zone: str                       # the zone it repeats in
    rules: list[tuple[str, vRecur]]  # (RRULE or EXRULE, rule with UNTIL as RFC 5545 wants)
    rdates: set[str]                # recurrence-id keys
    exdates: set[str]               # recurrence-id keys, cancelled overrides included


def series_shape(parsed: ParsedObject, default_tz: str) -> SeriesShape:
    master = parsed.master
    zone_name = series_zone(master, default_tz)
    component = ical_series.master_component(parsed.series_ics)
    start_local = master_local_start(master, zone_name)
    rules = [(name, canonical_rule(rule, master.all_day, zone_name, until_day_end=False))
             for name in RULE_PROPS for rule in prop_list(component, name)]
    rdates = occurrence_keys(component, "RDATE", master.all_day, zone_name, start_local)
    exdates = occurrence_keys(component, "EXDATE", master.all_day, zone_name, start_local)
    exdates |= {o.recurrence_id for o in parsed.overrides if o.status == "CANCELLED"}
    return SeriesShape(zone_name, rules, rdates, exdates)


# ---------------------------------------------------------------- content key

MASTER = ""        # the part key of a series' master (its rules and its own fields)
CANCELLED = "cancelled"  # the part of an occurrence deleted from its series
NO_EXTRAS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Content:
    """What an object means, whole (``key``) and per occurrence (``parts``).

    ``parts`` maps ``MASTER`` to the master's meaning (a single event: its whole meaning)
    and each recurrence-id key that is not what the master generates to the override's
    meaning, or to ``CANCELLED``: the unit of a series conflict (DESIGN.md rule 5)."""

    key: str
    parts: dict[str, str]


def content_key(ics: str, default_tz: str, carries: frozenset[str] = NO_EXTRAS) -> str:
    """sha256 hex of what the object means for an appointment, whoever rendered it."""
    return content_of(parse_object(ics, default_tz), default_tz, carries).key


def content_of(parsed: ParsedObject, default_tz: str,
               carries: frozenset[str] = NO_EXTRAS) -> Content:
    """The meaning of a parsed object, as a target that carries ``carries`` sees it.

    Kept: times (UTC instants and zone; dates for all-day), title, place, notes, status, the
    series rules with UNTIL as one instant, RDATEs and EXDATEs as UTC keys (cancelled
    overrides count as EXDATEs), and the overrides that differ from the occurrence the master
    generates. Left out: UID, DTSTAMP, SEQUENCE, and every extra_ics line (CONTACT, alarms,
    attendees, X- properties...) except the property names in ``carries``: what a target
    carries back (a target that holds alarms declares "VALARM") is part of the meaning there.
    """
    master = parsed.master
    meaning: dict[str, Any] = {"event": _meaning(master, default_tz, carries)}
    parts: dict[str, str] = {}
    if parsed.is_series:
        shape = series_shape(parsed, default_tz)
        live = {o.recurrence_id: o for o in parsed.overrides
                if o.status != "CANCELLED" and o.recurrence_id not in shape.exdates}
        generated = _generated(parsed.series_ics, set(live), default_tz)
        overrides = {}
        for key, override in sorted(live.items()):
            mine = _meaning(override, default_tz, carries)
            if key not in generated or _meaning(generated[key], default_tz, carries) != mine:
                overrides[key] = mine
                parts[key] = _digest(mine)
        rules = sorted(f"{name}:{_rule_key(rule)}" for name, rule in shape.rules)
        meaning.update(rules=rules, rdates=sorted(shape.rdates), exdates=sorted(shape.exdates),
                       overrides=overrides)
        master_part = {"event": meaning["event"], "rules": rules, "rdates": meaning["rdates"]}
        future = future_keys(parsed.series_ics, default_tz)
        if future:  # "this and following": every later occurrence changes with it
            meaning["future"] = master_part["future"] = future
        parts[MASTER] = _digest(master_part)
        parts.update((key, CANCELLED) for key in shape.exdates)
    key = _digest(meaning)
    if not parsed.is_series:
        parts[MASTER] = key
    return Content(key, parts)


def _digest(meaning: Any) -> str:
    text = json.dumps(meaning, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _meaning(event: EventData, default_tz: str,
             carries: frozenset[str] = NO_EXTRAS) -> dict[str, Any]:
    """One event's comparable content (floating times count in ``default_tz``)."""
    if event.all_day:
        tz = event.tzid or default_tz
        when: dict[str, Any] = {"start": utc_to_date(event.start, tz).isoformat(),
                                "end": utc_to_date(event.end, tz).isoformat(), "all_day": True}
    else:
        tzid = iana_name(zone(event.tzid)) if event.tzid else default_tz
        when = {"start": event.start.isoformat(), "end": event.end.isoformat(),
                "tz": tzid or event.tzid}
    meaning = {**when, "summary": normal_text(event.subject),
               "notes": normal_text(event.notes), "location": normal_text(event.location),
               "status": event.status}
    if carries:
        meaning["extras"] = carried_lines(event, carries)
    return meaning


def carried_lines(event: EventData, carries: frozenset[str]) -> list[str]:
    """The event's properties (and VALARM blocks) named in ``carries``, in one spelling:
    unfolded content lines, each alarm as one entry, sorted."""
    found: list[str] = []
    if "CONTACT" in carries and event.contact:
        found.append("CONTACT:" + normal_text(event.contact))
    if not event.extra_ics:
        return sorted(found)
    unfolded = event.extra_ics.replace("\r\n ", "").replace("\n ", "").splitlines()
    alarm: list[str] | None = None
    for line in unfolded:
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if line.upper() == "BEGIN:VALARM":
            alarm = []
        elif line.upper() == "END:VALARM":
            if alarm is not None and "VALARM" in carries:
                found.append("VALARM:" + "|".join(sorted(alarm)))
            alarm = None
        elif alarm is not None:
            alarm.append(line)
        elif name in carries and name not in ("BEGIN", "END"):
            found.append(line)
    return sorted(found)


def normal_text(value: str) -> str:
    """Line ends and surrounding blanks are rendering, not meaning."""
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _rule_key(rule: vRecur) -> str:
    """A rule in one spelling: parts sorted, list values sorted, defaults dropped."""
    parts = []
    for part in rule.to_ical().decode("ascii").split(";"):
        name, _, value = part.partition("=")
        name = name.upper()
        if (name, value) in (("INTERVAL", "1"), ("WKST", "MO")):
            continue
        parts.append(f"{name}={','.join(sorted(value.split(',')))}")
    return ";".join(sorted(parts))


def _generated(series_ics: str, keys: set[str], default_tz: str) -> dict[str, EventData]:
    """What the master alone generates at the given recurrence ids."""
    if not keys:
        return {}
    instants = [rid_instant(k, default_tz) for k in keys]
    found = ical_series.expand(series_ics, min(instants) - timedelta(days=2),
                               max(instants) + timedelta(days=2), default_tz,
                               with_overrides=False)
    return {e.recurrence_id: e for e in found if e.recurrence_id in keys}


# ---------------------------------------------------------------- shared helpers

def series_zone(event: EventData, default_tz: str) -> str:
    """The zone a series repeats in (all-day: the zone its dates were read in)."""
    return event.tzid or default_tz


def rid_zone(event: EventData) -> str | None:
    return None if event.all_day else event.tzid


def master_local_start(event: EventData, series_tz: str) -> datetime:
    """The master's local wall-clock start: a DATE EXDATE on a timed series means that time."""
    return utc_to_local(event.start, series_tz)


def prop_list(component: Component, name: str) -> list:
    found = component.get(name)
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


def occurrence_keys(component: Component, name: str, all_day: bool, series_tz: str,
                     start_local: datetime) -> set[str]:
    """RDATE/EXDATE values as recurrence-id keys, whatever zone or form they were written in."""
    keys = set()
    for prop in prop_list(component, name):
        for item in prop.dts:
            value = item.dt[0] if isinstance(item.dt, tuple) else item.dt
            keys.add(occurrence_key(value, all_day, series_tz, start_local))
    return keys


def occurrence_key(value: date | datetime, all_day: bool, series_tz: str,
                    start_local: datetime) -> str:
    tz = zone(series_tz)
    if all_day:
        if isinstance(value, datetime):
            value = value.astimezone(tz).date() if value.tzinfo else value.date()
        return value.strftime("%Y%m%d")
    if not isinstance(value, datetime):
        value = datetime.combine(value, start_local.time().replace(tzinfo=None))
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return to_utc(value).strftime(UNTIL_FMT)


def canonical_rule(rule: vRecur, all_day: bool, series_tz: str, until_day_end: bool
                    ) -> vRecur:
    """The rule with UNTIL as RFC 5545 wants it: a DATE for all-day, else a UTC date-time.

    A DATE UNTIL on a timed series is read as the start of that day where the series lives
    (as recurring-ical-events, hence Gestan, reads it), or as its end when ``until_day_end``
    (as Google reads it): the converted rule means the same to both sides.
    """
    canonical = vRecur(rule)
    until = canonical.get("UNTIL")
    if not until:
        return canonical
    value = until[0] if isinstance(until, list) else until
    tz = zone(series_tz)
    if all_day:
        if isinstance(value, datetime):
            value = value.astimezone(tz).date() if value.tzinfo else value.date()
    else:
        if not isinstance(value, datetime):
            value = datetime.combine(value, time.max.replace(microsecond=0)
                                     if until_day_end else time())
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        value = value.astimezone(UTC)
    canonical["UNTIL"] = [value]
    return canonical
