"""Graph event JSON ↔ calendar object, both ways, without a server (graph_mapping is pure)."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.ical import parse_object
from bridge.ical.content import content_key
from bridge.ical.series import expand
from bridge.targets.graph_mapping import (
    SeriesReading,
    Unsupported,
    event_data,
    graph_to_ics,
    recurrence_rule,
    to_graph,
)

TZ = "Europe/Paris"


def vcal(*lines: str, overrides: str = "") -> str:
    body = "\r\n".join(lines)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\nBEGIN:VEVENT\r\nUID:u-1\r\n"
            f"DTSTAMP:20260101T000000Z\r\n{body}\r\nEND:VEVENT\r\n{overrides}END:VCALENDAR\r\n")


def answer(body: dict, **extra) -> dict:
    """What Graph answers for a body we sent, asked in UTC (as the target asks)."""
    out = {"id": "E1", "@odata.etag": 'W/"1"', "originalStartTimeZone": body["start"]["timeZone"],
           "subject": body["subject"], "body": body["body"], "location": body["location"],
           "isAllDay": body["isAllDay"], "showAs": body["showAs"]}
    for side in ("start", "end"):
        if body["isAllDay"]:
            out[side] = {"dateTime": body[side]["dateTime"] + ".0000000", "timeZone": "UTC"}
        else:
            wall = datetime.fromisoformat(body[side]["dateTime"])
            from zoneinfo import ZoneInfo
            moment = wall.replace(tzinfo=ZoneInfo(body[side]["timeZone"])).astimezone(
                ZoneInfo("UTC"))
            out[side] = {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S.0000000"),
                         "timeZone": "UTC"}
    if "recurrence" in body and body["recurrence"]:
        out["recurrence"] = body["recurrence"]
        out["type"] = "seriesMaster"
    return {**out, **extra}


def round_trip(ics: str) -> str:
    body, _ = to_graph(ics, TZ)
    if body.get("recurrence"):
        return graph_to_ics(SeriesReading(answer(body)), "u-1", TZ)
    return graph_to_ics(answer(body), "u-1", TZ)


def test_single_timed_keeps_its_zone_and_fields():
    ics = vcal("DTSTART;TZID=Europe/Paris:20270315T093000",
               "DTEND;TZID=Europe/Paris:20270315T110000", "SUMMARY:Dentiste",
               "LOCATION:Lyon", "DESCRIPTION:ligne 1\\nligne 2", "STATUS:TENTATIVE")
    body, plan = to_graph(ics, TZ)
    assert plan is None and "attendees" not in body
    assert body["start"] == {"dateTime": "2027-03-15T09:30:00", "timeZone": TZ}
    assert body["body"] == {"contentType": "text", "content": "ligne 1\nligne 2"}
    assert (body["location"], body["showAs"]) == ({"displayName": "Lyon"}, "tentative")
    assert content_key(round_trip(ics), TZ) == content_key(ics, TZ)


def test_windows_zone_names_read_as_iana():
    event = event_data({"start": {"dateTime": "2027-07-01T07:00:00.0000000", "timeZone": "UTC"},
                        "end": {"dateTime": "2027-07-01T08:00:00.0000000", "timeZone": "UTC"},
                        "originalStartTimeZone": "Romance Standard Time",
                        "subject": "x"}, TZ)
    assert (event.tzid, event.start) == ("Europe/Paris", datetime(2027, 7, 1, 7))


def test_all_day_stays_all_day():
    ics = vcal("DTSTART;VALUE=DATE:20270802", "DTEND;VALUE=DATE:20270804", "SUMMARY:Congé")
    body, _ = to_graph(ics, TZ)
    assert body["isAllDay"] is True
    assert (body["start"]["dateTime"], body["end"]["dateTime"]) == (
        "2027-08-02T00:00:00", "2027-08-04T00:00:00")
    back = parse_object(round_trip(ics), TZ).master
    assert back.all_day and content_key(round_trip(ics), TZ) == content_key(ics, TZ)


@pytest.mark.parametrize(("rule", "pattern"), [
    ("FREQ=DAILY;INTERVAL=2;COUNT=5", {"type": "daily", "interval": 2}),
    ("FREQ=WEEKLY;BYDAY=MO,WE;UNTIL=20270630T220000Z", {"type": "weekly",
                                                       "daysOfWeek": ["monday", "wednesday"]}),
    ("FREQ=MONTHLY;BYMONTHDAY=15;COUNT=3", {"type": "absoluteMonthly", "dayOfMonth": 15}),
    ("FREQ=MONTHLY;BYDAY=2TU;COUNT=3", {"type": "relativeMonthly", "index": "second",
                                         "daysOfWeek": ["tuesday"]}),
    ("FREQ=MONTHLY;BYDAY=FR;BYSETPOS=-1", {"type": "relativeMonthly", "index": "last"}),
    ("FREQ=YEARLY;COUNT=4", {"type": "absoluteYearly", "month": 3, "dayOfMonth": 15}),
    ("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", {"type": "relativeYearly", "month": 11,
                                           "index": "fourth"}),
])
def test_each_pattern_type_both_ways(rule: str, pattern: dict):
    ics = vcal("DTSTART;TZID=Europe/Paris:20270315T090000",
               "DTEND;TZID=Europe/Paris:20270315T100000", "SUMMARY:Série", f"RRULE:{rule}")
    body, plan = to_graph(ics, TZ)
    assert plan is not None
    assert pattern.items() <= body["recurrence"]["pattern"].items()
    start = datetime(2027, 3, 15, 9)
    again = recurrence_rule(body["recurrence"], False, TZ, start)
    redone, _ = to_graph(vcal("DTSTART;TZID=Europe/Paris:20270315T090000",
                              "DTEND;TZID=Europe/Paris:20270315T100000", "SUMMARY:Série",
                              "RRULE:" + again.to_ical().decode()), TZ)
    assert redone["recurrence"]["pattern"] == body["recurrence"]["pattern"]
    # the same occurrences (the rule may be spelled otherwise: BYDAY=-1FR for BYSETPOS=-1)
    assert starts(round_trip(ics)) == starts(ics)


def starts(ics: str) -> list[datetime]:
    parsed = parse_object(ics, TZ)
    return [e.start for e in expand(parsed.series_ics or "", datetime(2027, 1, 1),
                                    datetime(2029, 1, 1), TZ)]


@pytest.mark.parametrize(("rule", "reason"), [
    ("FREQ=HOURLY;COUNT=3", "HOURLY"),
    ("FREQ=MONTHLY;BYMONTHDAY=1,15", "several BYMONTHDAY"),
    ("FREQ=MONTHLY;BYDAY=MO;BYSETPOS=-2", "not -2"),
    ("FREQ=YEARLY;BYMONTH=1,7", "several BYMONTH"),
    ("FREQ=WEEKLY;BYHOUR=9,15", "BYHOUR"),
])
def test_patterns_graph_cannot_express_are_refused_with_the_reason(rule: str, reason: str):
    ics = vcal("DTSTART;TZID=Europe/Paris:20270315T090000",
               "DTEND;TZID=Europe/Paris:20270315T100000", "SUMMARY:S", f"RRULE:{rule}")
    with pytest.raises(Unsupported, match=reason):
        to_graph(ics, TZ)


def test_rdate_and_cancelled_status_are_refused():
    with pytest.raises(Unsupported, match="RDATE"):
        to_graph(vcal("DTSTART:20270315T090000Z", "DTEND:20270315T100000Z", "SUMMARY:S",
                      "RRULE:FREQ=DAILY;COUNT=2", "RDATE:20270401T090000Z"), TZ)
    with pytest.raises(Unsupported, match="cancelled"):
        to_graph(vcal("DTSTART:20270315T090000Z", "DTEND:20270315T100000Z", "SUMMARY:S",
                      "STATUS:CANCELLED"), TZ)


def test_exceptions_and_cancellations_both_ways():
    override = ("BEGIN:VEVENT\r\nUID:u-1\r\nDTSTAMP:20260101T000000Z\r\n"
                "RECURRENCE-ID;TZID=Europe/Paris:20271108T090000\r\n"
                "DTSTART;TZID=Europe/Paris:20271109T140000\r\n"
                "DTEND;TZID=Europe/Paris:20271109T150000\r\nSUMMARY:Déplacé\r\nEND:VEVENT\r\n")
    # across the end of summer time: 09:00 in Paris is 07:00 then 08:00 UTC
    ics = vcal("DTSTART;TZID=Europe/Paris:20271018T090000",
               "DTEND;TZID=Europe/Paris:20271018T100000", "SUMMARY:Hebdo",
               "RRULE:FREQ=WEEKLY;COUNT=5", "EXDATE;TZID=Europe/Paris:20271025T090000",
               overrides=override)
    body, plan = to_graph(ics, TZ)
    assert plan is not None
    assert plan.cancelled == {"20271025T070000Z"}
    assert set(plan.exceptions) == {"20271108T080000Z"}
    assert plan.exceptions["20271108T080000Z"]["start"] == {
        "dateTime": "2027-11-09T14:00:00", "timeZone": TZ}
    moved = answer(plan.exceptions["20271108T080000Z"], id="E1_x", type="exception",
                   originalStart="2027-11-08T08:00:00Z")
    reading = SeriesReading(answer(body), [moved], {"20271025T070000Z"})
    back = graph_to_ics(reading, "u-1", TZ)
    assert content_key(back, TZ) == content_key(ics, TZ)
