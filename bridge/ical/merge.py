"""Keep what a remote cannot carry when its version replaces Gestan's.

A target maps times, texts and recurrence; alarms, CONTACT, attendees, categories and X-
properties of an appointment made on a phone do not survive the trip. When the remote's
version wins (open), those properties are taken back from Gestan's version, per VEVENT
(the master, and each override by its RECURRENCE-ID), unless the remote has its own.
"""

from __future__ import annotations

from icalendar import Calendar

# What every target maps itself: the remote's value (or its absence) is the truth.
MAPPED = {"UID", "DTSTAMP", "DTSTART", "DTEND", "DURATION", "SUMMARY", "DESCRIPTION",
          "LOCATION", "STATUS", "RECURRENCE-ID", "RRULE", "RDATE", "EXDATE", "EXRULE",
          "SEQUENCE", "LAST-MODIFIED", "CREATED"}


def _key(component) -> str:
    rid = component.get("RECURRENCE-ID")
    return rid.to_ical().decode() if rid is not None else ""


def keep_local_extras(remote_ics: str, local_ics: str | None) -> str:
    """``remote_ics`` with the unmapped properties and alarms of ``local_ics`` added where
    the remote has none of that name."""
    if not local_ics:
        return remote_ics
    local = {_key(c): c for c in Calendar.from_ical(local_ics).walk("VEVENT")}
    remote = Calendar.from_ical(remote_ics)
    changed = False
    for event in remote.walk("VEVENT"):
        mine = local.get(_key(event))
        if mine is None:
            continue
        for name, value in mine.property_items(recursive=False):
            if name in MAPPED or name in ("BEGIN", "END") or name in event:
                continue
            event.add(name, value, encode=False)
            changed = True
        if not any(c.name == "VALARM" for c in event.subcomponents):
            alarms = [c for c in mine.subcomponents if c.name == "VALARM"]
            event.subcomponents.extend(alarms)
            changed = changed or bool(alarms)
    return remote.to_ical().decode("utf-8") if changed else remote_ics
