"""Putting two versions of one calendar object together.

* :func:`keep_local_extras`: when the remote's version wins (open), what the remote does not
  carry (alarms, CONTACT, attendees, X- properties of an appointment made on a phone) is
  taken back from Gestan's version, per VEVENT (the master, and each override by its
  RECURRENCE-ID), unless the remote has its own.
* :func:`merge_occurrences`: a series edited on both sides, in different occurrences: each
  occurrence (the master, each override, each cancelled instance) is taken from the side
  that changed it (DESIGN.md rule 5).
"""

from __future__ import annotations

import copy

from icalendar import Calendar, Component

from bridge.ical.content import MASTER, master_local_start, occurrence_keys, series_zone
from bridge.ical.parse import event_from_component
from bridge.ical.timezones import rid_key, rid_value

# What every target maps itself: the remote's value (or its absence) is the truth. A target
# that carries more (alarms, attendees...) adds those names (Target.carries).
MAPPED = frozenset({
    "UID", "DTSTAMP", "DTSTART", "DTEND", "DURATION", "SUMMARY", "DESCRIPTION", "LOCATION",
    "STATUS", "RECURRENCE-ID", "RRULE", "RDATE", "EXDATE", "EXRULE", "SEQUENCE",
    "LAST-MODIFIED", "CREATED"})


def _key(component) -> str:
    rid = component.get("RECURRENCE-ID")
    return rid.to_ical().decode() if rid is not None else ""


def keep_local_extras(remote_ics: str, local_ics: str | None,
                      carried: frozenset[str] = frozenset()) -> str:
    """``remote_ics`` with the properties and alarms of ``local_ics`` that the remote does not
    carry (neither :data:`MAPPED` nor ``carried``) added where the remote has none of that
    name."""
    if not local_ics:
        return remote_ics
    mapped = MAPPED | carried
    local = {_key(c): c for c in Calendar.from_ical(local_ics).walk("VEVENT")}
    remote = Calendar.from_ical(remote_ics)
    changed = False
    for event in remote.walk("VEVENT"):
        mine = local.get(_key(event))
        if mine is None:
            continue
        for name, value in mine.property_items(recursive=False):
            if name in mapped or name in ("BEGIN", "END") or name in event:
                continue
            event.add(name, value, encode=False)
            changed = True
        if "VALARM" not in carried and not any(c.name == "VALARM" for c in event.subcomponents):
            alarms = [c for c in mine.subcomponents if c.name == "VALARM"]
            event.subcomponents.extend(alarms)
            changed = changed or bool(alarms)
    return remote.to_ical().decode("utf-8") if changed else remote_ics


class _Series:
    """One side of a series: its master, overrides and cancelled occurrences by key."""

    def __init__(self, ics: str, default_tz: str) -> None:
        self.calendar = Calendar.from_ical(ics)
        events = [c for c in self.calendar.subcomponents if c.name == "VEVENT"]
        self.master = next(c for c in events if "RECURRENCE-ID" not in c)
        event = event_from_component(self.master, default_tz, keep_recurrence=True)
        self.zone = series_zone(event, default_tz)
        self.all_day = event.all_day
        self.tzid = None if event.all_day else event.tzid
        start = master_local_start(event, self.zone)
        self.cancelled = occurrence_keys(self.master, "EXDATE", event.all_day, self.zone, start)
        self.overrides: dict[str, Component] = {}
        for component in events:
            if "RECURRENCE-ID" in component:
                key = rid_key(component.decoded("RECURRENCE-ID"), default_tz)
                if str(component.get("STATUS", "")).upper() == "CANCELLED":
                    self.cancelled.add(key)
                else:
                    self.overrides[key] = component

    def keys(self) -> set[str]:
        return set(self.overrides) | self.cancelled


def merge_occurrences(source_ics: str, dest_ics: str, from_dest: set[str],
                      default_tz: str) -> str:
    """``source_ics`` with the occurrences named in ``from_dest`` (part keys: ``MASTER`` or
    recurrence-id keys) as ``dest_ics`` has them: overridden, cancelled, or as generated."""
    source, dest = _Series(source_ics, default_tz), _Series(dest_ics, default_tz)
    master = copy.deepcopy(dest.master if MASTER in from_dest else source.master)
    shape = dest if MASTER in from_dest else source
    overrides: dict[str, Component] = {}
    cancelled: set[str] = set()
    for key in source.keys() | dest.keys():
        side = dest if key in from_dest else source
        if key in side.cancelled:
            cancelled.add(key)
        elif key in side.overrides:
            overrides[key] = copy.deepcopy(side.overrides[key])
    master.pop("EXDATE", None)
    if cancelled:
        master.add("EXDATE", [rid_value(k, shape.tzid, default_tz) for k in sorted(cancelled)])
    merged = Calendar()
    for name, value in source.calendar.property_items(recursive=False):
        if name not in ("BEGIN", "END"):
            merged.add(name, value, encode=False)
    zones = {}
    for calendar in (source.calendar, dest.calendar):
        for component in calendar.subcomponents:
            if component.name == "VTIMEZONE":
                zones.setdefault(str(component.get("TZID")), component)
    merged.subcomponents.extend(zones.values())
    merged.subcomponents.append(master)
    merged.subcomponents.extend(overrides[k] for k in sorted(overrides))
    return merged.to_ical().decode("utf-8")
