"""Microsoft Graph event JSON ↔ one calendar object (a VCALENDAR of one UID), pure.

Graph holds a series as a master (``type: seriesMaster`` with a ``recurrence`` *pattern*,
not an RRULE) and its instances (``occurrence`` / ``exception``, each with ``originalStart``
in UTC); a deleted occurrence simply no longer exists. The bridge holds one VCALENDAR
(master + RECURRENCE-ID overrides + EXDATEs). Both directions go through
:func:`bridge.ical.parse_object` / :func:`bridge.ical.render_object`, so what Graph gives
back is read exactly as what a phone sends.

What Gestan owns and writes: subject, body (as text), location (its display name),
start/end with their zone, isAllDay, recurrence, and ``showAs`` (TENTATIVE ↔ tentative,
anything else busy). Never attendees: Graph would mail invitations. Everything else Graph
holds (categories, importance, sensitivity, reminders, online meetings) is left as it is.

Patterns Graph cannot express (hourly and finer, several BYMONTHDAY, BYSETPOS other than
1..4/-1, BYYEARDAY/BYWEEKNO, RDATE, EXRULE, several rules) raise :class:`Unsupported` with
the reason: the target answers REJECTED and the run reports the appointment as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from icalendar import Event, vRecur

from bridge.ical import EventData, ParsedObject, parse_object, render_object
from bridge.ical.content import (
    master_local_start,
    series_shape,
    series_zone,
)
from bridge.ical.future import refuse_future
from bridge.ical.series import master_component
from bridge.ical.timezones import (
    date_to_utc,
    is_iana,
    rid_instant,
    to_utc,
    utc_to_date,
    utc_to_local,
    zone,
)

try:  # exchangelib (a dependency) ships CLDR's Windows ↔ IANA table
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP as _WINDOWS_TO_IANA
except ImportError:  # pragma: no cover - the zones Outlook users meet most
    _WINDOWS_TO_IANA = {"Romance Standard Time": "Europe/Paris",
                        "W. Europe Standard Time": "Europe/Berlin",
                        "GMT Standard Time": "Europe/London", "UTC": "UTC"}

DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
ICAL_DAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
INDEX_OF = {1: "first", 2: "second", 3: "third", 4: "fourth", -1: "last"}
POSITION_OF = {v: k for k, v in INDEX_OF.items()}
KEY_FMT = "%Y%m%dT%H%M%SZ"
GRAPH_DT = "%Y-%m-%dT%H:%M:%S"


class Unsupported(ValueError):
    """Graph cannot hold this object as it is; the message says why (shown to the user)."""


# ---------------------------------------------------------------- zones

def iana_zone(name: str | None, default_tz: str) -> str:
    """A Graph zone name (Windows or IANA, as Graph accepts both) as an IANA name."""
    if not name:
        return default_tz
    if name in ("UTC", "Etc/UTC", "tzone://Microsoft/Utc", "Coordinated Universal Time"):
        return "UTC"
    if is_iana(name):
        return name
    return _WINDOWS_TO_IANA.get(name, default_tz)


def parse_graph_time(value: dict[str, Any]) -> datetime:
    """A dateTimeTimeZone as naive UTC (Graph answers in the Prefer'd zone, UTC here)."""
    wall = datetime.fromisoformat(value["dateTime"][:19])
    tz = iana_zone(value.get("timeZone"), "UTC")
    return to_utc(wall.replace(tzinfo=zone(tz)))


def original_key(original_start: str, all_day: bool, series_tz: str) -> str:
    """The recurrence-id key of a Graph ``originalStart`` (UTC, ``...Z``)."""
    moment = datetime.fromisoformat(original_start.replace("Z", "+00:00")[:25])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if all_day:
        if moment.astimezone(UTC).time() == time(0):
            return moment.astimezone(UTC).strftime("%Y%m%d")
        return moment.astimezone(zone(series_tz)).strftime("%Y%m%d")
    return moment.astimezone(UTC).strftime(KEY_FMT)


# ---------------------------------------------------------------- Graph → iCalendar

def event_data(ev: dict[str, Any], default_tz: str) -> EventData:
    """The columns of one Graph event (single, master, occurrence or exception)."""
    tz = iana_zone(ev.get("originalStartTimeZone"), default_tz)
    all_day = bool(ev.get("isAllDay"))
    if all_day:
        first = date.fromisoformat(ev["start"]["dateTime"][:10])
        last = date.fromisoformat(ev["end"]["dateTime"][:10])
        start, end = date_to_utc(first, tz), date_to_utc(max(last, first), tz)
    else:
        start, end = parse_graph_time(ev["start"]), parse_graph_time(ev["end"])
    body = ev.get("body") or {}
    notes = body.get("content") or ""
    return EventData(
        start=start, end=max(start, end), tzid=tz, all_day=all_day,
        subject=ev.get("subject") or "", notes=notes.replace("\r\n", "\n"),
        location=((ev.get("location") or {}).get("displayName") or ""),
        status="TENTATIVE" if ev.get("showAs") == "tentative" else "CONFIRMED")


def recurrence_rule(recurrence: dict[str, Any], all_day: bool, series_tz: str,
                    local_start: datetime) -> vRecur:
    """A Graph pattern + range as an RRULE (UNTIL: the end of the range's last day)."""
    pattern, rng = recurrence["pattern"], recurrence["range"]
    kind = pattern["type"]
    rule = vRecur()
    rule["FREQ"] = {"daily": "DAILY", "weekly": "WEEKLY"}.get(
        kind, "MONTHLY" if "Monthly" in kind else "YEARLY")
    if int(pattern.get("interval") or 1) != 1:
        rule["INTERVAL"] = int(pattern["interval"])
    days = [ICAL_DAYS[DAYS.index(d.lower())] for d in pattern.get("daysOfWeek") or []]
    if kind == "weekly":
        if days != [ICAL_DAYS[local_start.weekday()]]:  # the default is left implicit
            rule["BYDAY"] = days
        first = (pattern.get("firstDayOfWeek") or "sunday").lower()
        if first != "monday":
            rule["WKST"] = ICAL_DAYS[DAYS.index(first)]
    elif kind.startswith("absolute"):
        day = int(pattern.get("dayOfMonth") or local_start.day)
        if day != local_start.day:
            rule["BYMONTHDAY"] = day
    elif kind.startswith("relative"):
        position = POSITION_OF[pattern.get("index") or "first"]
        if len(days) == 1:
            rule["BYDAY"] = [f"{position}{days[0]}"]
        else:
            rule["BYDAY"] = days
            rule["BYSETPOS"] = position
    if kind.endswith("Yearly"):
        month = int(pattern.get("month") or local_start.month)
        if month != local_start.month or "BYDAY" in rule or "BYMONTHDAY" in rule:
            rule["BYMONTH"] = month
    if rng["type"] == "numbered":
        rule["COUNT"] = int(rng["numberOfOccurrences"])
    elif rng["type"] == "endDate":
        last = date.fromisoformat(rng["endDate"][:10])
        if all_day:
            rule["UNTIL"] = last
        else:
            end_of_day = datetime.combine(last, time(23, 59, 59)).replace(tzinfo=zone(series_tz))
            rule["UNTIL"] = end_of_day.astimezone(UTC)
    return rule


@dataclass
class SeriesReading:
    """What the target read of a series: its master and the instances that tell its
    exceptions and cancellations apart (``cancelled``: recurrence-id keys)."""

    master: dict[str, Any]
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    cancelled: set[str] = field(default_factory=set)


def series_start(master: dict[str, Any], default_tz: str) -> EventData:
    """The master's columns with its start on the range's first day (Graph's master
    ``start`` is the first occurrence's; the range's ``startDate`` is what repeats)."""
    event = event_data(master, default_tz)
    rng = (master.get("recurrence") or {}).get("range") or {}
    if not rng.get("startDate"):
        return event
    tz = series_zone(event, default_tz)
    day = date.fromisoformat(rng["startDate"][:10])
    length = event.end - event.start
    if event.all_day:
        start = date_to_utc(day, tz)
        end = date_to_utc(day + timedelta(days=max(1, round(length / timedelta(days=1)))), tz)
        return event.with_changes(start=start, end=end)
    wall = utc_to_local(event.start, tz)
    start = to_utc(datetime.combine(day, wall.time()).replace(tzinfo=zone(tz)))
    return event.with_changes(start=start, end=start + length)


def master_ics(master: dict[str, Any], uid: str, default_tz: str) -> str:
    """The series master alone (its RRULE, no exceptions): what it generates."""
    return graph_to_ics(SeriesReading(master), uid, default_tz)


def graph_to_ics(reading: SeriesReading | dict[str, Any], uid: str, default_tz: str) -> str:
    """One VCALENDAR for a Graph single event, or for a series as read."""
    if isinstance(reading, dict):
        return render_object(uid, event_data(reading, default_tz), default_tz=default_tz,
                             dtstamp=_stamp(reading))
    master = reading.master
    event = series_start(master, default_tz)
    tz = series_zone(event, default_tz)
    rule = recurrence_rule(master["recurrence"], event.all_day, tz,
                           master_local_start(event, tz))
    extras = Event()
    extras.add("RRULE", rule)
    event = event.with_changes(extra_ics=extras.to_ical(sorted=False).decode("utf-8"))
    overrides = {}
    for item in reading.exceptions:
        key = original_key(item["originalStart"], event.all_day, tz)
        overrides[key] = event_data(item, default_tz).with_changes(recurrence_id=key)
    exdates = set(reading.cancelled) - set(overrides)
    open_ended = master["recurrence"]["range"]["type"] == "noEnd"
    return render_object(uid, event, overrides.values(), default_tz=default_tz,
                         dtstamp=_stamp(master), exdates=exdates, open_ended=open_ended)


def _stamp(ev: dict[str, Any]) -> datetime | None:
    try:
        return to_utc(datetime.fromisoformat(ev["lastModifiedDateTime"][:19] + "+00:00"))
    except (KeyError, TypeError, ValueError):
        return None


# ---------------------------------------------------------------- iCalendar → Graph

def graph_time(instant: datetime, tz: str) -> dict[str, str]:
    """A naive UTC instant as Graph's dateTimeTimeZone, wall time in ``tz`` (IANA: Graph
    accepts IANA names as well as Windows ones, and keeps the name, so it reads back)."""
    return {"dateTime": utc_to_local(instant, tz).strftime(GRAPH_DT), "timeZone": tz}


def event_fields(event: EventData, default_tz: str) -> dict[str, Any]:
    """The fields Gestan owns, for a POST or a PATCH (never attendees)."""
    if event.status == "CANCELLED":
        raise Unsupported("a cancelled appointment (STATUS:CANCELLED) is not pushed: Outlook "
                          "has no cancelled state for an event of one's own")
    tz = event.tzid or default_tz
    if event.all_day:
        first = utc_to_date(event.start, tz)
        last = max(utc_to_date(event.end, tz), first + timedelta(days=1))
        start = {"dateTime": f"{first.isoformat()}T00:00:00", "timeZone": tz}
        end = {"dateTime": f"{last.isoformat()}T00:00:00", "timeZone": tz}
    else:
        start, end = graph_time(event.start, tz), graph_time(event.end, tz)
    return {"subject": event.subject, "body": {"contentType": "text", "content": event.notes},
            "location": {"displayName": event.location}, "start": start, "end": end,
            "isAllDay": event.all_day,
            "showAs": "tentative" if event.status == "TENTATIVE" else "busy"}


def recurrence_body(parsed: ParsedObject, default_tz: str) -> dict[str, Any]:
    """A series' RRULE as Graph's pattern + range, or :class:`Unsupported` with the reason."""
    master = parsed.master
    component = master_component(parsed.series_ics)
    if component.get("RDATE") is not None or component.get("EXRULE") is not None:
        raise Unsupported("Outlook cannot hold extra dates (RDATE) or exclusion rules (EXRULE)")
    rules = component.get("RRULE")
    if rules is None:
        raise Unsupported("a series without RRULE cannot be held by Outlook")
    if isinstance(rules, list):
        if len(rules) != 1:
            raise Unsupported("Outlook holds one recurrence rule per series, not several")
        rules = rules[0]
    shape = series_shape(parsed, default_tz)
    [(_, rule)] = [r for r in shape.rules if r[0] == "RRULE"] or [("", rules)]
    tz = shape.zone
    local = master_local_start(master, tz)
    return _pattern(rule, master.all_day, tz, local)


def _one(rule: vRecur, name: str) -> Any:
    value = rule.get(name)
    if isinstance(value, list):
        return value[0] if len(value) == 1 else value
    return value


def _pattern(rule: vRecur, all_day: bool, tz: str, local: datetime) -> dict[str, Any]:
    freq = str(_one(rule, "FREQ") or "").upper()
    unsupported = [p for p in ("BYHOUR", "BYMINUTE", "BYSECOND", "BYYEARDAY", "BYWEEKNO")
                   if rule.get(p)]
    if freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        raise Unsupported(f"Outlook cannot repeat {freq or 'without FREQ'} (daily at most)")
    if unsupported:
        raise Unsupported(f"Outlook cannot express {', '.join(unsupported)} in a series")
    interval = int(_one(rule, "INTERVAL") or 1)
    byday = [str(d).upper() for d in (rule.get("BYDAY") or [])]
    monthdays = [int(d) for d in (rule.get("BYMONTHDAY") or [])]
    months = [int(m) for m in (rule.get("BYMONTH") or [])]
    setpos = [int(p) for p in (rule.get("BYSETPOS") or [])]
    wkst = str(_one(rule, "WKST") or "MO").upper()
    pattern: dict[str, Any] = {"interval": interval, "firstDayOfWeek":
                               DAYS[ICAL_DAYS.index(wkst)]}

    def plain_days() -> list[str]:
        if any(len(d) != 2 for d in byday):
            raise Unsupported(f"Outlook cannot express BYDAY={','.join(byday)} with {freq}")
        return [DAYS[ICAL_DAYS.index(d)] for d in byday]

    if len(months) > 1:
        raise Unsupported("Outlook repeats a yearly series in one month only (several BYMONTH)")
    if len(monthdays) > 1:
        raise Unsupported("Outlook repeats on one day of the month only (several BYMONTHDAY)")
    if monthdays and monthdays[0] < 0:
        raise Unsupported("Outlook cannot count days from the end of the month (BYMONTHDAY<0)")
    if freq == "DAILY":
        if setpos or monthdays or months:
            raise Unsupported("Outlook cannot restrict a daily series by month or position")
        if byday:
            if interval != 1:
                raise Unsupported("Outlook cannot repeat every N days on chosen weekdays")
            pattern.update(type="weekly", daysOfWeek=plain_days())
        else:
            pattern["type"] = "daily"
    elif freq == "WEEKLY":
        if setpos or monthdays or months:
            raise Unsupported("Outlook cannot restrict a weekly series by month or position")
        pattern.update(type="weekly", daysOfWeek=plain_days() or [DAYS[local.weekday()]])
    else:
        yearly = freq == "YEARLY"
        prefix = "Yearly" if yearly else "Monthly"
        if yearly:
            pattern["month"] = months[0] if months else local.month
        elif months:
            raise Unsupported("Outlook cannot restrict a monthly series to some months")
        if byday:
            if monthdays:
                raise Unsupported("Outlook cannot combine BYDAY and BYMONTHDAY")
            position, days = _relative(byday, setpos)
            pattern.update(type=f"relative{prefix}", daysOfWeek=days,
                           index=INDEX_OF[position])
        else:
            if setpos:
                raise Unsupported("BYSETPOS without BYDAY cannot be held by Outlook")
            pattern.update(type=f"absolute{prefix}",
                           dayOfMonth=monthdays[0] if monthdays else local.day)
    return {"pattern": pattern, "range": _range(rule, all_day, tz, local)}


def _relative(byday: list[str], setpos: list[int]) -> tuple[int, list[str]]:
    """(position, weekdays) of "the 2nd Tuesday" / "the last weekday" forms."""
    ordinals = {d[:-2] for d in byday}
    days = [DAYS[ICAL_DAYS.index(d[-2:])] for d in byday]
    if setpos:
        if len(setpos) != 1 or ordinals != {""}:
            raise Unsupported("Outlook holds one BYSETPOS over plain weekdays only")
        position = setpos[0]
    elif len(ordinals) == 1 and "" not in ordinals:
        position = int(ordinals.pop().lstrip("+"))
    else:
        raise Unsupported("Outlook needs one position for a monthly/yearly weekday series "
                          f"(BYDAY={','.join(byday)})")
    if position not in INDEX_OF:
        raise Unsupported(f"Outlook counts weekdays 1st to 4th or last, not {position}")
    return position, days


def _range(rule: vRecur, all_day: bool, tz: str, local: datetime) -> dict[str, Any]:
    start_day = local.date().isoformat()
    count = _one(rule, "COUNT")
    until = _one(rule, "UNTIL")
    if count:
        return {"type": "numbered", "startDate": start_day,
                "numberOfOccurrences": int(count), "recurrenceTimeZone": tz}
    if until:
        if isinstance(until, datetime):
            value = until if until.tzinfo else until.replace(tzinfo=zone(tz))
            last = value.astimezone(zone(tz)).date()
        else:
            last = until
        return {"type": "endDate", "startDate": start_day, "endDate": last.isoformat(),
                "recurrenceTimeZone": tz}
    return {"type": "noEnd", "startDate": start_day, "recurrenceTimeZone": tz}


@dataclass
class SeriesPlan:
    """What to write for a series: the master's body, then per occurrence (recurrence-id
    key) the exception's fields, and the occurrences to delete."""

    master: dict[str, Any]
    exceptions: dict[str, dict[str, Any]]
    cancelled: set[str]
    all_day: bool
    zone: str


def to_graph(ics: str | ParsedObject, default_tz: str) -> tuple[dict[str, Any],
                                                               SeriesPlan | None]:
    """The master/single body for Graph and, for a series, its plan of occurrences.
    :class:`Unsupported` when Graph cannot hold it."""
    parsed = ics if isinstance(ics, ParsedObject) else parse_object(ics, default_tz)
    if reason := refuse_future(parsed.series_ics):
        raise Unsupported(reason)
    body = event_fields(parsed.master, default_tz)
    if not parsed.is_series:
        return body, None
    body["recurrence"] = recurrence_body(parsed, default_tz)
    shape = series_shape(parsed, default_tz)
    exceptions = {}
    for override in parsed.overrides:
        key = override.recurrence_id or ""
        if override.status == "CANCELLED" or key in shape.exdates:
            continue
        exceptions[_plain_key(key, parsed.master.all_day, shape.zone)] = event_fields(
            override, default_tz)
    cancelled = {_plain_key(k, parsed.master.all_day, shape.zone) for k in shape.exdates}
    return body, SeriesPlan(body, exceptions, cancelled, parsed.master.all_day, shape.zone)


def _plain_key(key: str, all_day: bool, tz: str) -> str:
    """A recurrence-id key of the series' own kind (a date for an all-day series)."""
    if all_day and len(key) != 8:
        return utc_to_date(rid_instant(key, tz), tz).strftime("%Y%m%d")
    return key
