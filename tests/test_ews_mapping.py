"""Exchange items (exchangelib) ↔ calendar object, both ways, without a server
(ews_mapping is pure): what we write (object_plan), what Exchange answers (an item in UTC
with a Windows zone id), and what we read back (item_to_ics)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.properties import HTMLBody
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    DailyRegeneration,
    DeletedOccurrence,
    EndDatePattern,
    NoEndPattern,
    NumberedPattern,
    Recurrence,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from bridge.ical import parse_object
from bridge.ical.content import content_key
from bridge.ical.series import expand
from bridge.targets.ews_mapping import (
    RULE_FIELD,
    UID_FIELD,
    ZONE_FIELD,
    ItemFields,
    Unsupported,
    body_text,
    item_event,
    item_to_ics,
    object_plan,
    occurrence_key,
    register_properties,
    rule_of,
    zone_of,
)

TZ = "Europe/Paris"
UTC = EWSTimeZone("UTC")
register_properties()


def vcal(*lines: str, overrides: str = "") -> str:
    body = "\r\n".join(lines)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:u-1\r\n"
            f"DTSTAMP:20260101T000000Z\r\n{body}\r\nEND:VEVENT\r\n{overrides}END:VCALENDAR\r\n")


def timed(day: str = "20270315", hour: str = "090000", end: str = "100000",
          tzid: str = TZ) -> tuple[str, str]:
    return (f"DTSTART;TZID={tzid}:{day}T{hour}", f"DTEND;TZID={tzid}:{day}T{end}")


def plan_of(ics: str):
    return object_plan(parse_object(ics, TZ), TZ)


def as_exchange_answers(fields: ItemFields, *, uid: str | None = "u-1",
                        stamped: bool = True) -> CalendarItem:
    """The item as GetItem/SyncFolderItems gives it back: times in UTC, the zone as its
    Windows id (exchangelib's table picks one IANA name per id), our extended properties
    (``stamped``: written by us; else as Outlook made it, without them)."""
    item = CalendarItem()
    fields.apply(item)
    if not fields.is_all_day:
        item.start, item.end = fields.start.astimezone(UTC), fields.end.astimezone(UTC)
    item._start_timezone = item._end_timezone = EWSTimeZone.from_ms_id(fields.zone.ms_id)
    item.legacy_free_busy_status = "Tentative" if fields.tentative else "Busy"
    item.last_modified_time = EWSDateTime(2026, 1, 1, tzinfo=UTC)
    setattr(item, UID_FIELD, uid if stamped else None)
    if not stamped:
        setattr(item, ZONE_FIELD, None)
        setattr(item, RULE_FIELD, None)
        item.uid = uid
    return item


def exception_item(fields: ItemFields, original: datetime) -> CalendarItem:
    item = as_exchange_answers(fields)
    item.original_start = EWSDateTime.from_datetime(original.replace(tzinfo=UTC))
    return item


def round_trip(ics: str, *, stamped: bool = True) -> str:
    plan = plan_of(ics)
    assert not plan.occurrences
    return item_to_ics(as_exchange_answers(plan.master, stamped=stamped), [], TZ)


def starts(ics: str, first: int = 2027, last: int = 2030) -> list[datetime]:
    parsed = parse_object(ics, TZ)
    if not parsed.is_series:
        return [parsed.master.start]
    return [e.start for e in expand(parsed.series_ics or "", datetime(first, 1, 1),
                                    datetime(last, 1, 1), TZ)]


# ---------------------------------------------------------------- singles and zones

def test_single_timed_both_ways_keeps_fields_zone_and_meaning():
    ics = vcal(*timed("20270315", "093000", "110000"), "SUMMARY:Dentiste", "LOCATION:Lyon",
               "DESCRIPTION:ligne 1\\nligne 2", "STATUS:TENTATIVE")
    plan = plan_of(ics)
    master = plan.master
    assert (plan.occurrences, master.recurrence, master.rule) == ({}, None, None)
    assert (master.subject, master.body, master.location) == ("Dentiste", "ligne 1\nligne 2",
                                                              "Lyon")
    assert master.start == EWSDateTime(2027, 3, 15, 9, 30, tzinfo=EWSTimeZone(TZ))
    assert master.end - master.start == timedelta(minutes=90)
    assert (master.is_all_day, master.tentative, master.zone.ms_id) == (
        False, True, "Romance Standard Time")
    answered = as_exchange_answers(master)
    assert answered.start == EWSDateTime(2027, 3, 15, 8, 30, tzinfo=UTC), "CET: UTC+1"
    back = item_to_ics(answered, [], TZ)
    assert "UID:u-1" in back and "STATUS:TENTATIVE" in back
    assert content_key(back, TZ) == content_key(ics, TZ)


def test_summer_and_winter_times_map_to_the_right_instants():
    for day, utc_hour in (("20270115", 8), ("20270715", 7), ("20271030", 7), ("20271031", 8)):
        plan = plan_of(vcal(*timed(day), "SUMMARY:x"))
        answered = as_exchange_answers(plan.master)
        assert answered.start.hour == utc_hour, day
        event = item_event(answered, TZ)
        assert (event.start.hour, event.tzid) == (utc_hour, TZ)


def test_zones_sharing_a_windows_id_come_back_as_written():
    ics = vcal(*timed(tzid="Europe/Brussels"), "SUMMARY:Bruxelles")
    plan = plan_of(ics)
    assert plan.master.zone_name == "Europe/Brussels"
    assert plan.master.zone.ms_id == "Romance Standard Time"
    answered = as_exchange_answers(plan.master)
    assert answered._start_timezone.key == "Europe/Paris", "exchangelib's table picks Paris"
    assert zone_of(answered, TZ) == "Europe/Brussels", "our stamp still describes the item"
    back = item_to_ics(answered, [], TZ)
    assert "TZID=Europe/Brussels" in back
    assert content_key(back, TZ) == content_key(ics, TZ)


def test_an_outlook_zone_change_wins_over_our_stamp():
    answered = as_exchange_answers(plan_of(vcal(*timed(tzid="Europe/Brussels"),
                                                "SUMMARY:x")).master)
    answered._start_timezone = EWSTimeZone.from_ms_id("W. Europe Standard Time")
    assert zone_of(answered, TZ) == "Europe/Berlin"


@pytest.mark.parametrize(("ms_id", "iana"), [
    ("Romance Standard Time", "Europe/Paris"),
    ("Eastern Standard Time", "America/New_York"),
    ("GMT Standard Time", "Europe/London"),
    ("Tokyo Standard Time", "Asia/Tokyo"),
])
def test_windows_zone_ids_read_as_iana_when_outlook_made_the_item(ms_id: str, iana: str):
    item = CalendarItem(subject="Outlook", start=EWSDateTime(2027, 7, 1, 7, tzinfo=UTC),
                        end=EWSDateTime(2027, 7, 1, 8, tzinfo=UTC), is_all_day=False)
    item._start_timezone = EWSTimeZone.from_ms_id(ms_id)
    assert zone_of(item, TZ) == iana
    assert EWSTimeZone(iana).ms_id == ms_id, "and back to the same Windows id"
    ics = item_to_ics(item, [], TZ)
    event = parse_object(ics, TZ).master
    assert (event.tzid, event.start) == (iana, datetime(2027, 7, 1, 7))


def test_an_item_without_a_zone_falls_back_to_the_users():
    item = CalendarItem(subject="x", start=EWSDateTime(2027, 7, 1, 7, tzinfo=UTC),
                        end=EWSDateTime(2027, 7, 1, 8, tzinfo=UTC), is_all_day=False)
    assert zone_of(item, "America/Montreal") == "America/Montreal"


def test_a_utc_event_stays_utc():
    ics = vcal("DTSTART:20270315T090000Z", "DTEND:20270315T100000Z", "SUMMARY:UTC")
    plan = plan_of(ics)
    assert plan.master.zone_name == "UTC"
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)


def test_all_day_stays_all_day_with_an_inclusive_end():
    ics = vcal("DTSTART;VALUE=DATE:20270802", "DTEND;VALUE=DATE:20270804", "SUMMARY:Congé")
    master = plan_of(ics).master
    assert master.is_all_day is True
    assert (master.start, master.end) == (EWSDate(2027, 8, 2), EWSDate(2027, 8, 3))
    back = round_trip(ics)
    assert "DTSTART;VALUE=DATE:20270802" in back and "DTEND;VALUE=DATE:20270804" in back
    assert parse_object(back, TZ).master.all_day
    assert content_key(back, TZ) == content_key(ics, TZ)


def test_one_day_all_day_keeps_one_day():
    ics = vcal("DTSTART;VALUE=DATE:20271225", "DTEND;VALUE=DATE:20271226", "SUMMARY:Noël")
    master = plan_of(ics).master
    assert master.start == master.end == EWSDate(2027, 12, 25)
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)


def test_html_notes_are_read_as_text():
    html = HTMLBody("<html><body><p>Bonjour &amp; merci</p><script>x()</script>"
                    "<div>2e ligne<br/>3e</div></body></html>")
    assert body_text(html) == "Bonjour & merci\n2e ligne\n3e"
    assert body_text(None) == ""


# ---------------------------------------------------------------- patterns and ranges

START = ("DTSTART;TZID=Europe/Paris:20270315T090000", "DTEND;TZID=Europe/Paris:20270315T100000")
PATTERNS = [  # 2027-03-15 is the third Monday of March
    ("FREQ=DAILY;INTERVAL=2", DailyPattern(interval=2)),
    ("FREQ=WEEKLY;BYDAY=MO,WE,FR", WeeklyPattern(interval=1, weekdays=[1, 3, 5],
                                                 first_day_of_week=1)),
    ("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;WKST=SU",
     WeeklyPattern(interval=2, weekdays=[1, 4], first_day_of_week=7)),
    ("FREQ=MONTHLY;BYMONTHDAY=15", AbsoluteMonthlyPattern(interval=1, day_of_month=15)),
    ("FREQ=MONTHLY;INTERVAL=3", AbsoluteMonthlyPattern(interval=3, day_of_month=15)),
    ("FREQ=MONTHLY;BYDAY=3MO", RelativeMonthlyPattern(interval=1, weekday=1, week_number=3)),
    ("FREQ=YEARLY;BYMONTH=3;BYMONTHDAY=15", AbsoluteYearlyPattern(day_of_month=15, month=3)),
    ("FREQ=YEARLY", AbsoluteYearlyPattern(day_of_month=15, month=3)),
    ("FREQ=YEARLY;BYMONTH=3;BYDAY=3MO", RelativeYearlyPattern(weekday=1, week_number=3,
                                                               month=3)),
]
RANGES = [
    ("COUNT=5", NumberedPattern(start=EWSDate(2027, 3, 15), number=5)),
    ("UNTIL=20290101T000000Z", EndDatePattern),
    ("", NoEndPattern(start=EWSDate(2027, 3, 15))),
]


@pytest.mark.parametrize(("rule", "pattern"), PATTERNS, ids=[p[0] for p in PATTERNS])
@pytest.mark.parametrize(("limit", "boundary"), RANGES, ids=["numbered", "end-date", "no-end"])
def test_each_pattern_with_each_range_both_ways(rule, pattern, limit, boundary):
    text = f"{rule};{limit}" if limit else rule
    ics = vcal(*START, "SUMMARY:Série", f"RRULE:{text}")
    master = plan_of(ics).master
    assert master.recurrence.pattern == pattern
    if boundary is EndDatePattern:
        assert isinstance(master.recurrence.boundary, EndDatePattern)
        assert master.recurrence.boundary.start == EWSDate(2027, 3, 15)
        assert master.recurrence.boundary.end == starts(ics, 2027, 2030)[-1].date(), \
            "Exchange's end date is the last occurrence's day"
    else:
        assert master.recurrence.boundary == boundary
    # read back with our stamp: the same object, the rule as written
    back = round_trip(ics)
    assert content_key(back, TZ) == content_key(ics, TZ)
    # as Outlook made it (no stamp): the rule derived from the pattern means the same
    derived = round_trip(ics, stamped=False)
    assert starts(derived) == starts(ics)
    again = plan_of(derived).master.recurrence
    assert (again.pattern, again.boundary) == (master.recurrence.pattern,
                                               master.recurrence.boundary)


@pytest.mark.parametrize(("day", "rule", "pattern"), [
    ("20270326", "FREQ=MONTHLY;BYDAY=-1FR",
     RelativeMonthlyPattern(interval=1, weekday=5, week_number=5)),
    ("20270331", "FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1",
     RelativeMonthlyPattern(interval=1, weekday=9, week_number=5)),
    ("20270306", "FREQ=MONTHLY;BYDAY=SA,SU;BYSETPOS=1",
     RelativeMonthlyPattern(interval=1, weekday=10, week_number=1)),
    ("20270331", "FREQ=MONTHLY;BYMONTHDAY=-1",
     AbsoluteMonthlyPattern(interval=1, day_of_month=31)),
    ("20271125", "FREQ=YEARLY;BYMONTH=11;BYDAY=4TH",
     RelativeYearlyPattern(weekday=4, week_number=4, month=11)),
    ("20270315", "FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR",
     WeeklyPattern(interval=1, weekdays=[1, 2, 3, 4, 5], first_day_of_week=1)),
])
def test_exchanges_first_and_last_forms(day: str, rule: str, pattern):
    ics = vcal(*timed(day), "SUMMARY:S", f"RRULE:{rule};COUNT=6")
    master = plan_of(ics).master
    assert master.recurrence.pattern == pattern
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)
    assert starts(round_trip(ics, stamped=False)) == starts(ics)


def test_a_weekly_series_keeps_its_wall_time_across_dst():
    ics = vcal(*timed("20270315"), "SUMMARY:Hebdo", "RRULE:FREQ=WEEKLY;COUNT=4")
    utc_hours = [s.hour for s in starts(round_trip(ics, stamped=False))]
    assert utc_hours == [8, 8, 7, 7], "09:00 in Paris before and after March 28"


def test_all_day_yearly_series_with_an_end_date():
    ics = vcal("DTSTART;VALUE=DATE:20270412", "DTEND;VALUE=DATE:20270413", "SUMMARY:Anniv",
               "RRULE:FREQ=YEARLY;UNTIL=20300412")
    master = plan_of(ics).master
    assert master.is_all_day
    assert master.recurrence.boundary == EndDatePattern(start=EWSDate(2027, 4, 12),
                                                        end=EWSDate(2030, 4, 12))
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)
    derived = round_trip(ics, stamped=False)
    assert "UNTIL=20300412" in derived
    assert starts(derived, 2027, 2032) == starts(ics, 2027, 2032)


def test_an_outlook_pattern_change_wins_over_our_stamped_rule():
    ics = vcal(*START, "SUMMARY:S", "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=6")
    answered = as_exchange_answers(plan_of(ics).master)
    assert getattr(answered, RULE_FIELD) == "FREQ=WEEKLY;COUNT=6;BYDAY=MO,WE"
    answered.recurrence = Recurrence(
        pattern=WeeklyPattern(interval=1, weekdays=[1], first_day_of_week=1),
        boundary=NumberedPattern(start=EWSDate(2027, 3, 15), number=6))
    back = item_to_ics(answered, [], TZ)
    [rule] = [line for line in back.splitlines() if line.startswith("RRULE:")]
    assert "BYDAY=MO;" in rule and "MO,WE" not in rule and "COUNT=6" in rule
    assert len(starts(back)) == 6 and all(s.weekday() == 0 for s in starts(back))


def test_a_pattern_we_do_not_know_is_refused_when_read():
    recurrence = Recurrence(pattern=DailyRegeneration(interval=3),
                            boundary=NoEndPattern(start=EWSDate(2027, 3, 15)))
    with pytest.raises(Unsupported, match="DailyRegeneration"):
        rule_of(recurrence, False, TZ, datetime(2027, 3, 15, 9))


# ---------------------------------------------------------------- occurrences

OVERRIDE = ("BEGIN:VEVENT\r\nUID:u-1\r\nDTSTAMP:20260101T000000Z\r\n"
            "RECURRENCE-ID;TZID=Europe/Paris:20271108T090000\r\n"
            "DTSTART;TZID=Europe/Paris:20271109T140000\r\n"
            "DTEND;TZID=Europe/Paris:20271109T150000\r\nSUMMARY:Déplacé\r\n"
            "LOCATION:Salle 3\r\nEND:VEVENT\r\n")


def test_a_modified_and_a_deleted_occurrence_across_dst_both_ways():
    # 09:00 in Paris is 07:00 UTC until October 31, 08:00 after
    ics = vcal("DTSTART;TZID=Europe/Paris:20271018T090000",
               "DTEND;TZID=Europe/Paris:20271018T100000", "SUMMARY:Hebdo",
               "RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Paris:20271025T090000",
               overrides=OVERRIDE)
    plan = plan_of(ics)
    assert plan.occurrences.keys() == {"20271025T070000Z", "20271108T080000Z"}
    assert plan.occurrences["20271025T070000Z"] is None, "deleted"
    moved = plan.occurrences["20271108T080000Z"]
    assert (moved.subject, moved.location) == ("Déplacé", "Salle 3")
    assert moved.start == EWSDateTime(2027, 11, 9, 14, tzinfo=EWSTimeZone(TZ))
    assert plan.indexes == {"20271025T070000Z": 2, "20271108T080000Z": 4}, "InstanceIndex"
    master = as_exchange_answers(plan.master)
    master.deleted_occurrences = [DeletedOccurrence(
        start=EWSDateTime(2027, 10, 25, 7, tzinfo=UTC))]
    exception = exception_item(moved, datetime(2027, 11, 8, 8))
    back = item_to_ics(master, [exception], TZ)
    assert content_key(back, TZ) == content_key(ics, TZ)
    assert [s.strftime("%m%d%H") for s in starts(back)] == ["101807", "110108", "110913",
                                                            "111508"]


def test_an_occurrence_key_is_the_utc_original_start_or_the_day():
    original = EWSDateTime(2027, 11, 8, 8, tzinfo=UTC)
    assert occurrence_key(original, False, TZ) == "20271108T080000Z"
    midnight_paris = EWSDateTime(2027, 11, 7, 23, tzinfo=UTC)
    assert occurrence_key(midnight_paris, True, TZ) == "20271108"


def test_all_day_series_with_a_deleted_day():
    ics = vcal("DTSTART;VALUE=DATE:20271025", "DTEND;VALUE=DATE:20271026", "SUMMARY:Garde",
               "RRULE:FREQ=DAILY;COUNT=4", "EXDATE;VALUE=DATE:20271027")
    plan = plan_of(ics)
    assert plan.occurrences == {"20271027": None} and plan.indexes == {"20271027": 3}
    master = as_exchange_answers(plan.master)
    master.deleted_occurrences = [DeletedOccurrence(
        start=EWSDateTime(2027, 10, 26, 22, tzinfo=UTC))]   # midnight in Paris
    back = item_to_ics(master, [], TZ)
    assert content_key(back, TZ) == content_key(ics, TZ)


def test_an_exdate_of_no_occurrence_is_not_written():
    ics = vcal(*START, "SUMMARY:S", "RRULE:FREQ=WEEKLY;COUNT=3",
               "EXDATE;TZID=Europe/Paris:20270316T090000")
    plan = plan_of(ics)
    assert plan.occurrences == {} and plan.indexes == {}


# ---------------------------------------------------------------- refusals

@pytest.mark.parametrize(("start", "rule", "reason"), [
    ("20270315", "FREQ=HOURLY;COUNT=3", "FREQ=HOURLY has no Exchange equivalent"),
    ("20270315", "FREQ=MONTHLY;BYMONTHDAY=1,15", "several BYMONTHDAY values"),
    ("20270315", "FREQ=YEARLY;BYMONTH=3,9", "several BYMONTH values"),
    ("20270315", "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=-2", "BYSETPOS .* beyond Exchange's"),
    ("20270315", "FREQ=MONTHLY;BYDAY=MO,TU;BYSETPOS=2", "BYSETPOS over these days"),
    ("20270315", "FREQ=MONTHLY;BYMONTHDAY=15;BYSETPOS=1", "BYSETPOS with BYMONTHDAY"),
    ("20270329", "FREQ=MONTHLY;BYDAY=5MO", "the 5th weekday of a month"),
    ("20270315", "FREQ=YEARLY;BYYEARDAY=74", "BYYEARDAY has no Exchange equivalent"),
    ("20270315", "FREQ=YEARLY;BYWEEKNO=11;BYDAY=MO", "BYWEEKNO has no Exchange equivalent"),
    ("20270315", "FREQ=WEEKLY;BYHOUR=9,15", "BYHOUR has no Exchange equivalent"),
    ("20270315", "FREQ=YEARLY;INTERVAL=2", "a yearly rule with an INTERVAL"),
    ("20270315", "FREQ=MONTHLY;INTERVAL=120", "INTERVAL=120 is beyond Exchange's 99"),
    ("20270315", "FREQ=WEEKLY;BYMONTH=3", "a weekly rule with BYMONTHDAY/BYMONTH"),
    ("20270315", "FREQ=DAILY;INTERVAL=2;BYDAY=MO", "a daily rule with BYDAY and an interval"),
    ("20270330", "FREQ=MONTHLY", "day 30 of the month: Exchange would move it"),
    ("20270129", "FREQ=MONTHLY;BYMONTHDAY=29", "day 29 of the month"),
    ("20270315", "FREQ=MONTHLY;BYMONTHDAY=-2", "day -2 of the month"),
    ("20280229", "FREQ=YEARLY", "day 29 of the month"),
    ("20270315", "FREQ=WEEKLY;BYDAY=TU", "start is not one of its own occurrences"),
    ("20270315", "FREQ=MONTHLY;BYMONTHDAY=20", "start is not one of its own occurrences"),
    ("20270315", "FREQ=DAILY;COUNT=1000", r"more than 999 occurrences \(COUNT=1000\)"),
    ("20270315", "FREQ=DAILY;UNTIL=20400101T000000Z", "too many occurrences before UNTIL"),
    ("20270315", "FREQ=DAILY;COUNT=3;UNTIL=20270401T000000Z", "COUNT and UNTIL together"),
])
@pytest.mark.filterwarnings("ignore:Using both 'count' and 'until':DeprecationWarning")
def test_rules_exchange_cannot_hold_are_refused_with_the_reason(start: str, rule: str,
                                                                 reason: str):
    with pytest.raises(Unsupported, match=reason):
        plan_of(vcal(*timed(start), "SUMMARY:S", f"RRULE:{rule}"))


def test_rdate_and_exrule_are_refused_with_the_reason():
    with pytest.raises(Unsupported, match="extra dates \\(RDATE\\)"):
        plan_of(vcal(*START, "SUMMARY:S", "RRULE:FREQ=DAILY;COUNT=2",
                     "RDATE;TZID=Europe/Paris:20270401T090000"))
    with pytest.raises(Unsupported, match="EXRULE has no Exchange equivalent"):
        plan_of(vcal(*START, "SUMMARY:S", "RRULE:FREQ=DAILY;COUNT=9",
                     "EXRULE:FREQ=WEEKLY;COUNT=1"))


def test_a_single_is_never_refused_for_its_rule():
    assert plan_of(vcal(*timed("20270330"), "SUMMARY:S")).master.recurrence is None


def test_an_outlook_day_30_monthly_series_can_be_pushed_back():
    """Exchange's day 30 reads as BYMONTHDAY=30,-1;BYSETPOS=1 (the 30th, or the last day
    of a shorter month), which must be accepted again when Gestan edits the series."""
    item = CalendarItem(subject="Loyer", start=EWSDateTime(2027, 1, 30, 8, tzinfo=UTC),
                        end=EWSDateTime(2027, 1, 30, 9, tzinfo=UTC), is_all_day=False)
    item._start_timezone = EWSTimeZone.from_ms_id("Romance Standard Time")
    item.recurrence = Recurrence(pattern=AbsoluteMonthlyPattern(interval=1, day_of_month=30),
                                 boundary=NumberedPattern(start=EWSDate(2027, 1, 30),
                                                          number=4))
    ics = item_to_ics(item, [], TZ)
    assert "BYMONTHDAY=30,-1" in ics and "BYSETPOS=1" in ics
    assert [s.date() for s in starts(ics)] == [date(2027, 1, 30), date(2027, 2, 28),
                                               date(2027, 3, 30), date(2027, 4, 30)]
    assert plan_of(ics).master.recurrence.pattern == item.recurrence.pattern


@pytest.mark.parametrize(("day", "month"), [("20270330", 3), ("20270131", 1),
                                            ("20270430", 4)])
def test_a_yearly_day_every_year_has_is_held(day: str, month: int):
    ics = vcal(*timed(day), "SUMMARY:S", "RRULE:FREQ=YEARLY;COUNT=3")
    assert plan_of(ics).master.recurrence.pattern == AbsoluteYearlyPattern(
        day_of_month=int(day[-2:]), month=month)
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)
    assert starts(round_trip(ics, stamped=False)) == starts(ics)


def test_a_yearly_series_on_march_30_is_held():
    ics = vcal(*timed("20270330"), "SUMMARY:S", "RRULE:FREQ=YEARLY;COUNT=3")
    assert plan_of(ics).master.recurrence.pattern == AbsoluteYearlyPattern(day_of_month=30,
                                                                           month=3)
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)
