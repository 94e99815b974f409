"""Split an .ics file (a whole calendar export) into one calendar object per UID."""

from __future__ import annotations

from icalendar import Calendar

from bridge.ical.model import InvalidObject


def split_calendar(text: str | bytes) -> list[tuple[str, str]]:
    """``(label, VCALENDAR text)`` per UID, each with the VTIMEZONEs of the file.

    Components other than VEVENT are kept in their own piece so that the importer reports
    them as rejected instead of dropping them silently.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidObject(f"the file is not valid UTF-8 (byte {exc.start})") from exc
    try:
        calendars = Calendar.from_ical(text, multiple=True)
    except Exception as exc:
        raise InvalidObject(f"malformed iCalendar file: {exc}") from exc
    if not calendars:
        raise InvalidObject("no VCALENDAR in the file")
    pieces: dict[str, list] = {}
    timezones = []
    for calendar in calendars:
        for position, component in enumerate(calendar.subcomponents, start=1):
            if component.name == "VTIMEZONE":
                timezones.append(component)
                continue
            uid = str(component.get("UID", "")) or f"#{position} (no UID)"
            label = uid if component.name == "VEVENT" else f"{component.name} {uid}"
            pieces.setdefault(label, []).append(component)
    result = []
    for label, components in pieces.items():
        piece = Calendar()
        piece.add("VERSION", "2.0")
        piece.add("PRODID", "-//gestan-bridge//import//EN")
        for tz in timezones:
            piece.add_component(tz)
        for component in components:
            piece.add_component(component)
        result.append((label, piece.to_ical(sorted=False).decode("utf-8")))
    return result
