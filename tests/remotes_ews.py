"""The EWS driver of tests/remotes.py: the loopback EWS fake, Outlook acting through its
test API (not logged, not counted), the target through the real exchangelib.

A remote "down" or an answer "lost" is a dropped connection (the fake closes it without
answering, after applying the request when the answer is lost): what a crash between the
server's commit and the client's reading looks like. Exchange cannot hold every rule
(no MINUTELY series can exist there): a test asking for one is skipped, with the reason.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from bridge.ical.timezones import now_utc
from bridge.targets.base import Target
from bridge.targets.ews import EwsTarget
from tests.fakes.ews import FakeEws, _Handler
from tests.fakes.loopback import POLL_INTERVAL
from tests.remotes import CALENDAR, FAR, LOGIN, TZ, Seen, local, utc

WINDOWS_TZ = "Romance Standard Time"   # Europe/Paris
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class _Dropped(Exception):
    """The connection is closed without an answer."""


class _DroppingHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        try:
            super().do_POST()
        except _Dropped:
            self.close_connection = True


class DroppingFakeEws(FakeEws):
    """The fake, able to drop connections before or after applying a request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.drops: list[bool] = []   # after_apply per dropped request

    def start(self) -> DroppingFakeEws:
        handler = type("Handler", (_DroppingHandler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL_INTERVAL,),
                                        daemon=True, name="fake-ews")
        self._thread.start()
        return self

    def _handle_http(self, headers: dict[str, str], body: bytes
                     ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            write = re.search(rb"<m:(CreateItem|UpdateItem|DeleteItem)\b", body) is not None
            if not self.drops or (self.drops[0] and not write):
                return super()._handle_http(headers, body)  # a lost answer is a write's
            after = self.drops.pop(0)
            self.injected_errors += 1
            if after:
                super()._handle_http(headers, body)
            else:
                self.request_count += 1
            raise _Dropped


def _recurrence(rrule: str, start: datetime) -> dict[str, dict[str, Any]]:
    parts = dict(p.split("=", 1) for p in rrule.split(";"))
    day = local(start).date()
    freq = parts.get("FREQ")
    if freq == "WEEKLY":
        pattern = {"WeeklyRecurrence": {"Interval": int(parts.get("INTERVAL", 1)),
                                        "DaysOfWeek": DAY_NAMES[day.weekday()],
                                        "FirstDayOfWeek": "Monday"}}
    elif freq == "DAILY":
        pattern = {"DailyRecurrence": {"Interval": int(parts.get("INTERVAL", 1))}}
    else:
        pytest.skip(f"Exchange cannot hold FREQ={freq}: no such item can exist there")
    if "COUNT" in parts:
        pattern["NumberedRecurrence"] = {"StartDate": day,
                                         "NumberOfOccurrences": int(parts["COUNT"])}
    else:
        pattern["NoEndRecurrence"] = {"StartDate": day}
    return pattern


def _aware(instant: datetime) -> datetime:
    return instant.replace(tzinfo=UTC)


class EwsRemote:
    """Exchange through the EWS fake, the calendar a folder under Calendar."""

    kind = "ews"
    extra_fields: tuple[str, ...] | None = ("Categories", "Importance", "Sensitivity",
                                            "ReminderIsSet", "ReminderMinutesBeforeStart")

    def __init__(self, fake: DroppingFakeEws) -> None:
        self.fake = fake
        self.folder = fake.add_folder(CALENDAR)

    def target(self, calendar: str = CALENDAR) -> Target:
        return EwsTarget(service_endpoint=self.fake.url, username=self.fake.username,
                         password=self.fake.password, email=self.fake.email,
                         calendar_name=calendar, default_tz=TZ, login=LOGIN,
                         sleep=lambda s: None, max_busy=2)

    def add(self, summary: str, start: datetime, *, hours: int = 1, rrule: str | None = None
            ) -> str:
        fields: dict[str, Any] = {
            "Subject": summary, "Start": _aware(start),
            "End": _aware(start + timedelta(hours=hours)),
            "StartTimeZone": WINDOWS_TZ, "EndTimeZone": WINDOWS_TZ}
        if rrule:
            fields["Recurrence"] = _recurrence(rrule, start)
        return self.fake.add_item(self.folder, **fields)

    def _changes(self, item_id: str, summary: str | None, start: datetime | None
                 ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if summary is not None:
            changes["Subject"] = summary
        if start is not None:
            current = self.fake.item(item_id)
            assert current is not None, item_id
            changes["Start"] = _aware(start)
            changes["End"] = _aware(start) + (current["End"] - current["Start"])
        return changes

    def edit(self, remote_id: str, *, summary: str | None = None,
             start: datetime | None = None) -> None:
        self.fake.modify(remote_id, **self._changes(remote_id, summary, start))

    def edit_occurrence(self, remote_id: str, original_start: datetime, *,
                        summary: str | None = None, start: datetime | None = None) -> None:
        occurrence = self.fake.occurrence_id(remote_id, _aware(original_start))
        self.fake.modify(remote_id, _aware(original_start),
                         **self._changes(occurrence, summary, start))

    def cancel_occurrence(self, remote_id: str, original_start: datetime) -> None:
        self.fake.delete(remote_id, _aware(original_start))

    def delete(self, remote_id: str) -> None:
        self.fake.delete(remote_id)

    def set_extras(self, remote_id: str) -> dict[str, Any]:
        fields = {"Categories": ["Rouge"], "Importance": "High", "Sensitivity": "Private",
                  "ReminderIsSet": True, "ReminderMinutesBeforeStart": 42}
        self.fake.modify(remote_id, **fields)
        return fields

    def extras(self, remote_id: str) -> dict[str, Any]:
        item = self.fake.item(remote_id)
        assert item is not None
        return {k: item.get(k) for k in self.extra_fields or ()}

    def live(self) -> list[Seen]:
        return [Seen(i["id"], i.get("Subject", ""), utc(i["Start"]), i)
                for i in self.fake.items(self.folder)]

    def occurrences(self, remote_id: str) -> list[tuple[str, datetime]]:
        item = self.fake.item(remote_id)
        assert item is not None, remote_id
        if item["type"] != "RecurringMaster":
            return [(item.get("Subject", ""), utc(item["Start"]))]
        now = _aware(now_utc())
        found = []
        for original in self.fake.occurrences(remote_id, now - FAR, now + FAR):
            occurrence = self.fake.item(self.fake.occurrence_id(remote_id, original))
            assert occurrence is not None
            found.append((occurrence.get("Subject", ""), utc(occurrence["Start"])))
        return sorted(found, key=lambda o: o[1])

    def expire_state(self) -> None:
        self.fake.expire_sync_states()

    def fail_next(self, count: int = 1, *, after_apply: bool = False) -> None:
        with self.fake._lock:
            self.fake.drops.extend([after_apply] + [False] * (count - 1))

    @property
    def request_count(self) -> int:
        return self.fake.request_count


@contextlib.contextmanager
def open_remote() -> Iterator[EwsRemote]:
    with DroppingFakeEws() as fake:
        yield EwsRemote(fake)
