"""One test driver per remote kind, so that one test body runs against every target.

The ``remote`` fixture is parametrised over the remotes the bridge supports (the in-memory
target and Google, through its loopback fake and the real google-api-python-client). Each
driver gives a fresh :class:`~bridge.targets.base.Target` per run and acts on the remote as
"another client" would, through the remote's own test API (never through our target), and
reads back what the remote holds. Outlook's targets join by adding a driver here.

Use it from a test module with ``from tests.remotes import remote_fixture  # noqa: F401``
(the fixture is named ``remote``); times are naive UTC, as everywhere in the bridge.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import pytest
from icalendar import Calendar, Event

from bridge.ical import parse_object
from bridge.ical.series import expand
from bridge.ical.timezones import now_utc, zone
from bridge.store.objects import HORIZON
from bridge.targets.base import Target, Window
from bridge.targets.google import GoogleTarget
from bridge.targets.memory import MemoryAccount, MemoryCalendar
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"
TZ = "Europe/Paris"
LOGIN = "alice"
FAR = timedelta(days=800)   # how far ahead occurrences are read back


def at(days: int, hour: int = 10) -> datetime:
    """A whole hour ``days`` from today (naive UTC)."""
    return (now_utc() + timedelta(days=days)).replace(hour=hour, minute=0, second=0,
                                                      microsecond=0)


def window(days_back: int = 0) -> Window:
    """The engine's window: from now (minus ``days_back``) to one year ahead."""
    now = now_utc()
    return Window(now - timedelta(days=days_back), now + HORIZON)


def local(instant: datetime) -> datetime:
    """A naive UTC instant as the wall time of ``TZ`` (aware)."""
    return instant.replace(tzinfo=UTC).astimezone(zone(TZ))


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Seen:
    """One object the remote holds now (a series: its master), comparable across remotes."""

    remote_id: str
    summary: str
    start: datetime      # naive UTC
    raw: Any             # the remote's own record (Google event dict, memory MemoryObject)


class Remote(Protocol):
    kind: str
    #: remote-only fields the remote keeps beside the iCalendar (None: it keeps none)
    extra_fields: tuple[str, ...] | None

    def target(self, calendar: str = CALENDAR) -> Target:
        """A fresh target, as one run of the engine would make."""

    def add(self, summary: str, start: datetime, *, hours: int = 1, rrule: str | None = None
            ) -> str:
        """Another client creates an event; its remote id."""

    def edit(self, remote_id: str, *, summary: str | None = None,
             start: datetime | None = None) -> None:
        """Another client edits an event (a new start keeps the duration)."""

    def edit_occurrence(self, remote_id: str, original_start: datetime, *,
                        summary: str | None = None, start: datetime | None = None) -> None:
        """Another client edits one occurrence of a series (an exception)."""

    def cancel_occurrence(self, remote_id: str, original_start: datetime) -> None:
        """Another client deletes one occurrence of a series."""

    def delete(self, remote_id: str) -> None:
        """Another client deletes an event (a whole series)."""

    def set_extras(self, remote_id: str) -> dict[str, Any]:
        """Another client sets fields Gestan does not own; what it set."""

    def extras(self, remote_id: str) -> dict[str, Any]:
        """Those fields as the remote holds them now."""

    def live(self) -> list[Seen]:
        """What the remote holds now (deleted objects left out)."""

    def occurrences(self, remote_id: str) -> list[tuple[str, datetime]]:
        """(summary, start) of every live instance of an object, by start, as the remote
        expands it."""

    def expire_state(self) -> None:
        """Every delta state handed out so far is refused from now on."""

    def fail_next(self, count: int = 1, *, after_apply: bool = False) -> None:
        """The next ``count`` operations stop the run (the remote is down); ``after_apply``:
        a write is applied first and its answer lost (a crash after the remote's commit)."""

    @property
    def request_count(self) -> int:
        """Requests that reached the remote (a batch counts once)."""


# ---------------------------------------------------------------------- memory

class MemoryRemote:
    """The in-memory target; another client edits the stored iCalendar text itself."""

    kind = "memory"
    extra_fields: tuple[str, ...] | None = ("colour", "attendees")

    def __init__(self) -> None:
        self.account = MemoryAccount(TZ)
        self.calendar: MemoryCalendar = self.account.add_calendar(CALENDAR)
        self._uids = itertools.count(1)

    def target(self, calendar: str = CALENDAR) -> Target:
        return self.account.target(calendar, TZ)

    def add(self, summary: str, start: datetime, *, hours: int = 1, rrule: str | None = None
            ) -> str:
        event = Event()
        event.add("UID", f"other-client-{next(self._uids)}@example.com")
        event.add("DTSTAMP", datetime(2024, 1, 1, tzinfo=UTC))
        event.add("DTSTART", local(start))
        event.add("DTEND", local(start + timedelta(hours=hours)))
        event.add("SUMMARY", summary)
        if rrule:
            event.add("RRULE", _rule(rrule))
        calendar = Calendar()
        calendar.add("PRODID", "-//another client//EN")
        calendar.add("VERSION", "2.0")
        calendar.add_component(event)
        return self.calendar.add(calendar.to_ical().decode()).remote_id

    def _edit_vevent(self, remote_id: str, rid: datetime | None, summary: str | None,
                     start: datetime | None) -> None:
        calendar = Calendar.from_ical(self._ics(remote_id))
        events = [c for c in calendar.walk("VEVENT")]
        master = next(e for e in events if "RECURRENCE-ID" not in e)
        if rid is None:
            target = master
        else:
            target = next((e for e in events if "RECURRENCE-ID" in e
                           and utc(e.decoded("RECURRENCE-ID")) == rid), None)
            if target is None:
                length = master.decoded("DTEND") - master.decoded("DTSTART")
                target = Event()
                for name in ("UID", "DTSTAMP", "SUMMARY"):
                    target.add(name, master.decoded(name))
                target.add("RECURRENCE-ID", local(rid))
                target.add("DTSTART", local(rid))
                target.add("DTEND", local(rid) + length)
                calendar.add_component(target)
        if summary is not None:
            target.pop("SUMMARY", None)
            target.add("SUMMARY", summary)
        if start is not None:
            length = target.decoded("DTEND") - target.decoded("DTSTART")
            for name, value in (("DTSTART", start), ("DTEND", start + length)):
                target.pop(name, None)
                target.add(name, local(value))
        self.calendar.edit(remote_id, calendar.to_ical().decode())

    def edit(self, remote_id: str, *, summary: str | None = None,
             start: datetime | None = None) -> None:
        self._edit_vevent(remote_id, None, summary, start)

    def edit_occurrence(self, remote_id: str, original_start: datetime, *,
                        summary: str | None = None, start: datetime | None = None) -> None:
        self._edit_vevent(remote_id, original_start, summary, start)

    def cancel_occurrence(self, remote_id: str, original_start: datetime) -> None:
        calendar = Calendar.from_ical(self._ics(remote_id))
        master = next(e for e in calendar.walk("VEVENT") if "RECURRENCE-ID" not in e)
        master.add("EXDATE", local(original_start))
        self.calendar.edit(remote_id, calendar.to_ical().decode())

    def delete(self, remote_id: str) -> None:
        self.calendar.delete(remote_id)

    def set_extras(self, remote_id: str) -> dict[str, Any]:
        fields = {"colour": "tomato", "attendees": ["bob@example.com"]}
        self.calendar.set_fields(remote_id, **fields)
        return fields

    def extras(self, remote_id: str) -> dict[str, Any]:
        stored = self.calendar.object(remote_id)
        assert stored is not None
        return {k: stored.fields.get(k) for k in self.extra_fields or ()}

    def _ics(self, remote_id: str) -> str:
        stored = self.calendar.object(remote_id)
        assert stored is not None and not stored.deleted, remote_id
        return stored.ics

    def live(self) -> list[Seen]:
        out = []
        for stored in self.calendar.live():  # read raw: the remote may hold what we refuse
            master = next(e for e in Calendar.from_ical(stored.ics).walk("VEVENT")
                          if "RECURRENCE-ID" not in e)
            out.append(Seen(stored.remote_id, str(master.get("SUMMARY", "")),
                            utc(master.decoded("DTSTART")), stored))
        return out

    def occurrences(self, remote_id: str) -> list[tuple[str, datetime]]:
        parsed = parse_object(self._ics(remote_id), TZ)
        if not parsed.is_series:
            return [(parsed.master.subject, parsed.master.start)]
        now = now_utc()
        found = expand(parsed.series_ics, now - FAR, now + FAR, TZ)
        return sorted(((e.subject, e.start) for e in found if e.status != "CANCELLED"),
                      key=lambda o: o[1])

    def expire_state(self) -> None:
        self.calendar.expire_states()

    def fail_next(self, count: int = 1, *, after_apply: bool = False) -> None:
        self.account.fail_next(count, after_apply=after_apply)

    @property
    def request_count(self) -> int:
        return self.account.request_count


def _rule(text: str) -> dict[str, Any]:
    """"FREQ=WEEKLY;COUNT=6" as icalendar wants it."""
    return dict(part.split("=", 1) for part in text.split(";"))


# ---------------------------------------------------------------------- google

class GoogleRemote:
    """Google Calendar v3 through the loopback fake; another client uses the fake's own
    test API (not logged), or its HTTP API for instance listings (not counted here)."""

    kind = "google"
    extra_fields: tuple[str, ...] | None = ("attendees", "reminders", "colorId")

    def __init__(self, fake: FakeGoogleCalendar) -> None:
        self.fake = fake
        self.cal = fake.add_calendar(CALENDAR, time_zone=TZ)
        self._own_requests = 0

    def target(self, calendar: str = CALENDAR) -> Target:
        return GoogleTarget(self.fake.credentials(), LOGIN, calendar, TZ,
                            api_url=self.fake.api_url, sleep=lambda s: None)

    @staticmethod
    def _time(instant: datetime) -> dict[str, str]:
        return {"dateTime": instant.isoformat() + "Z", "timeZone": TZ}

    def add(self, summary: str, start: datetime, *, hours: int = 1, rrule: str | None = None
            ) -> str:
        body: dict[str, Any] = {"summary": summary, "start": self._time(start),
                                "end": self._time(start + timedelta(hours=hours))}
        if rrule:
            body["recurrence"] = [f"RRULE:{rrule}"]
        return self.fake.insert_event(self.cal, body)["id"]

    def _changes(self, event_id: str, summary: str | None, start: datetime | None
                 ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if summary is not None:
            changes["summary"] = summary
        if start is not None:
            # an occurrence not yet an exception lasts as long as its series' master
            current = (self.fake.event(self.cal, event_id)
                       or self.fake.event(self.cal, event_id.rpartition("_")[0]))
            assert current is not None, event_id
            old_start, old_end = (_google_instant(current[k]) for k in ("start", "end"))
            changes["start"] = self._time(start)
            changes["end"] = self._time(start + (old_end - old_start))
        return changes

    def edit(self, remote_id: str, *, summary: str | None = None,
             start: datetime | None = None) -> None:
        self.fake.patch_event(self.cal, remote_id, self._changes(remote_id, summary, start))

    @staticmethod
    def _instance(remote_id: str, original_start: datetime) -> str:
        return f"{remote_id}_{original_start:%Y%m%dT%H%M%SZ}"

    def edit_occurrence(self, remote_id: str, original_start: datetime, *,
                        summary: str | None = None, start: datetime | None = None) -> None:
        instance = self._instance(remote_id, original_start)
        self.fake.patch_event(self.cal, instance, self._changes(instance, summary, start))

    def cancel_occurrence(self, remote_id: str, original_start: datetime) -> None:
        self.fake.delete_event(self.cal, self._instance(remote_id, original_start))

    def delete(self, remote_id: str) -> None:
        self.fake.delete_event(self.cal, remote_id)

    def set_extras(self, remote_id: str) -> dict[str, Any]:
        fields = {"attendees": [{"email": "bob@example.com", "responseStatus": "accepted"}],
                  "reminders": {"useDefault": False,
                                "overrides": [{"method": "popup", "minutes": 42}]},
                  "colorId": "5"}
        self.fake.patch_event(self.cal, remote_id, fields)
        return fields

    def extras(self, remote_id: str) -> dict[str, Any]:
        event = self.fake.event(self.cal, remote_id)
        assert event is not None
        return {k: event.get(k) for k in self.extra_fields or ()}

    def live(self) -> list[Seen]:
        return [Seen(e["id"], e.get("summary", ""), _google_instant(e["start"]), e)
                for e in self.fake.events(self.cal, include_cancelled=False)
                if "recurringEventId" not in e]

    def occurrences(self, remote_id: str) -> list[tuple[str, datetime]]:
        before = self.fake.request_count
        now = now_utc()
        items = self.fake.build_service().events().instances(
            calendarId=self.cal, eventId=remote_id, maxResults=2500,
            timeMin=(now - FAR).isoformat() + "Z",
            timeMax=(now + FAR).isoformat() + "Z").execute()["items"]
        self._own_requests += self.fake.request_count - before
        return sorted(((i.get("summary", ""), _google_instant(i["start"])) for i in items
                       if i.get("status") != "cancelled"), key=lambda o: o[1])

    def expire_state(self) -> None:
        self.fake.expire_sync_tokens()

    def fail_next(self, count: int = 1, *, after_apply: bool = False) -> None:
        # quotaExceeded is not retried: the run stops at once, as the driver promises
        self.fake.fail_next(count, 403, "quotaExceeded", after_apply=after_apply)

    @property
    def request_count(self) -> int:
        return self.fake.request_count - self._own_requests


def _google_instant(value: dict[str, str]) -> datetime:
    if "date" in value:
        return datetime.fromisoformat(value["date"])
    return utc(datetime.fromisoformat(value["dateTime"].replace("Z", "+00:00")))


# ---------------------------------------------------------------------- fixture

@contextlib.contextmanager
def _memory() -> Iterator[Remote]:
    yield MemoryRemote()


@contextlib.contextmanager
def _google() -> Iterator[Remote]:
    with FakeGoogleCalendar(time_zone=TZ) as fake:
        yield GoogleRemote(fake)


# Each remote kind's driver: a context manager giving an empty remote with CALENDAR. Other
# targets' drivers live in their own modules (tests/remotes_<kind>.py, each with an
# ``open_remote()``) and join every test of the ``remote`` fixture as soon as they exist.
DRIVERS: dict[str, Callable[[], contextlib.AbstractContextManager[Remote]]] = {
    "memory": _memory, "google": _google}
for _kind in ("ews", "graph"):
    if importlib.util.find_spec(f"tests.remotes_{_kind}") is not None:
        DRIVERS[_kind] = importlib.import_module(f"tests.remotes_{_kind}").open_remote
REMOTES = tuple(DRIVERS)


@pytest.fixture(params=REMOTES, name="remote")
def remote_fixture(request: pytest.FixtureRequest) -> Iterator[Remote]:
    """Each remote kind in turn, empty but for the calendar ``CALENDAR``."""
    with DRIVERS[request.param]() as remote:
        yield remote
