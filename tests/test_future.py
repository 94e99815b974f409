"""Series changed "this and following" cut into plain series (bridge/ical/future.py).

Every case: the parts together have exactly the occurrences recurring-ical-events (the
reference reading) expands from the whole text, each part is a plain series (no RANGE, one
RRULE) under its own UID, and a second cut of a part changes nothing.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import recurring_ical_events
from icalendar import Calendar

from bridge.ical import parse_object
from bridge.ical.content import MASTER, content_of
from bridge.ical.future import CannotCut, cut_series, has_future, part_of, part_uid, with_uid
from bridge.targets import ews_mapping, google_mapping, graph_mapping

TZ = "Europe/Paris"
WINDOW = (datetime(2029, 6, 1), datetime(2033, 1, 1))


def vevent(*lines: str, uid: str = "series@phone") -> str:
    return ("BEGIN:VEVENT\r\n" f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n")


def vcalendar(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//future//EN\r\n"
            + "".join(events) + "END:VCALENDAR\r\n")


def paris(stamp: str) -> str:
    return f";TZID=Europe/Paris:{stamp}"


def future(rid: str, start: str, end: str, summary: str, *extra: str) -> str:
    return vevent(f"RECURRENCE-ID;RANGE=THISANDFUTURE{rid}", f"DTSTART{start}", f"DTEND{end}",
                  f"SUMMARY:{summary}", *extra)


def override(rid: str, start: str, end: str, summary: str) -> str:
    return vevent(f"RECURRENCE-ID{rid}", f"DTSTART{start}", f"DTEND{end}", f"SUMMARY:{summary}")


def occurrences(text: str) -> list[tuple]:
    found = recurring_ical_events.of(Calendar.from_ical(text)).between(*WINDOW)
    return sorted((c.decoded("DTSTART").isoformat(), c.decoded("DTEND").isoformat(),
                   str(c.get("SUMMARY", ""))) for c in found
                  if str(c.get("STATUS", "")).upper() != "CANCELLED")


CASES = {
    "weekly count, moved later, overrides and cancellations on both sides": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY;COUNT=10", f"EXDATE{paris('20300114T100000')}",
               f"EXDATE{paris('20300304T100000')}", "SUMMARY:Weekly"),
        future(paris("20300204T100000"), paris("20300204T140000"), paris("20300204T153000"),
               "Afternoon"),
        override(paris("20300121T100000"), paris("20300121T120000"), paris("20300121T130000"),
                 "Early"),
        override(paris("20300218T100000"), paris("20300219T170000"), paris("20300219T180000"),
                 "Moved one")),
    "open-ended, retitled only": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY", "SUMMARY:Weekly", "LOCATION:Room 1"),
        future(paris("20300311T100000"), paris("20300311T100000"), paris("20300311T110000"),
               "Weekly (new room)", "LOCATION:Room 2")),
    "daily until, moved to the next day": vcalendar(
        vevent(f"DTSTART{paris('20300107T090000')}", f"DTEND{paris('20300107T093000')}",
               "RRULE:FREQ=DAILY;UNTIL=20300131T080000Z", "SUMMARY:Stand-up"),
        future(paris("20300115T090000"), paris("20300116T090000"), paris("20300116T093000"),
               "Stand-up (a day later)")),
    "chosen weekdays, moved a day": vcalendar(
        vevent(f"DTSTART{paris('20300107T180000')}", f"DTEND{paris('20300107T190000')}",
               "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=12", "SUMMARY:Training"),
        future(paris("20300121T180000"), paris("20300122T180000"), paris("20300122T190000"),
               "Training (Tue/Thu)")),
    "all-day, moved a day": vcalendar(
        vevent("DTSTART;VALUE=DATE:20300107", "DTEND;VALUE=DATE:20300108",
               "RRULE:FREQ=WEEKLY;UNTIL=20300325", "SUMMARY:On call",
               "EXDATE;VALUE=DATE:20300311"),
        future(";VALUE=DATE:20300204", ";VALUE=DATE:20300205", ";VALUE=DATE:20300206",
               "On call (Tuesday)")),
    "floating times": vcalendar(
        vevent("DTSTART:20300107T100000", "DTEND:20300107T110000",
               "RRULE:FREQ=DAILY;COUNT=8", "SUMMARY:Floating"),
        future(":20300110T100000", ":20300110T113000", ":20300110T123000", "Floating later")),
    "two ranges chained": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY;COUNT=12", "SUMMARY:A"),
        future(paris("20300128T100000"), paris("20300128T120000"), paris("20300128T130000"),
               "B"),
        future(paris("20300225T100000"), paris("20300225T080000"), paris("20300225T090000"),
               "C"),
        override(paris("20300304T100000"), paris("20300304T160000"), paris("20300304T170000"),
                 "C moved")),
    "the range's own occurrence deleted": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY;COUNT=6", f"EXDATE{paris('20300121T100000')}",
               "SUMMARY:Weekly"),
        future(paris("20300121T100000"), paris("20300121T150000"), paris("20300121T160000"),
               "Afternoon")),
    "this and following cancelled": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY;COUNT=6", "SUMMARY:Weekly"),
        future(paris("20300128T100000"), paris("20300128T100000"), paris("20300128T110000"),
               "Weekly", "STATUS:CANCELLED")),
    "across the change to summer time": vcalendar(
        vevent(f"DTSTART{paris('20300304T090000')}", f"DTEND{paris('20300304T100000')}",
               "RRULE:FREQ=WEEKLY;COUNT=8", "SUMMARY:Weekly"),
        future(paris("20300318T090000"), paris("20300318T110000"), paris("20300318T120000"),
               "Weekly at 11")),
    "monthly on the second Tuesday, new time": vcalendar(
        vevent(f"DTSTART{paris('20300108T100000')}", f"DTEND{paris('20300108T110000')}",
               "RRULE:FREQ=MONTHLY;BYDAY=2TU;COUNT=8", "SUMMARY:Board"),
        future(paris("20300409T100000"), paris("20300409T140000"), paris("20300409T150000"),
               "Board (afternoon)")),
    "from the first occurrence on": vcalendar(
        vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
               "RRULE:FREQ=WEEKLY;COUNT=4", "SUMMARY:Weekly"),
        future(paris("20300107T100000"), paris("20300107T120000"), paris("20300107T130000"),
               "All moved")),
}


@pytest.mark.parametrize("name", CASES)
def test_the_parts_have_the_occurrences_of_the_whole(name: str):
    text = CASES[name]
    parts = cut_series(text, TZ)
    assert parts[0].key == "" and parts[0].uid == "series@phone"
    assert len({p.uid for p in parts}) == len(parts) and [p.uid for p in parts] == [
        part_uid("series@phone", p.key) for p in parts]
    union = sorted(o for p in parts for o in occurrences(p.ics))
    assert union == occurrences(text)
    for part in parts:
        assert not has_future(part.ics) and "RANGE=" not in part.ics
        events = Calendar.from_ical(part.ics).walk("VEVENT")
        assert {str(e["UID"]) for e in events} == {part.uid}
        [master] = [e for e in events if "RECURRENCE-ID" not in e]
        assert "RRULE" in master
        assert [p.ics for p in cut_series(part.ics, TZ)] == [part.ics], "a part is plain"
    expected = 1 if name in ("from the first occurrence on",
                             "this and following cancelled") else None
    assert expected is None or len(parts) == expected


def test_later_overrides_and_deletions_go_with_the_later_part():
    parts = cut_series(CASES["weekly count, moved later, overrides and cancellations on "
                             "both sides"], TZ)
    assert [p.key for p in parts] == ["", "20300204T090000Z"]
    first, later = (Calendar.from_ical(p.ics) for p in parts)
    [early] = [e for e in first.walk("VEVENT") if "RECURRENCE-ID" in e]
    assert str(early["SUMMARY"]) == "Early"
    master = next(e for e in first.walk("VEVENT") if "RECURRENCE-ID" not in e)
    assert master["RRULE"].to_ical() == b"FREQ=WEEKLY;UNTIL=20300128T225959Z"
    later_master = next(e for e in later.walk("VEVENT") if "RECURRENCE-ID" not in e)
    assert later_master["RRULE"].to_ical() == b"FREQ=WEEKLY;COUNT=6"
    [moved] = [e for e in later.walk("VEVENT") if "RECURRENCE-ID" in e]
    # its RECURRENCE-ID now names the later series' own occurrence (moved to 14:00)
    assert moved.decoded("RECURRENCE-ID").isoformat() == "2030-02-18T14:00:00+01:00"
    assert [d.dt.isoformat() for d in later_master["EXDATE"].dts] == [
        "2030-03-04T14:00:00+01:00"]


def test_a_series_is_cut_where_its_remote_parts_are():
    """``at``: a plain series cut where the remote holds parts (the phone took its
    THISANDFUTURE back since): the same occurrences, the part keyed as the link says."""
    text = vcalendar(vevent(f"DTSTART{paris('20300107T100000')}",
                            f"DTEND{paris('20300107T110000')}", "RRULE:FREQ=WEEKLY;COUNT=6",
                            "SUMMARY:Weekly"))
    assert [p.ics for p in cut_series(text, TZ)] == [text]
    parts = cut_series(text, TZ, at=["20300121T090000Z"])
    assert [p.key for p in parts] == ["", "20300121T090000Z"]
    assert sorted(o for p in parts for o in occurrences(p.ics)) == occurrences(text)
    assert len(occurrences(parts[1].ics)) == 4


@pytest.mark.parametrize("text, reason", [
    (vcalendar(vevent(f"DTSTART{paris('20300115T100000')}", f"DTEND{paris('20300115T110000')}",
                      "RRULE:FREQ=MONTHLY;BYMONTHDAY=15;COUNT=6", "SUMMARY:Rent"),
               future(paris("20300315T100000"), paris("20300316T100000"),
                      paris("20300316T110000"), "Rent (a day later)")),
     "chosen days of the month"),
    (vcalendar(vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
                      "RRULE:FREQ=WEEKLY;COUNT=6", "SUMMARY:Weekly"),
               future(paris("20300122T100000"), paris("20300122T140000"),
                      paris("20300122T150000"), "Not an occurrence")),
     "names no occurrence"),
    (vcalendar(vevent(f"DTSTART{paris('20300107T100000')}", f"DTEND{paris('20300107T110000')}",
                      "RDATE" + paris("20300109T100000"), "SUMMARY:Dates"),
               future(paris("20300109T100000"), paris("20300109T140000"),
                      paris("20300109T150000"), "Later")),
     "without RRULE"),
])
def test_what_cannot_be_cut_exactly_says_why(text: str, reason: str):
    with pytest.raises(CannotCut, match=reason):
        cut_series(text, TZ)


def test_part_uids_name_their_series():
    assert part_uid("abc@x", "") == "abc@x"
    assert part_of(part_uid("abc@x", "20300121T090000Z")) == ("abc@x", "20300121T090000Z")
    assert part_of(part_uid("abc_R1@x", "20300121")) == ("abc_R1@x", "20300121")
    assert part_of("abc@x") is None and part_of("x_R2030") is None
    text = CASES["floating times"]
    renamed = with_uid(text, "other@x")
    assert {str(e["UID"]) for e in Calendar.from_ical(renamed).walk("VEVENT")} == {"other@x"}
    assert with_uid(text, "series@phone") == text


def test_this_and_following_is_not_the_same_appointments_as_one_occurrence_changed():
    """The content key tells a THISANDFUTURE override from the same override of one
    occurrence: the engine never takes one for the other."""
    text = CASES["weekly count, moved later, overrides and cancellations on both sides"]
    single = text.replace("RECURRENCE-ID;RANGE=THISANDFUTURE;", "RECURRENCE-ID;")
    whole, one = (content_of(parse_object(t, TZ), TZ) for t in (text, single))
    assert whole.key != one.key and whole.parts[MASTER] != one.parts[MASTER]
    assert has_future(text) and not has_future(single)


def test_the_mappings_refuse_a_range_rather_than_change_one_occurrence():
    """Google, Exchange and Graph have no THISANDFUTURE: written as an exception it would
    change one occurrence there and all later ones on the phone. The engine hands them the
    parts; handed the whole, each mapping refuses with the reason (the run reports it)."""
    parsed = parse_object(CASES["two ranges chained"], TZ)
    for write in (lambda: google_mapping.ics_to_google(parsed, TZ),
                  lambda: graph_mapping.to_graph(parsed, TZ),
                  lambda: ews_mapping.object_plan(parsed, TZ)):
        with pytest.raises(ValueError, match="this and following"):
            write()
    for part in cut_series(CASES["two ranges chained"], TZ):
        google_mapping.ics_to_google(part.ics, TZ)
        graph_mapping.to_graph(part.ics, TZ)
        ews_mapping.object_plan(parse_object(part.ics, TZ), TZ)
