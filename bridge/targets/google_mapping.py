"""Google Calendar v3 event JSON ↔ one calendar object (a VCALENDAR of one UID), pure.

Google holds a series as a master event (``recurrence`` lines) plus exception events
(``recurringEventId`` + ``originalStartTime``, ``status: "cancelled"`` for a deleted
occurrence); the bridge holds it as one VCALENDAR (master + RECURRENCE-ID overrides). Both
directions go through :func:`bridge.ical.parse_object` / :func:`bridge.ical.render_object` so
that what Google gives back is read exactly like what a phone sends.

What Google cannot carry in our mapping: CONTACT, alarms, attendees, X- properties and any
other ``extra_ics`` line. :func:`content_key` leaves them out, so a round trip through Google
keeps the key; the caller must merge them back from the local copy when it pulls.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from icalendar import Event

from bridge.ical import EventData, ParsedObject, parse_object, render_object
from bridge.ical.content import (
    RULE_PROPS,
    UNTIL_FMT,
    canonical_rule,
    master_local_start,
    occurrence_keys,
    prop_list,
    rid_zone,
    series_shape,
    series_zone,
)
from bridge.ical.future import refuse_future
from bridge.ical.timezones import (
    date_to_utc,
    iana_name,
    rid_instant,
    rid_key,
    rid_value,
    to_utc,
    utc_to_date,
    utc_to_local,
    zone,
)

_TO_ICAL_STATUS = {"confirmed": "CONFIRMED", "tentative": "TENTATIVE", "cancelled": "CANCELLED"}
_TO_GOOGLE_STATUS = {v: k for k, v in _TO_ICAL_STATUS.items()}
_DATE_PROPS = ("RDATE", "EXDATE")


# ---------------------------------------------------------------- Google → iCalendar

def google_to_ics(master: dict[str, Any], exceptions: list[dict[str, Any]],
                  calendar_tz: str) -> str:
    """One VCALENDAR (VTIMEZONEs included) for a Google event and its exceptions.

    ``calendar_tz`` is the Google calendar's zone: it places all-day dates and floating
    date-times. Cancelled exceptions become EXDATEs on the master; the others become
    RECURRENCE-ID overrides. The text is accepted by :func:`bridge.ical.parse_object`.
    """
    uid = master.get("iCalUID") or f"{master['id']}@google.com"
    event = _event_data(master, calendar_tz)
    lines = [str(line) for line in master.get("recurrence") or []]
    if not lines:  # a single event: exceptions cannot exist without a series
        return render_object(uid, event, default_tz=calendar_tz, dtstamp=_stamp(master))
    series_tz = series_zone(event, calendar_tz)
    start_local = master_local_start(event, series_tz)
    source = Event.from_ical("BEGIN:VEVENT\r\n" + "\r\n".join(lines) + "\r\nEND:VEVENT\r\n")
    extras = Event()
    for name in RULE_PROPS:
        for rule in prop_list(source, name):
            extras.add(name, canonical_rule(rule, event.all_day, series_tz, until_day_end=True))
    rdates = occurrence_keys(source, "RDATE", event.all_day, series_tz, start_local)
    if rdates:
        extras.add("RDATE", [rid_value(k, rid_zone(event), calendar_tz) for k in sorted(rdates)])
    exdates = occurrence_keys(source, "EXDATE", event.all_day, series_tz, start_local)
    overrides: dict[str, EventData] = {}
    for exception in exceptions:
        key = recurrence_key(_original_start(exception, master), series_tz)
        if event.all_day and len(key) != 8:
            key = utc_to_date(rid_instant(key, series_tz), series_tz).strftime("%Y%m%d")
        if exception.get("status") == "cancelled":
            exdates.add(key)
            overrides.pop(key, None)
        else:
            overrides[key] = _event_data(exception, calendar_tz).with_changes(recurrence_id=key)
            exdates.discard(key)  # Google shows an exception even on an EXDATE
    extra_ics = extras.to_ical(sorted=False).decode("utf-8") if extras else ""
    return render_object(uid, event.with_changes(extra_ics=extra_ics), overrides.values(),
                         default_tz=calendar_tz, dtstamp=_stamp(master), exdates=exdates,
                         open_ended=True)


def recurrence_key(original_start: dict[str, Any], series_tz: str) -> str:
    """The recurrence-id key (``EventData.recurrence_id`` form) of a Google original start.

    UTC ``YYYYMMDDTHHMMSSZ`` for a date-time, ``YYYYMMDD`` for a date; ``series_tz`` places
    a date-time that has neither offset nor ``timeZone``.
    """
    if original_start.get("date"):
        return date.fromisoformat(original_start["date"]).strftime("%Y%m%d")
    value = datetime.fromisoformat(original_start["dateTime"])
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(original_start.get("timeZone") or series_tz))
    return rid_key(value, series_tz)


def instance_id(master_id: str, original_start: dict[str, Any], all_day: bool) -> str:
    """Google's id of one instance of series ``master_id``: patch it to make an exception.

    ``{master}_{YYYYMMDDTHHMMSSZ}`` (UTC) for a timed series, ``{master}_{YYYYMMDD}`` for an
    all-day one, as Google (and tests/fakes/google_calendar.py) names them.
    """
    if all_day:
        if original_start.get("date"):
            day = date.fromisoformat(original_start["date"])
        else:
            value = datetime.fromisoformat(original_start["dateTime"])
            if value.tzinfo is not None and original_start.get("timeZone"):
                value = value.astimezone(zone(original_start["timeZone"]))
            day = value.date()
        return f"{master_id}_{day.strftime('%Y%m%d')}"
    if not original_start.get("dateTime"):
        raise ValueError("a timed series instance needs originalStartTime.dateTime")
    value = datetime.fromisoformat(original_start["dateTime"])
    if value.tzinfo is None:
        tz = original_start.get("timeZone")
        if not tz:
            raise ValueError("originalStartTime.dateTime has no offset and no timeZone")
        value = value.replace(tzinfo=zone(tz))
    return f"{master_id}_{value.astimezone(UTC).strftime(UNTIL_FMT)}"


def _event_data(ev: dict[str, Any], calendar_tz: str) -> EventData:
    """The columns of one Google event (master or exception)."""
    start_value, tzid = _google_time(ev["start"], calendar_tz)
    end_value, _ = _google_time(ev.get("end") or ev["start"], calendar_tz)
    all_day = not isinstance(start_value, datetime)
    if all_day:
        start = date_to_utc(start_value, calendar_tz)
        end = date_to_utc(end_value if not isinstance(end_value, datetime)
                          else end_value.date(), calendar_tz)
        tzid = calendar_tz
    else:
        if not isinstance(end_value, datetime):  # Google refuses it; never crash on it
            end_value = datetime.combine(end_value, time(), start_value.tzinfo)
        start, end = to_utc(start_value), to_utc(end_value)
    return EventData(
        start=start, end=max(start, end), tzid=tzid, all_day=all_day,
        subject=ev.get("summary") or "", notes=ev.get("description") or "",
        location=ev.get("location") or "",
        status=_TO_ICAL_STATUS.get(ev.get("status") or "confirmed", "CONFIRMED"),
    )


def _google_time(value: dict[str, Any], calendar_tz: str) -> tuple[date | datetime, str]:
    """An EventDateTime as a date, or an aware date-time and the zone it is shown in.

    The event's own ``timeZone`` wins; an offset without it means UTC; neither means the
    calendar's zone (Google refuses that on write, but be lenient on read).
    """
    if value.get("date"):
        return date.fromisoformat(value["date"]), calendar_tz
    moment = datetime.fromisoformat(value["dateTime"])
    name = value.get("timeZone")
    if name:
        tz = zone(name)
        moment = moment.astimezone(tz) if moment.tzinfo else moment.replace(tzinfo=tz)
        return moment, iana_name(tz) or name
    if moment.tzinfo is not None:
        return moment.astimezone(UTC), "UTC"
    return moment.replace(tzinfo=zone(calendar_tz)), calendar_tz


def _original_start(exception: dict[str, Any], master: dict[str, Any]) -> dict[str, Any]:
    """``originalStartTime``, or what the instance id says when a listing left it out."""
    found = exception.get("originalStartTime")
    if found:
        return found
    stamp = str(exception.get("id", "")).rpartition("_")[2]
    if len(stamp) == 8:
        return {"date": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}"}
    try:
        moment = datetime.strptime(stamp, UNTIL_FMT).replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"exception {exception.get('id')!r} of {master.get('id')!r} has no "
                         "originalStartTime") from exc
    return {"dateTime": moment.isoformat()}


def _stamp(ev: dict[str, Any]) -> datetime | None:
    """DTSTAMP from Google's ``updated`` (naive UTC), when there is one."""
    try:
        return to_utc(datetime.fromisoformat(ev["updated"]))
    except (KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- iCalendar → Google

def ics_to_google(ics: str | ParsedObject, default_tz: str = "Europe/Paris"
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Bodies for Google: the master (events.insert/update) and one per moved/edited occurrence.

    Each exception body carries ``originalStartTime``; write it with events.update/patch on
    :func:`instance_id`. Cancelled overrides and deleted occurrences are EXDATEs in the
    master's ``recurrence``, never exception bodies. ``default_tz`` places floating times (and
    is the zone the object's all-day dates are read in). A master whose STATUS is CANCELLED
    gets ``status: "cancelled"``: Google means deletion by that, so the caller deletes instead.
    Every text field is present (possibly empty) and ``recurrence`` is always a list, so the
    body also clears them when used with events.patch.
    """
    parsed = ics if isinstance(ics, ParsedObject) else parse_object(ics, default_tz)
    if reason := refuse_future(parsed.series_ics):
        raise ValueError(reason)
    event = parsed.master
    body: dict[str, Any] = {"iCalUID": parsed.uid, **event_fields(event, default_tz)}
    body["recurrence"] = []
    if not parsed.is_series:
        return body, []
    shape = series_shape(parsed, default_tz)
    series_tz, rdates, exdates = shape.zone, shape.rdates, shape.exdates
    recurrence = [f"{name}:{rule.to_ical().decode('ascii')}" for name, rule in shape.rules]
    for name, keys in (("RDATE", rdates), ("EXDATE", exdates)):
        if keys:
            recurrence.append(_dates_line(name, keys, event.all_day, series_tz))
    body["recurrence"] = recurrence
    exceptions = []
    for override in sorted(parsed.overrides, key=lambda o: o.recurrence_id or ""):
        if override.status == "CANCELLED" or override.recurrence_id in exdates:
            continue
        exceptions.append({
            "originalStartTime": original_start_body(override.recurrence_id, event,
                                                      series_tz),
            **event_fields(override, default_tz)})
    return body, exceptions


def event_fields(event: EventData, default_tz: str) -> dict[str, Any]:
    """start/end/texts/status of one event as Google wants them (start and end in one zone)."""
    if event.all_day:
        tz = event.tzid or default_tz
        start = {"date": utc_to_date(event.start, tz).isoformat()}
        end = {"date": utc_to_date(event.end, tz).isoformat()}
    else:
        tz = event.tzid or default_tz
        start = {"dateTime": utc_to_local(event.start, tz).isoformat(), "timeZone": tz}
        end = {"dateTime": utc_to_local(event.end, tz).isoformat(), "timeZone": tz}
    return {"summary": event.subject, "description": event.notes, "location": event.location,
            "start": start, "end": end, "status": _TO_GOOGLE_STATUS[event.status]}


def original_start_body(key: str, master: EventData, series_tz: str) -> dict[str, Any]:
    """Google's ``originalStartTime`` for a recurrence-id key, in the series' zone."""
    if master.all_day:
        if len(key) != 8:
            key = utc_to_date(rid_instant(key, series_tz), series_tz).strftime("%Y%m%d")
        return {"date": datetime.strptime(key, "%Y%m%d").date().isoformat()}
    instant = rid_instant(key, series_tz)  # a date key on a timed series: midnight there
    return {"dateTime": utc_to_local(instant, series_tz).isoformat(), "timeZone": series_tz}


def _dates_line(name: str, keys: set[str], all_day: bool, series_tz: str) -> str:
    """One RDATE/EXDATE line in the series' zone (DATE values for an all-day series)."""
    keys_sorted = sorted(keys)
    if all_day:
        return f"{name};VALUE=DATE:" + ",".join(keys_sorted)
    if series_tz == "UTC":
        return f"{name}:" + ",".join(keys_sorted)
    local = [utc_to_local(rid_instant(k, series_tz), series_tz).strftime("%Y%m%dT%H%M%S")
             for k in keys_sorted]
    return f"{name};TZID={series_tz}:" + ",".join(local)


