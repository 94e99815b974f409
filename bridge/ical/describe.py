"""Appointments in words, for reports and logs: a subject and its date on every line, in
the user's zone (never a VTIMEZONE's rules)."""

from __future__ import annotations

from bridge.ical.content import series_shape
from bridge.ical.model import EventData, InvalidObject
from bridge.ical.parse import parse_object
from bridge.ical.timezones import rid_instant, utc_to_date, utc_to_local

NO_TITLE = "(no title)"


def when(event: EventData, default_tz: str) -> str:
    """``2026-12-05 10:00`` in the user's zone (the event's own zone named when another),
    ``2026-12-05`` for an all-day event."""
    if event.all_day:
        return utc_to_date(event.start, event.tzid or default_tz).isoformat()
    zone = event.tzid or default_tz
    text = f"{utc_to_local(event.start, zone):%Y-%m-%d %H:%M}"
    return text if zone == default_tz else f"{text} {zone}"


def label(master: EventData, default_tz: str, series: bool = False) -> str:
    """One appointment (or series) in a few words: its subject and when it (first) is."""
    kind = ", series" if series else ""
    return f"{master.subject or NO_TITLE} ({when(master, default_tz)}{kind})"


def label_of(ics: str | None, default_tz: str) -> str:
    if not ics:
        return ""
    try:
        parsed = parse_object(ics, default_tz)
    except InvalidObject:
        return ""
    return label(parsed.master, default_tz, parsed.is_series)


def describe(ics: str, default_tz: str) -> list[str]:
    """A whole object, one line per part: the master (times, place, rules), each moved or
    edited occurrence, the cancelled ones. For the audit log's losing versions."""
    try:
        parsed = parse_object(ics, default_tz)
    except InvalidObject as exc:
        return [f"(unreadable: {exc.reason})"]
    master = parsed.master
    lines = [_line(master, default_tz)]
    if parsed.is_series:
        shape = series_shape(parsed, default_tz)
        lines += [f"  repeats: {rule.to_ical().decode('ascii')}" for _, rule in shape.rules]
        for override in sorted(parsed.overrides, key=lambda o: o.recurrence_id or ""):
            if override.status == "CANCELLED" or override.recurrence_id in shape.exdates:
                continue
            lines.append(f"  occurrence of {_rid(override.recurrence_id, master, default_tz)}"
                         f": {_line(override, default_tz)}")
        lines += [f"  cancelled: {_rid(key, master, default_tz)}"
                  for key in sorted(shape.exdates)]
    return lines


def _line(event: EventData, default_tz: str) -> str:
    end = event.with_changes(start=event.end)
    text = f"{event.subject or NO_TITLE}, {when(event, default_tz)} → {when(end, default_tz)}"
    if event.location:
        text += f", {event.location}"
    if event.status != "CONFIRMED":
        text += f" [{event.status.lower()}]"
    return text


def _rid(key: str | None, master: EventData, default_tz: str) -> str:
    if not key:
        return "?"
    if len(key) == 8:
        return f"{key[:4]}-{key[4:6]}-{key[6:]}"
    zone = master.tzid or default_tz
    return f"{utc_to_local(rid_instant(key, zone), zone):%Y-%m-%d %H:%M}"


def raw_label(text: str) -> str:
    """SUMMARY and DTSTART as written, for a text we could not read otherwise."""
    found = {}
    for line in text.replace("\r\n ", "").splitlines():
        name = line.split(":", 1)[0].split(";", 1)[0].upper()
        if name in ("SUMMARY", "DTSTART") and name not in found and ":" in line:
            found[name] = line.split(":", 1)[1][:80]
        if line.upper() == "END:VEVENT":
            break
    return f"{found.get('SUMMARY') or NO_TITLE} ({found.get('DTSTART', '?')})"
