"""The fast series expansion gives exactly what recurring-ical-events gives, over many
series of the shapes phones, Google and Outlook send (and declines the others)."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

import pytest
from dateutil import rrule

from bridge.ical import fast_series, parse_object
from bridge.ical.series import calendar_of, expand_general

ZONES = ["Europe/Paris", "America/Montreal", "UTC", None]
RULES = ["FREQ=WEEKLY", "FREQ=DAILY;COUNT=40", "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH",
         "FREQ=MONTHLY;BYMONTHDAY=15", "FREQ=MONTHLY;BYDAY=-1FR", "FREQ=YEARLY",
         "FREQ=WEEKLY;UNTIL={until}", "FREQ=DAILY;INTERVAL=3;COUNT=100",
         "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;COUNT=200"]


def _stamp(value: datetime, tz: str | None, all_day: bool) -> str:
    if all_day:
        return f";VALUE=DATE:{value:%Y%m%d}"
    if tz == "UTC":
        return f":{value:%Y%m%dT%H%M%S}Z"
    if tz is None:
        return f":{value:%Y%m%dT%H%M%S}"
    return f";TZID={tz}:{value:%Y%m%dT%H%M%S}"


def series(seed: int) -> str:
    rnd = random.Random(seed)
    tz = rnd.choice(ZONES)
    all_day = rnd.random() < 0.15
    # across a DST change (late March / late October) half of the time
    base = datetime(2026, rnd.choice([3, 10, 6, 12]), rnd.randint(1, 28), rnd.randint(7, 19),
                    rnd.choice([0, 15, 30]))
    rule = rnd.choice(RULES)
    if "BY" in rule and rnd.random() < 0.85:  # as phones write them: DTSTART on the rule
        base = rrule.rrulestr(rule.split(";UNTIL")[0], dtstart=base).after(base, inc=True)
    until = base + timedelta(days=rnd.randint(20, 400))
    if "{until}" in rule:
        if all_day:
            rule = rule.format(until=f"{until:%Y%m%d}")
        elif tz is None:
            rule = rule.format(until=f"{until:%Y%m%dT%H%M%S}")
        else:
            rule = rule.format(until=f"{until:%Y%m%dT%H%M%S}Z")
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:test", "BEGIN:VEVENT",
             f"UID:s{seed}", "DTSTART" + _stamp(base, tz, all_day)]
    if all_day:
        lines.append("DTEND" + _stamp(base + timedelta(days=rnd.choice([1, 2])), tz, True))
    elif rnd.random() < 0.5:
        lines.append(f"DURATION:PT{rnd.choice([30, 60, 90, 150])}M")
    else:
        lines.append("DTEND" + _stamp(base + timedelta(minutes=rnd.choice([45, 60, 600])),
                                      tz, False))
    lines.append(f"RRULE:{rule}")
    for _ in range(rnd.randint(0, 3)):
        lines.append("EXDATE" + _stamp(base + timedelta(weeks=rnd.randint(1, 20)), tz, all_day))
    if rnd.random() < 0.3:
        lines.append("RDATE" + _stamp(base + timedelta(days=3, hours=1), tz, all_day))
    lines += [f"SUMMARY:Série {seed}, été", "DESCRIPTION:ligne 1\\nligne 2",
              "CONTACT:M. Petit", "X-COLOR:blue"]
    if rnd.random() < 0.3:
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER:-PT15M", "DESCRIPTION:r",
                  "END:VALARM"]
    lines.append("END:VEVENT")
    if rnd.random() < 0.4 and not all_day:
        moved = base + timedelta(weeks=rnd.randint(0, 6)) if rule[5:11] == "WEEKLY" else None
        if moved is not None:
            lines += ["BEGIN:VEVENT", f"UID:s{seed}", "RECURRENCE-ID" + _stamp(moved, tz, False),
                      "DTSTART" + _stamp(moved + timedelta(hours=2), tz, False),
                      "DURATION:PT1H", "SUMMARY:déplacé", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize("seed", range(120))
def test_fast_expansion_equals_recurring_ical_events(seed):
    text = series(seed)
    parsed = parse_object(text, "Europe/Paris")
    start = datetime(2026, 1, 1) + timedelta(days=seed % 200)
    end = start + timedelta(days=365)
    for with_overrides in (True, False):
        calendar = calendar_of(parsed.series_ics, with_overrides)
        fast = fast_series.expand(calendar, start, end, "Europe/Paris")
        general = expand_general(calendar, start, end, "Europe/Paris")
        if fast is None:
            continue
        key = lambda e: (e.start, e.recurrence_id or "")  # noqa: E731
        assert sorted(fast, key=key) == sorted(general, key=key), text


def test_most_generated_series_take_the_fast_path():
    taken = sum(fast_series.expand(calendar_of(parse_object(series(s), "UTC").series_ics),
                                   datetime(2026, 1, 1), datetime(2027, 1, 1), "UTC")
                is not None for s in range(120))
    assert taken >= 100


def test_other_shapes_are_declined():
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:x\r\n"
            "DTSTART;TZID=Europe/Paris:20260105T090000\r\nDURATION:PT1H\r\n"
            "RRULE:FREQ=WEEKLY\r\nEXDATE;VALUE=DATE:20260112\r\nSUMMARY:x\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")
    calendar = calendar_of(parse_object(text, "UTC").series_ics)
    assert fast_series.expand(calendar, datetime(2026, 1, 1), datetime(2027, 1, 1),
                              "UTC") is None
    assert date(2026, 1, 12) not in {e.start.date() for e in expand_general(
        calendar, datetime(2026, 1, 1), datetime(2027, 1, 1), "UTC")}


@pytest.mark.parametrize("seed", range(0, 200, 5))
def test_bounds_by_the_fast_path_equal_recurring_ical_events(seed):
    """A bounded series' last end, taken the fast way, is recurring-ical-events' own."""
    import recurring_ical_events

    from bridge.ical.parse import event_from_component
    from bridge.ical.series import bounds

    parsed = parse_object(series(seed), "Europe/Paris")
    first, last = bounds(parsed.series_ics, "Europe/Paris")
    calendar = calendar_of(parsed.series_ics)
    ends = [event_from_component(c, "Europe/Paris").end for c in calendar.walk("VEVENT")]
    rule = parsed.series_ics.split("RRULE:", 1)[1].split("\r\n", 1)[0]
    if "COUNT" not in rule and "UNTIL" not in rule:
        assert last is None
        return
    ends += [event_from_component(c, "Europe/Paris").end
             for c in recurring_ical_events.of(calendar).all()]
    assert last == max(ends) + timedelta(days=1)
