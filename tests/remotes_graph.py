"""The Graph driver of the ``remote`` fixture (tests/remotes.py): Microsoft Graph through
its loopback fake (tests/fakes/graph.py), the real msal and requests.

"Another client" is Outlook: it acts through the fake's own test API (``add_event``,
``patch_event``, ``delete_event``: neither logged nor counted), with Windows zone names as
Outlook writes them. The fake is TLS with a throwaway CA: ``REQUESTS_CA_BUNDLE`` names it
while the driver is open (requests lets it override msal's ``verify=``), and is restored
afterwards so that no other test sees it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.ical.timezones import now_utc
from bridge.targets import graph_auth
from bridge.targets.base import Target
from bridge.targets.graph import build_target
from tests.fakes.graph import FakeGraph, ca_bundle
from tests.remotes import CALENDAR, FAR, LOGIN, TZ, Remote, Seen, local

WINDOWS_TZ = "Romance Standard Time"   # Europe/Paris as Outlook names it
DAYS = {"MO": "monday", "TU": "tuesday", "WE": "wednesday", "TH": "thursday",
        "FR": "friday", "SA": "saturday", "SU": "sunday"}


class DriverFake(FakeGraph):
    """The fake, with failures "after apply" kept for writes: a lost answer is a write's
    (a read has nothing to apply), so reads made before it (lookups) pass."""

    _method = "GET"

    def _operation(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
                   *, in_batch: bool) -> Any:
        self._method = method
        return super()._operation(method, raw_path, headers, body, in_batch=in_batch)

    def _take_failure(self) -> Any:
        if self._fail_queue and self._fail_queue[0].after_apply and self._method == "GET":
            return None
        return super()._take_failure()


def graph_time(instant: datetime, tz: str = WINDOWS_TZ) -> dict[str, str]:
    wall = local(instant).replace(tzinfo=None)
    return {"dateTime": wall.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": tz}


def utc_of(value: dict[str, str]) -> datetime:
    """A time the fake rendered (UTC unless Prefer'd) as naive UTC."""
    assert value["timeZone"] == "UTC", value
    return datetime.fromisoformat(value["dateTime"][:19])


def pattern(rrule: str, start: datetime) -> dict[str, Any]:
    """The few RRULEs the shared tests use, as Outlook's pattern; anything else cannot be
    made in Outlook at all."""
    parts = dict(p.split("=", 1) for p in rrule.split(";"))
    if parts.get("FREQ") != "WEEKLY" or set(parts) - {"FREQ", "COUNT"}:
        pytest.skip(f"Outlook cannot hold a series {rrule} (no such pattern in Graph)")
    wall = local(start)
    rng: dict[str, Any] = {"type": "noEnd", "startDate": wall.date().isoformat()}
    if "COUNT" in parts:
        rng = {**rng, "type": "numbered", "numberOfOccurrences": int(parts["COUNT"])}
    return {"pattern": {"type": "weekly", "interval": 1,
                        "daysOfWeek": [wall.strftime("%A").lower()],
                        "firstDayOfWeek": "monday"}, "range": rng}


class GraphRemote:
    kind = "graph"
    extra_fields: tuple[str, ...] | None = ("categories", "sensitivity", "importance",
                                             "reminderMinutesBeforeStart", "attendees")

    def __init__(self, fake: FakeGraph, directory: Path) -> None:
        self.fake = fake
        self.directory = directory
        self.cal = fake.add_calendar(CALENDAR)
        graph_auth.connect_app(LOGIN, fake.tenant, fake.client_id, fake.client_secret,
                               fake.mailbox, directory=directory,
                               authority=fake.authority_url, api_url=fake.api_url)

    def target(self, calendar: str = CALENDAR) -> Target:
        return build_target(LOGIN, calendar, TZ, directory=self.directory,
                            api_url=self.fake.api_url, sleep=lambda s: None)

    def add(self, summary: str, start: datetime, *, hours: int = 1, rrule: str | None = None
            ) -> str:
        body: dict[str, Any] = {"subject": summary, "start": graph_time(start),
                                "end": graph_time(start + timedelta(hours=hours))}
        if rrule:
            body["recurrence"] = pattern(rrule, start)
        return self.fake.add_event(body, calendar_id=self.cal)["id"]

    def _changes(self, event_id: str, summary: str | None, start: datetime | None
                 ) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        if summary is not None:
            changes["subject"] = summary
        if start is not None:
            current = self.fake.event(event_id)
            assert current is not None, event_id
            length = utc_of(current["end"]) - utc_of(current["start"])
            changes.update(start=graph_time(start), end=graph_time(start + length))
        return changes

    def edit(self, remote_id: str, *, summary: str | None = None,
             start: datetime | None = None) -> None:
        self.fake.patch_event(remote_id, self._changes(remote_id, summary, start))

    def _occurrence(self, remote_id: str, original_start: datetime) -> str:
        wanted = original_start.strftime("%Y-%m-%dT%H:%M:%SZ")
        now = now_utc().replace(tzinfo=UTC)
        for item in self.fake.instances(remote_id, now - FAR, now + FAR):
            if item.get("originalStart") == wanted:
                return item["id"]
        raise AssertionError(f"no occurrence {wanted} of {remote_id}")

    def edit_occurrence(self, remote_id: str, original_start: datetime, *,
                        summary: str | None = None, start: datetime | None = None) -> None:
        occurrence = self._occurrence(remote_id, original_start)
        self.fake.patch_event(occurrence, self._changes(occurrence, summary, start))

    def cancel_occurrence(self, remote_id: str, original_start: datetime) -> None:
        self.fake.delete_event(self._occurrence(remote_id, original_start))

    def delete(self, remote_id: str) -> None:
        self.fake.delete_event(remote_id)

    def set_extras(self, remote_id: str) -> dict[str, Any]:
        fields = {"categories": ["Red category"], "sensitivity": "private",
                  "importance": "high", "reminderMinutesBeforeStart": 42, "attendees": []}
        self.fake.patch_event(remote_id, {k: v for k, v in fields.items() if v != []})
        return fields

    def extras(self, remote_id: str) -> dict[str, Any]:
        event = self.fake.event(remote_id)
        assert event is not None
        return {k: event.get(k) for k in self.extra_fields or ()}

    def live(self) -> list[Seen]:
        return [Seen(e["id"], e.get("subject", ""), utc_of(e["start"]), e)
                for e in self.fake.events(calendar_id=self.cal)]

    def occurrences(self, remote_id: str) -> list[tuple[str, datetime]]:
        event = self.fake.event(remote_id)
        assert event is not None, remote_id
        if not event.get("recurrence"):
            return [(event.get("subject", ""), utc_of(event["start"]))]
        now = now_utc().replace(tzinfo=UTC)
        items = self.fake.instances(remote_id, now - FAR, now + FAR)
        return sorted(((i.get("subject", ""), utc_of(i["start"])) for i in items),
                      key=lambda o: o[1])

    def expire_state(self) -> None:
        self.fake.expire_delta_tokens()

    def fail_next(self, count: int = 1, *, after_apply: bool = False) -> None:
        # Graph asks to come back in an hour: the target stops the run at once
        self.fake.fail_next(count, 503, retry_after=3600, after_apply=after_apply)

    @property
    def request_count(self) -> int:
        return self.fake.request_count




@contextlib.contextmanager
def open_remote() -> Iterator[Remote]:
    with DriverFake(device_interval=1) as fake, ca_bundle(fake.ca_file), \
            tempfile.TemporaryDirectory(prefix="graph-tokens-") as tokens:
        yield GraphRemote(fake, Path(tokens))
