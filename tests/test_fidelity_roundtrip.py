"""Property: any series a client may send (rules, zones, all-day, EXDATE/RDATE, overrides of
every kind) comes back from PUT → GET with the same occurrences, and Gestan's agenda holds
exactly those occurrences, as recurring-ical-events reads the text sent.

Bounded and deterministic in the suite: a few dozen examples on one server. To explore,
GESTAN_FIDELITY_EXAMPLES=1000 runs that many random examples.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from icalendar import Calendar

from bridge.server import Server, load_configuration
from bridge.store import open_store
from tests.conftest import PASSWORDS, REPO, RunningServer
from tests.test_fidelity import agenda_expected, agenda_of, occurrences, put_and_get

EXPLORE = os.environ.get("GESTAN_FIDELITY_EXAMPLES")
EXAMPLES = int(EXPLORE or "30")
KINDS = ["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC", "floating", "all-day"]
WEEKDAYS = ["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
_names = itertools.count()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory) -> Iterator[RunningServer]:
    """One server for every example (a server per example would be most of the time)."""
    path: Path = tmp_path_factory.mktemp("roundtrip") / "gestan.db"
    store = open_store(f"sqlite:///{path}")
    store.add_user("alice", PASSWORDS["alice"], timezone="Europe/Paris")
    store.add_user("bob", PASSWORDS["bob"], timezone="America/Montreal")
    configuration = load_configuration(
        REPO / "radicale.conf", store.url, "127.0.0.1", 0,
        overrides={"auth": {"delay": "0.01"}, "logging": {"level": "error"}})
    running = Server(configuration, ("127.0.0.1", 0)).start()
    try:
        yield RunningServer(running.url, store)
    finally:
        running.stop()


def spell(value: datetime | date, kind: str) -> str:
    """A DTSTART-like value (``value`` is the wall-clock time in ``kind``) as written."""
    if kind == "all-day":
        return f";VALUE=DATE:{value:%Y%m%d}"
    if kind == "floating":
        return f":{value:%Y%m%dT%H%M%S}"
    if kind == "UTC":
        return f":{value:%Y%m%dT%H%M%S}Z"
    return f";TZID={kind}:{value:%Y%m%dT%H%M%S}"


def same_occurrence(value: datetime | date, kind: str) -> list[str]:
    """The spellings of one RECURRENCE-ID that name the occurrence starting at ``value`` (as
    recurring-ical-events gives it, in the series' own zone): Outlook and Lotus write UTC,
    some phones the wall-clock time without a zone, some a bare DATE..."""
    if kind == "all-day":
        return [f";VALUE=DATE:{value:%Y%m%d}", f":{value:%Y%m%d}", f":{value:%Y%m%dT000000}",
                f":{value:%Y%m%dT000000}Z"]
    if value.tzinfo is None:
        return [f":{value:%Y%m%dT%H%M%S}", f":{value:%Y%m%dT%H%M%S}Z"]
    spellings = [f":{value.astimezone(UTC):%Y%m%dT%H%M%S}Z",
                 f":{value:%Y%m%dT%H%M%S}"]  # the series' own wall-clock time
    zone_name = "Europe/Paris" if kind in ("UTC", "floating") else kind
    local = value.astimezone(ZoneInfo(zone_name))
    spellings.append(f";TZID={zone_name}:{local:%Y%m%dT%H%M%S}")
    return spellings


def vevent(*lines: str) -> str:
    return "BEGIN:VEVENT\r\n" + "".join(f"{line}\r\n" for line in lines) + "END:VEVENT\r\n"


def vcalendar(*events: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//roundtrip//EN\r\n"
            + "".join(events) + "END:VCALENDAR\r\n")


@st.composite
def series(draw) -> tuple[str, str]:
    """(login, iCalendar text) of one series."""
    uid = f"rt-{next(_names)}"
    kind = draw(st.sampled_from(KINDS))
    first_day = date.today() + timedelta(days=draw(st.integers(3, 60)))
    start = datetime.combine(first_day, datetime.min.time()).replace(
        hour=draw(st.integers(0, 23)), minute=draw(st.sampled_from([0, 30])))
    rule = [f"FREQ={draw(st.sampled_from(['DAILY', 'WEEKLY', 'MONTHLY']))}"]
    interval = draw(st.integers(1, 3))
    if interval > 1:
        rule.append(f"INTERVAL={interval}")
    if rule[0] == "FREQ=WEEKLY" and draw(st.booleans()):
        days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=3, unique=True))
        rule.append("BYDAY=" + ",".join(days))
    ending = draw(st.sampled_from(["count", "until", "none"]))
    if ending == "count":
        rule.append(f"COUNT={draw(st.integers(1, 10))}")
    elif ending == "until":
        last = first_day + timedelta(days=draw(st.integers(0, 90)))
        if kind == "all-day":
            rule.append(draw(st.sampled_from([
                f"UNTIL={last:%Y%m%d}", f"UNTIL={last - timedelta(days=1):%Y%m%d}T230000Z",
                f"UNTIL={last:%Y%m%d}T000000Z"])))
        elif kind == "floating":
            rule.append(f"UNTIL={last:%Y%m%d}T235900")
        else:
            rule.append(f"UNTIL={last:%Y%m%d}T235900Z")
    if kind == "all-day":
        start_line = "DTSTART" + spell(start.date(), kind)
        end_line = draw(st.sampled_from([
            "DTEND" + spell(start.date() + timedelta(days=draw(st.integers(1, 3))), kind),
            f"DURATION:P{draw(st.integers(1, 3))}D",
            f"DURATION:PT{draw(st.integers(1, 5))}H"]))
    else:
        length = timedelta(minutes=draw(st.sampled_from([15, 60, 90, 240])))
        start_line = "DTSTART" + spell(start, kind)
        end_kind = draw(st.sampled_from([kind, kind, kind, "UTC", "floating"]))
        end_line = draw(st.sampled_from([
            "DTEND" + spell(start + length, end_kind),
            f"DURATION:PT{int(length.total_seconds()) // 60}M"]))
    master_lines = [f"UID:{uid}", "DTSTAMP:20260101T000000Z", start_line, end_line,
                    "SUMMARY:Series", "RRULE:" + ";".join(rule)]
    source = vcalendar(vevent(*master_lines))
    generated = sorted((c["DTSTART"].dt for c in recurring_ical_events.of(
        Calendar.from_ical(source)).between(first_day, first_day + timedelta(days=400))),
        key=lambda v: v if isinstance(v, datetime) else datetime.combine(v, datetime.min.time()))
    generated = generated[:12]
    if not generated:
        return draw(st.sampled_from(["alice", "bob"])), source

    def local(value):  # an occurrence in the series' own zone (its end may have another)
        if isinstance(value, datetime) and value.tzinfo is not None and kind != "floating":
            return value.astimezone(UTC if kind == "UTC" else ZoneInfo(kind))
        return value

    picked = draw(st.lists(st.integers(0, len(generated) - 1), unique=True, max_size=6))
    exdates = picked[: draw(st.integers(0, len(picked)))]
    if exdates:
        master_lines.append("EXDATE" + spell_list([local(generated[i]) for i in exdates], kind))
    if draw(st.booleans()):
        extra = local(generated[-1]) + timedelta(days=draw(st.integers(1, 3)))
        master_lines.append("RDATE" + spell_value(extra, kind))
    events = [vevent(*master_lines)]
    future_used = False
    for number, index in enumerate(picked[len(exdates):] + draw(
            st.lists(st.sampled_from(exdates), max_size=1) if exdates else st.just([]))):
        original = local(generated[index])
        rid = draw(st.sampled_from(same_occurrence(generated[index], kind)))
        future = not future_used and draw(st.integers(0, 4)) == 0
        future_used |= future
        shift = timedelta(days=draw(st.integers(-1, 1)), hours=draw(st.integers(-3, 3)))
        if kind == "all-day":
            moved = original + timedelta(days=shift.days)
            times = ["DTSTART" + spell(moved, kind), "DTEND" + spell(moved + timedelta(days=1),
                                                                     kind)]
        else:
            moved = original + shift
            times = ["DTSTART" + spell_value(moved, kind),
                     "DTEND" + spell_value(moved + timedelta(minutes=45), kind)]
        lines = [f"UID:{uid}", "DTSTAMP:20260101T000000Z",
                 ("RECURRENCE-ID;RANGE=THISANDFUTURE" if future else "RECURRENCE-ID") + rid,
                 *times, f"SUMMARY:Changed {number}"]
        if draw(st.integers(0, 5)) == 0:
            lines.append("STATUS:CANCELLED")
        events.append(vevent(*lines))
    if ending != "none" and draw(st.integers(0, 5)) == 0:
        # an older version of a later occurrence, left behind by a client cutting the series
        after = local(generated[-1]) + timedelta(days=7)
        events[0] = events[0].replace("SUMMARY:Series", "SEQUENCE:2\r\nSUMMARY:Series")
        events.append(vevent(f"UID:{uid}", "DTSTAMP:20260101T000000Z", "SEQUENCE:1",
                             "RRULE:FREQ=WEEKLY", "RECURRENCE-ID" + spell_value(after, kind),
                             "DTSTART" + spell_value(after, kind),
                             ("DTEND" + spell_value(after + timedelta(hours=1), kind)
                              if kind != "all-day" else
                              "DTEND" + spell_value(after + timedelta(days=1), kind)),
                             "SUMMARY:Left behind"))
    return draw(st.sampled_from(["alice", "bob"])), vcalendar(*events)


def spell_value(value, kind: str) -> str:
    """An occurrence's value (aware for zoned kinds) as written in ``kind``."""
    if kind not in ("all-day", "floating") and isinstance(value, datetime) and value.tzinfo:
        value = value.replace(tzinfo=None)
    return spell(value, kind)


def spell_list(values: list, kind: str) -> str:
    texts = [spell_value(v, kind) for v in values]
    params, _, _ = texts[0].rpartition(":")
    return params + ":" + ",".join(t.rpartition(":")[2] for t in texts)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORE,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=series())
def test_a_series_comes_back_with_the_same_occurrences(shared_server, case):
    login, text = case
    name = Calendar.from_ical(text).walk("VEVENT")[0]["UID"]
    answer = put_and_get(shared_server, str(name), text, login)
    assert occurrences(answer.text) == occurrences(text), (text, answer.text)
    tz = shared_server.store.user(login).timezone
    assert agenda_of(shared_server, login, f"{name}.ics") == agenda_expected(text, tz), text
