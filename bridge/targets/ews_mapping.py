"""Exchange calendar items (exchangelib) ↔ one calendar object (a VCALENDAR of one UID), pure.

Exchange holds a series as a recurring master (a *pattern* and a *range*) with modified
occurrences (exceptions, each an item of its own keyed by its original start) and deleted
occurrences; the bridge holds it as one VCALENDAR (master with RRULE, RECURRENCE-ID overrides,
EXDATEs). Both directions go through :func:`bridge.ical.parse_object` /
:func:`bridge.ical.render_object`, so that what Exchange gives back is read exactly like what
a phone sends.

What Exchange's pattern model cannot express is refused (:class:`Unsupported`, reported as a
skipped appointment with the reason) rather than approximated: HOURLY (and finer) rules,
several BYMONTHDAY or BYMONTH values, BYSETPOS (but for the "first/last weekday" forms
Exchange itself has), BYYEARDAY/BYWEEKNO, yearly rules with an INTERVAL, EXRULE and RDATE,
a monthly day 29-31 (Exchange moves it to the last day of shorter months, an RRULE skips
them), a DTSTART that is not the rule's first occurrence, more than 999 occurrences.

Round trips: Exchange keeps times in UTC with a Windows zone id, and a pattern rather than
an RRULE text; several IANA zones share one Windows id and several RRULE spellings one
pattern. So the zone and the rule we wrote are stamped beside them (extended properties
``gestanZone``/``gestanRule``) and read back while Exchange still holds what they describe;
an edit in Outlook that changes them makes us read Exchange's own values instead.

Carried: title, notes (plain text; an HTML body is read as text), place, start/end and zone,
all-day, recurrence, and TENTATIVE as "show as Tentative". Not carried (kept in Gestan):
CONTACT, alarms, attendees, categories, X- properties. Outlook's own fields (categories,
importance, sensitivity, reminders, online meeting) are never written, so they survive.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from dateutil import rrule as du
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone, ExtendedProperty
from exchangelib.properties import HTMLBody
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)
from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP
from icalendar import vRecur

from bridge.ical import EventData, ParsedObject, render_object
from bridge.ical import series as ical_series
from bridge.ical.content import (
    CANCELLED,
    MASTER,
    content_of,
    prop_list,
    series_shape,
    series_zone,
)
from bridge.ical.future import refuse_future
from bridge.ical.timezones import (
    date_to_utc,
    is_iana,
    rid_instant,
    to_utc,
    utc_to_date,
    utc_to_local,
)

# Our named properties live in a property set of our own (a fixed GUID, never changed).
PROPERTY_SET_ID = "6f1a3d52-4c1e-4b0e-9a57-2f6b8e4d9c31"
WEEKDAY_CODES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")   # exchangelib: 1 = Monday
WEEK_NUMBERS = (1, 2, 3, 4, -1)                               # First..Fourth, Last
GROUPS = {8: WEEKDAY_CODES, 9: WEEKDAY_CODES[:5], 10: WEEKDAY_CODES[5:]}  # Day, Weekday, WeekendDay
MAX_COUNT = 999   # NumberedRecurrence's limit


class Unsupported(ValueError):
    """An object Exchange cannot hold as it means (the reason is shown to the user)."""


class GestanUid(ExtendedProperty):
    """The Gestan UID stamped on every item we create: how a retried create is found."""

    property_set_id = PROPERTY_SET_ID
    property_name = "gestanUid"
    property_type = "String"


class GestanRule(ExtendedProperty):
    """The RRULE as Gestan wrote it (Exchange keeps a pattern, not the text)."""

    property_set_id = PROPERTY_SET_ID
    property_name = "gestanRule"
    property_type = "String"


class GestanZone(ExtendedProperty):
    """The IANA zone Gestan wrote (Exchange keeps a Windows id shared by several zones)."""

    property_set_id = PROPERTY_SET_ID
    property_name = "gestanZone"
    property_type = "String"


# exchangelib field names (distinct from anything a test or another tool may register)
UID_FIELD, RULE_FIELD, ZONE_FIELD = "gestan_bridge_uid", "gestan_bridge_rule", "gestan_bridge_zone"
_PROPERTIES = {UID_FIELD: GestanUid, RULE_FIELD: GestanRule, ZONE_FIELD: GestanZone}


def register_properties() -> None:
    """Register our extended properties on CalendarItem (process-wide, once)."""
    for name, cls in _PROPERTIES.items():
        try:
            CalendarItem.get_field_by_fieldname(name)
        except Exception:  # noqa: BLE001 - exchangelib raises InvalidField when absent
            CalendarItem.register(name, cls)


# ---------------------------------------------------------------- iCalendar → Exchange

@dataclass
class ItemFields:
    """What Gestan owns of one item or occurrence, as exchangelib field values."""

    subject: str
    body: str
    location: str | None
    start: EWSDateTime | EWSDate
    end: EWSDateTime | EWSDate
    is_all_day: bool
    zone: EWSTimeZone
    tentative: bool
    recurrence: Recurrence | None = None
    rule: str | None = None
    zone_name: str | None = None

    # the exchangelib field names an update of these fields writes
    NAMES = ("subject", "body", "location", "start", "end", "is_all_day", "_start_timezone",
             "_end_timezone")

    def apply(self, item: CalendarItem) -> None:
        item.subject, item.body, item.location = self.subject, self.body, self.location
        item.start, item.end, item.is_all_day = self.start, self.end, self.is_all_day
        item._start_timezone = item._end_timezone = self.zone
        if self.recurrence is not None:
            item.recurrence = self.recurrence
        setattr(item, ZONE_FIELD, self.zone_name)
        if self.recurrence is not None or self.rule is not None:
            setattr(item, RULE_FIELD, self.rule)


def event_fields(event: EventData, default_tz: str) -> ItemFields:
    """One event (a single, a master or an override) as Exchange fields."""
    name = event.tzid if event.tzid and event.tzid != "UTC" and is_iana(event.tzid) else (
        "UTC" if event.tzid == "UTC" else default_tz)
    zone = EWSTimeZone(name)
    if event.all_day:
        first = utc_to_date(event.start, event.tzid or default_tz)
        last = utc_to_date(event.end, event.tzid or default_tz) - timedelta(days=1)
        start: EWSDateTime | EWSDate = EWSDate.from_date(first)
        end: EWSDateTime | EWSDate = EWSDate.from_date(max(first, last))  # inclusive
    else:
        start = EWSDateTime.from_datetime(utc_to_local(event.start, name)).astimezone(zone)
        end = EWSDateTime.from_datetime(utc_to_local(event.end, name)).astimezone(zone)
    return ItemFields(subject=event.subject, body=event.notes, location=event.location or None,
                      start=start, end=end, is_all_day=event.all_day, zone=zone,
                      tentative=event.status == "TENTATIVE", zone_name=name)


@dataclass
class SeriesPlan:
    """A series as Exchange writes it: the master, then one write per occurrence that is
    not what the master generates (an override's fields, or None: delete it)."""

    master: ItemFields
    occurrences: dict[str, ItemFields | None]   # recurrence-id key → fields / None
    indexes: dict[str, int]                      # recurrence-id key → InstanceIndex


def object_plan(parsed: ParsedObject, default_tz: str) -> SeriesPlan:
    """How to write one object (a single: no occurrences); :class:`Unsupported` when its
    recurrence has no Exchange pattern."""
    if reason := refuse_future(parsed.series_ics):
        raise Unsupported(reason)
    master = event_fields(parsed.master, default_tz)
    if not parsed.is_series:
        return SeriesPlan(master, {}, {})
    rule_text, recurrence, expander = recurrence_of(parsed, default_tz)
    master.recurrence, master.rule = recurrence, rule_text
    parts = content_of(parsed, default_tz).parts
    overrides = {o.recurrence_id: o for o in parsed.overrides}
    occurrences: dict[str, ItemFields | None] = {}
    indexes: dict[str, int] = {}
    for key, part in sorted(parts.items()):
        if key == MASTER:
            continue
        index = expander.index(key)
        if index is None:
            continue  # an EXDATE of no occurrence, or an override of none: nothing there
        indexes[key] = index
        override = overrides.get(key)
        occurrences[key] = None if part == CANCELLED or override is None else event_fields(
            override, default_tz)
    return SeriesPlan(master, occurrences, indexes)


class Expander:
    """The occurrences of a rule in the series' wall time: Exchange's InstanceIndex of an
    original start (1-based, deleted occurrences counted) and the rule's last occurrence."""

    def __init__(self, rule: vRecur, start_local: datetime, all_day: bool, zone_name: str
                 ) -> None:
        self.all_day, self.zone_name, self.start_local = all_day, zone_name, start_local
        text = rule.to_ical().decode("ascii")
        parts = [p for p in text.split(";") if not p.upper().startswith("UNTIL=")]
        self.rule = du.rrulestr(";".join(parts), dtstart=start_local)
        until = rule.get("UNTIL")
        if until:
            value = until[0] if isinstance(until, list) else until
            if isinstance(value, datetime):
                if value.tzinfo is not None:
                    value = value.astimezone(EWSTimeZone(zone_name)).replace(tzinfo=None)
            else:
                value = datetime.combine(value, time.max)
            self.rule = self.rule.replace(until=value)

    def local(self, key: str) -> datetime:
        instant = rid_instant(key, self.zone_name)
        if self.all_day or len(key) == 8:
            return datetime.combine(utc_to_date(instant, self.zone_name),
                                    self.start_local.time())
        return utc_to_local(instant, self.zone_name).replace(tzinfo=None)

    def index(self, key: str) -> int | None:
        wanted = self.local(key)
        for n, occurrence in enumerate(self.rule, start=1):
            if occurrence == wanted:
                return n
            if occurrence > wanted or n > 20000:
                return None
        return None

    def first(self) -> datetime | None:
        return next(iter(self.rule), None)

    def last(self) -> datetime | None:
        found = None
        for n, occurrence in enumerate(self.rule):
            if n > MAX_COUNT * 4:
                return None
            found = occurrence
        return found


def recurrence_of(parsed: ParsedObject, default_tz: str
                  ) -> tuple[str, Recurrence, Expander]:
    """The series' RRULE (as text), its Exchange Recurrence and its expander."""
    master = parsed.master
    zone_name = series_zone(master, default_tz)
    shape = series_shape(parsed, default_tz)
    component = ical_series.master_component(parsed.series_ics or "")
    if prop_list(component, "EXRULE"):
        raise Unsupported("EXRULE has no Exchange equivalent")
    if shape.rdates:
        raise Unsupported("extra dates (RDATE) have no Exchange equivalent")
    rules = [rule for name, rule in shape.rules if name == "RRULE"]
    if len(rules) != 1:
        raise Unsupported("a series needs exactly one RRULE in Exchange")
    original = prop_list(component, "RRULE")[0]
    rule = rules[0]
    start_local = utc_to_local(master.start, zone_name).replace(tzinfo=None)
    if master.all_day:
        start_local = datetime.combine(utc_to_date(master.start, zone_name), time())
    pattern = pattern_of(rule, start_local)
    expander = Expander(rule, start_local, master.all_day, zone_name)
    if expander.first() != start_local:
        raise Unsupported("the series' start is not one of its own occurrences (Exchange "
                          "would move it)")
    first_day = EWSDate.from_date(start_local.date())
    count, until = rule.get("COUNT"), rule.get("UNTIL")
    if count and until:
        raise Unsupported("COUNT and UNTIL together")
    if count:
        number = int(count[0] if isinstance(count, list) else count)
        if number > MAX_COUNT:
            raise Unsupported(f"more than {MAX_COUNT} occurrences (COUNT={number})")
        boundary: Any = NumberedPattern(start=first_day, number=number)
    elif until:
        last = expander.last()
        if last is None:
            raise Unsupported("too many occurrences before UNTIL")
        boundary = EndDatePattern(start=first_day, end=EWSDate.from_date(last.date()))
    else:
        boundary = NoEndPattern(start=first_day)
    text = original.to_ical().decode("ascii")
    return text, Recurrence(pattern=pattern, boundary=boundary), expander


def _values(rule: vRecur, name: str) -> list[Any]:
    found = rule.get(name)
    if found is None:
        return []
    return list(found) if isinstance(found, list) else [found]


def _int(rule: vRecur, name: str, default: int) -> int:
    values = _values(rule, name)
    return int(values[0]) if values else default


def _weekday(code: str) -> tuple[int | None, int]:
    """"-1FR" → (-1, 5): (ordinal or None, exchangelib weekday 1..7)."""
    match = re.fullmatch(r"([+-]?\d+)?(MO|TU|WE|TH|FR|SA|SU)", code.upper())
    if not match:
        raise Unsupported(f"BYDAY={code} is not understood")
    ordinal = int(match.group(1)) if match.group(1) else None
    return ordinal, WEEKDAY_CODES.index(match.group(2)) + 1


def pattern_of(rule: vRecur, start_local: datetime) -> Any:
    """The Exchange pattern of an RRULE (:class:`Unsupported` when there is none)."""
    freq = str(_values(rule, "FREQ")[0]).upper() if _values(rule, "FREQ") else ""
    interval = _int(rule, "INTERVAL", 1)
    for name in ("BYSECOND", "BYMINUTE", "BYHOUR", "BYYEARDAY", "BYWEEKNO"):
        if _values(rule, name):
            raise Unsupported(f"{name} has no Exchange equivalent")
    if freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        raise Unsupported(f"FREQ={freq or '?'} has no Exchange equivalent (daily to yearly "
                          "only)")
    if interval > 99 and freq != "DAILY":
        raise Unsupported(f"INTERVAL={interval} is beyond Exchange's 99")
    days = [_weekday(str(d)) for d in _values(rule, "BYDAY")]
    monthdays = [int(d) for d in _values(rule, "BYMONTHDAY")]
    months = [int(m) for m in _values(rule, "BYMONTH")]
    setpos = [int(p) for p in _values(rule, "BYSETPOS")]
    if len(months) > 1:
        raise Unsupported("several BYMONTH values")
    if len(monthdays) > 1 and not (sorted(monthdays) == [-1, max(monthdays)] and setpos == [1]
                                   and 29 <= max(monthdays) <= 30):
        raise Unsupported("several BYMONTHDAY values")
    weekday_start = start_local.isoweekday()
    if freq == "DAILY":
        if monthdays or months or setpos:
            raise Unsupported("a daily rule with BYMONTHDAY/BYMONTH/BYSETPOS")
        if not days:
            if interval > 999:
                raise Unsupported(f"INTERVAL={interval} is beyond Exchange's 999")
            return DailyPattern(interval=interval)
        if interval != 1 or any(o is not None for o, _ in days):
            raise Unsupported("a daily rule with BYDAY and an interval or ordinals")
        return WeeklyPattern(interval=1, weekdays=sorted({d for _, d in days}),
                             first_day_of_week=_wkst(rule))
    if freq == "WEEKLY":
        if monthdays or months or setpos or any(o is not None for o, _ in days):
            raise Unsupported("a weekly rule with BYMONTHDAY/BYMONTH/BYSETPOS or ordinals")
        weekdays = sorted({d for _, d in days}) or [weekday_start]
        return WeeklyPattern(interval=interval, weekdays=weekdays,
                             first_day_of_week=_wkst(rule))
    yearly = freq == "YEARLY"
    if yearly and interval != 1:
        raise Unsupported("a yearly rule with an INTERVAL (Exchange repeats every year)")
    if months and not yearly:
        raise Unsupported("a monthly rule with BYMONTH")
    month = months[0] if months else start_local.month
    if days:
        ordinal, weekday = _relative(days, setpos)
        if yearly:
            return RelativeYearlyPattern(weekday=weekday, week_number=ordinal, month=month)
        return RelativeMonthlyPattern(interval=interval, weekday=weekday, week_number=ordinal)
    if setpos and not monthdays:
        raise Unsupported("BYSETPOS without BYDAY")
    day = _monthday(monthdays, setpos, start_local.day, month if yearly else None)
    if yearly:
        return AbsoluteYearlyPattern(day_of_month=day, month=month)
    return AbsoluteMonthlyPattern(interval=interval, day_of_month=day)


def _wkst(rule: vRecur) -> int:
    found = _values(rule, "WKST")
    return WEEKDAY_CODES.index(str(found[0]).upper()) + 1 if found else 1


def _relative(days: list[tuple[int | None, int]], setpos: list[int]) -> tuple[int, int]:
    """(week number 1..5, exchangelib weekday 1..10) of a relative monthly/yearly rule."""
    if len(days) == 1 and days[0][0] is not None and not setpos:
        ordinal = days[0][0]
        if ordinal not in WEEK_NUMBERS:
            raise Unsupported(f"the {ordinal}th weekday of a month has no Exchange equivalent")
        return WEEK_NUMBERS.index(ordinal) + 1, days[0][1]
    codes = tuple(WEEKDAY_CODES[d - 1] for o, d in days if o is None)
    if len(codes) != len(days) or len(setpos) != 1 or setpos[0] not in WEEK_NUMBERS:
        raise Unsupported("BYSETPOS (or several BYDAY) beyond Exchange's first/last "
                          "day/weekday/weekend day")
    for group, members in GROUPS.items():
        if sorted(codes, key=WEEKDAY_CODES.index) == list(members):
            return WEEK_NUMBERS.index(setpos[0]) + 1, group
    if len(codes) == 1 and setpos:
        return WEEK_NUMBERS.index(setpos[0]) + 1, WEEKDAY_CODES.index(codes[0]) + 1
    raise Unsupported("BYSETPOS over these days has no Exchange equivalent")


# The fewest days each month has: a yearly day up to this exists every year.
_SHORTEST_MONTH = {1: 31, 2: 28, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31,
                   11: 30, 12: 31}


def _monthday(monthdays: list[int], setpos: list[int], start_day: int,
              month: int | None = None) -> int:
    """Exchange's day of the month for BYMONTHDAY (``month``: a yearly rule's month)."""
    if len(monthdays) == 2:          # BYMONTHDAY=29,-1;BYSETPOS=1: as Exchange's day 29/30
        return max(monthdays)
    day = monthdays[0] if monthdays else start_day
    if setpos:
        raise Unsupported("BYSETPOS with BYMONTHDAY")
    if day == -1:
        return 31                    # the last day: Exchange's 31 falls back to it
    longest_safe = _SHORTEST_MONTH[month] if month else 28
    if day < 1 or day > longest_safe:
        raise Unsupported(f"day {day} of the month: Exchange would move it to the last "
                          "day of shorter months")
    return day


# ---------------------------------------------------------------- Exchange → iCalendar

def rule_of(recurrence: Recurrence, all_day: bool, zone_name: str,
            start_local: datetime) -> str:
    """The RRULE text meaning what an Exchange recurrence means."""
    pattern, boundary = recurrence.pattern, recurrence.boundary
    parts: list[str]
    if isinstance(pattern, DailyPattern):
        parts = ["FREQ=DAILY", f"INTERVAL={pattern.interval}"]
    elif isinstance(pattern, WeeklyPattern):
        days = ",".join(WEEKDAY_CODES[d - 1] for d in sorted(_ints(pattern.weekdays)))
        parts = ["FREQ=WEEKLY", f"INTERVAL={pattern.interval}", f"BYDAY={days}",
                 f"WKST={WEEKDAY_CODES[_int_of(pattern.first_day_of_week or 1) - 1]}"]
    elif isinstance(pattern, AbsoluteMonthlyPattern | AbsoluteYearlyPattern):
        yearly = isinstance(pattern, AbsoluteYearlyPattern)
        parts = (["FREQ=YEARLY", f"BYMONTH={_int_of(pattern.month)}"] if yearly
                 else ["FREQ=MONTHLY", f"INTERVAL={pattern.interval}"])
        day = pattern.day_of_month
        parts += (["BYMONTHDAY=-1"] if day == 31 else
                  [f"BYMONTHDAY={day},-1", "BYSETPOS=1"] if day >= 29 else
                  [f"BYMONTHDAY={day}"])
    elif isinstance(pattern, RelativeMonthlyPattern | RelativeYearlyPattern):
        yearly = isinstance(pattern, RelativeYearlyPattern)
        parts = (["FREQ=YEARLY", f"BYMONTH={_int_of(pattern.month)}"] if yearly
                 else ["FREQ=MONTHLY", f"INTERVAL={pattern.interval}"])
        ordinal = WEEK_NUMBERS[_int_of(pattern.week_number) - 1]
        weekday = _int_of(pattern.weekday)
        if weekday in GROUPS:
            parts += [f"BYDAY={','.join(GROUPS[weekday])}", f"BYSETPOS={ordinal}"]
        else:
            parts += [f"BYDAY={ordinal}{WEEKDAY_CODES[weekday - 1]}"]
    else:
        raise Unsupported(f"the Exchange pattern {type(pattern).__name__} is not supported")
    if isinstance(boundary, NumberedPattern):
        parts.append(f"COUNT={boundary.number}")
    elif isinstance(boundary, EndDatePattern):
        end = _date(boundary.end)
        if all_day:
            parts.append(f"UNTIL={end:%Y%m%d}")
        else:
            last = datetime.combine(end, time(23, 59, 59))
            parts.append("UNTIL=" + to_utc(last.replace(tzinfo=EWSTimeZone(zone_name)))
                         .strftime("%Y%m%dT%H%M%SZ"))
    return ";".join(parts)


def _ints(values: Any) -> list[int]:
    if values is None:
        return []
    if isinstance(values, int | str):
        values = [values]
    return [_int_of(v) for v in values]


def _int_of(value: Any) -> int:
    """exchangelib enums come back as 1-based ints (or names on some paths)."""
    if isinstance(value, int):
        return value
    names = {"Monday": 1, "Tuesday": 2, "Wednesday": 3, "Thursday": 4, "Friday": 5,
             "Saturday": 6, "Sunday": 7, "Day": 8, "Weekday": 9, "WeekendDay": 10,
             "First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": 5}
    months = ("January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December")
    if value in months:
        return months.index(value) + 1
    return names[str(value)]


def _plain(value: datetime) -> datetime:
    """A plain datetime of an EWSDateTime (whose astimezone() takes EWSTimeZones only)."""
    return datetime.combine(value.date(), value.timetz())


def _date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def zone_of(item: CalendarItem, default_tz: str) -> str:
    """The IANA zone of an item: the one we stamped while Exchange still holds its Windows
    id, else Exchange's own (its table), else the user's zone."""
    tz = getattr(item, "_start_timezone", None)
    ms_id = getattr(tz, "ms_id", None)
    stamped = getattr(item, ZONE_FIELD, None)
    if stamped and is_iana(stamped) and (
            ms_id is None or stamped == "UTC" or EWSTimeZone(stamped).ms_id == ms_id):
        return stamped
    key = getattr(tz, "key", None)
    if key and is_iana(key):
        return key
    mapped = MS_TIMEZONE_TO_IANA_MAP.get(ms_id or "")
    return mapped if mapped and is_iana(mapped) else default_tz


def body_text(body: Any) -> str:
    """The notes as plain text (Outlook may hold HTML)."""
    if not body:
        return ""
    text = str(body)
    if isinstance(body, HTMLBody):
        text = re.sub(r"(?is)<(script|style).*?</\1>", "", text)
        text = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>", "\n", text)
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
    return text.replace("\r\n", "\n").strip()


def item_event(item: CalendarItem, zone_name: str, recurrence_id: str | None = None
               ) -> EventData:
    """The columns of one item or occurrence, in ``zone_name`` (the series' zone)."""
    all_day = bool(item.is_all_day)
    start, end = item.start, item.end
    if all_day:
        first = _date(start)
        last = _date(end) + timedelta(days=1) if end is not None else first + timedelta(1)
        utc_start, utc_end = date_to_utc(first, zone_name), date_to_utc(last, zone_name)
    else:
        if not isinstance(start, datetime):
            start = datetime.combine(start, time(), EWSTimeZone(zone_name))
        if not isinstance(end, datetime):
            end = datetime.combine(end, time(), EWSTimeZone(zone_name))
        utc_start, utc_end = to_utc(_plain(start)), to_utc(_plain(end))
    status = "TENTATIVE" if item.legacy_free_busy_status == "Tentative" else "CONFIRMED"
    return EventData(start=utc_start, end=max(utc_start, utc_end), tzid=zone_name,
                     all_day=all_day, subject=item.subject or "",
                     notes=body_text(item.body), location=item.location or "",
                     status=status, recurrence_id=recurrence_id)


def occurrence_key(original_start: datetime, all_day: bool, zone_name: str) -> str:
    """The recurrence-id key of an occurrence's original start (an aware instant)."""
    instant = to_utc(_plain(original_start))
    if all_day:
        return utc_to_local(instant, zone_name).date().strftime("%Y%m%d")
    return instant.strftime("%Y%m%dT%H%M%SZ")


def item_to_ics(master: CalendarItem, exceptions: list[CalendarItem], default_tz: str) -> str:
    """One VCALENDAR for an Exchange item and its exceptions (modified occurrences, read
    whole); deleted occurrences come from the master's own list."""
    uid = getattr(master, UID_FIELD, None) or master.uid or master.id
    zone_name = zone_of(master, default_tz)
    event = item_event(master, zone_name)
    if master.recurrence is None:
        return render_object(uid, event, default_tz=default_tz, dtstamp=_stamp(master))
    start_local = utc_to_local(event.start, zone_name).replace(tzinfo=None)
    derived = rule_of(master.recurrence, event.all_day, zone_name, start_local)
    stamped = getattr(master, RULE_FIELD, None)
    rule_text = derived
    if stamped and _same_pattern(stamped, master.recurrence, start_local, event.all_day,
                                 zone_name):
        rule_text = stamped
    extra = f"BEGIN:VEVENT\r\nRRULE:{rule_text}\r\nEND:VEVENT\r\n"
    exdates = {occurrence_key(d.start, event.all_day, zone_name)
               for d in master.deleted_occurrences or [] if d.start is not None}
    overrides = []
    for exception in exceptions:
        if exception.original_start is None:
            continue
        key = occurrence_key(exception.original_start, event.all_day, zone_name)
        overrides.append(item_event(exception, zone_name, key))
        exdates.discard(key)
    return render_object(uid, event.with_changes(extra_ics=_extra(extra)), overrides,
                         default_tz=default_tz, dtstamp=_stamp(master), exdates=exdates,
                         open_ended=True)


def _extra(text: str) -> str:
    """The RRULE as an extra_ics VEVENT, spelled as icalendar spells it."""
    from icalendar import Event

    return Event.from_ical(text).to_ical(sorted=False).decode("utf-8")


def _same_pattern(rule_text: str, recurrence: Recurrence, start_local: datetime,
                  all_day: bool, zone_name: str) -> bool:
    """Whether a stamped RRULE still describes what Exchange holds (pattern and range)."""
    try:
        rule = vRecur.from_ical(rule_text)
        pattern = pattern_of(rule, start_local)
        if pattern != recurrence.pattern:
            return False
        if rule.get("UNTIL"):
            last = Expander(rule, start_local, all_day, zone_name).last()
            return (isinstance(recurrence.boundary, EndDatePattern) and last is not None
                    and last.date() == _date(recurrence.boundary.end))
    except (ValueError, KeyError, TypeError):
        return False
    boundary = recurrence.boundary
    count, until = rule.get("COUNT"), rule.get("UNTIL")
    if isinstance(boundary, NumberedPattern):
        return bool(count) and int(_values(rule, "COUNT")[0]) == boundary.number
    return not count and not until and isinstance(boundary, NoEndPattern)


def _stamp(item: CalendarItem) -> datetime | None:
    modified = getattr(item, "last_modified_time", None)
    return to_utc(_plain(modified)) if isinstance(modified, datetime) else None
