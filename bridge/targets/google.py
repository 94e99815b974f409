"""Google Calendar v3 as a sync target, through google-api-python-client. The only module
(with ``google_mapping`` and ``google_auth``) that knows Google.

Costs, as the issue asks: an incremental open is one ``events.list`` with the sync token
(plus two reads per changed series, to get its master and exceptions whole); writes go in
batches of 50. Throttling (429, 403 rate limits) and 5xx are retried with exponential
backoff, honouring Retry-After; 403 ``quotaExceeded`` and revoked consent stop the run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from google.auth.exceptions import RefreshError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from bridge.config import env
from bridge.ical import parse_object
from bridge.ical.content import CANCELLED, MASTER, content_of, series_zone
from bridge.ical.model import EventData, ParsedObject
from bridge.ical.series import expand
from bridge.ical.timezones import rid_instant, utc_to_date
from bridge.targets.base import (
    CalendarNotFound,
    Listing,
    ReconnectNeeded,
    RemoteObject,
    RequestCounter,
    TargetStopped,
    Window,
    WriteError,
    WriteKind,
    WriteOp,
    WriteResult,
)
from bridge.targets.google_auth import reconnect_error
from bridge.targets.google_mapping import (
    event_fields,
    google_to_ics,
    ics_to_google,
    instance_id,
    original_start_body,
    recurrence_key,
)

API_URL_ENV = "GESTAN_BRIDGE_GOOGLE_API_URL"
PAGE_SIZE = 2500      # the documented maximum of events.list
BATCH_SIZE = 50       # Google's advice for calendar batches
MAX_TRIES = 6
RATE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded"}
HANDLED = {404, 409, 410, 412}  # answered by the caller (gone, exists, changed)
FOREIGN_KEY = "gestanUid"


def stable_id(login: str, uid: str) -> str:
    """The event id we choose for a Gestan object (base32hex, as Google allows): a create
    retried after a crash hits 409 instead of making a duplicate."""
    digest = hashlib.sha256(f"{login}\n{uid}".encode()).digest()
    return base64.b32hexencode(digest).decode("ascii").rstrip("=").lower()[:40]


def _reason(error: HttpError) -> str:
    try:
        details = json.loads(error.content or b"{}")["error"]
        return (details.get("errors") or [{}])[0].get("reason") or ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def _retry_after(error: HttpError) -> float:
    value = (error.resp or {}).get("retry-after")
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0


def _pieces(events: list[dict]) -> frozenset[str]:
    """The etags of a series' master and exceptions (RemoteObject.pieces)."""
    return frozenset(e["etag"] for e in events if e.get("etag"))


def _echoes(body: dict | None, event: dict) -> bool:
    """Whether Google's answer holds exactly the fields we wrote (then its meaning is the
    text we sent); any difference (Google normalised something) is read back instead."""
    if body is None:
        return False
    for name in ("summary", "description", "location"):
        if (body.get(name) or "") != (event.get(name) or ""):
            return False
    if (body.get("recurrence") or []) != (event.get("recurrence") or []) or \
            (body.get("status") or "confirmed") != (event.get("status") or "confirmed"):
        return False
    return all(_same_time(body.get(side) or {}, event.get(side) or {})
               for side in ("start", "end"))


def _same_time(ours: dict, theirs: dict) -> bool:
    if ours.get("date") or theirs.get("date"):
        return ours.get("date") == theirs.get("date") and not theirs.get("dateTime")
    if ours.get("timeZone") != theirs.get("timeZone"):
        return False
    try:
        return (datetime.fromisoformat(ours["dateTime"])
                == datetime.fromisoformat(theirs["dateTime"]))
    except (KeyError, TypeError, ValueError):
        return False


def _unknown(items: list[dict], known: Mapping[str, frozenset[str]]) -> list[dict]:
    """A listing without the objects whose every listed piece we know: our own writes
    (after a close, the next open would otherwise read each series we wrote again)."""
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(item.get("recurringEventId") or item["id"], []).append(item)
    return [item for group_id, group in groups.items()
            if not (known.get(group_id) and all(i.get("etag") in known[group_id]
                                                for i in group))
            for item in group]


def _retryable(error: HttpError) -> bool:
    status = error.resp.status
    return status == 429 or status >= 500 or (status == 403 and _reason(error) in RATE_REASONS)


@dataclass
class _Pending:
    """One write in flight: its op, and for a series the exception bodies still to write."""

    index: int
    op: WriteOp
    body: dict[str, Any] | None = None
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    master: dict[str, Any] | None = None
    written: list[dict[str, Any]] = field(default_factory=list)
    tries: int = 0
    # a write against a base (WriteOp.base): only what differs; the master is skipped
    # when unchanged (``body`` None), and the series' id and kind come from the op
    partial: bool = False
    all_day: bool = False


@dataclass
class _Round:
    """One batch in flight and what its answers asked for."""

    chunk: list[_Pending]
    again: list[_Pending] = field(default_factory=list)
    stop: list[TargetStopped] = field(default_factory=list)
    pause: list[HttpError | None] = field(default_factory=list)


class GoogleTarget:
    name = "google"
    carries: frozenset[str] = frozenset()  # times, texts, status, recurrence: no more

    def __init__(self, credentials: Any, login: str, calendar_name: str, default_tz: str, *,
                 api_url: str | None = None, sleep: Callable[[float], None] = time.sleep,
                 max_tries: int = MAX_TRIES) -> None:
        api_url = api_url or env(API_URL_ENV)
        options = {"api_endpoint": api_url} if api_url else None
        self.service = build("calendar", "v3", credentials=credentials, static_discovery=True,
                             client_options=options, cache_discovery=False)
        parts = urllib.parse.urlsplit(api_url or "https://www.googleapis.com/calendar/v3/")
        self.batch_uri = f"{parts.scheme}://{parts.netloc}/batch/calendar/v3"
        self.login = login
        self.calendar_name = calendar_name
        self.default_tz = default_tz
        self.calendar_id: str | None = None
        self.calendar_tz = default_tz
        self.sleep = sleep
        self.max_tries = max_tries
        self.requests = RequestCounter()
        self._events_resource = None

    # ------------------------------------------------------------------ plumbing
    def _pause(self, attempt: int, error: HttpError | None) -> None:
        """Exponential backoff with jitter, never shorter than the server's Retry-After."""
        backoff = min(2 ** attempt, 32) * (0.5 + random.random() / 2)
        self.sleep(max(backoff, _retry_after(error) if error is not None else 0.0))
        self.requests.retries += 1

    def _execute(self, request: Any, kind: str) -> Any:
        """One API call, retried while Google says "later"; other errors go to the caller."""
        for attempt in range(self.max_tries):
            self.requests.count += 1
            self.requests.by_kind[kind] = self.requests.by_kind.get(kind, 0) + 1
            try:
                if isinstance(request, BatchHttpRequest):
                    return request.execute()
                return request.execute(num_retries=0)
            except RefreshError as exc:
                raise self._refused_consent(exc) from None
            except HttpError as exc:
                if not _retryable(exc) or attempt == self.max_tries - 1:
                    self._stop_if_fatal(exc)
                    raise
                self._pause(attempt, exc)
            except (TimeoutError, OSError) as exc:
                if attempt == self.max_tries - 1:
                    raise TargetStopped(f"Google could not be reached "
                                        f"({type(exc).__name__})") from exc
                self._pause(attempt, None)
        raise AssertionError("unreachable")

    def _refused_consent(self, exc: RefreshError) -> Exception:
        """Consent revoked mid-run: one clear error saying how to reconnect."""
        return reconnect_error(self.login, exc) or TargetStopped(
            f"Google could not refresh the access token ({type(exc).__name__}): run it "
            "again later")

    def _stop_if_fatal(self, exc: HttpError) -> None:
        """Turn what ends the run into a neutral error; the statuses callers handle (404,
        409, 410, 412) go back to them as they are."""
        status, reason = exc.resp.status, _reason(exc)
        if status == 403 and reason in ("quotaExceeded", "dailyLimitExceeded"):
            raise TargetStopped("Google's daily calendar quota is used up: the run stopped "
                                "cleanly; run it again later to finish") from exc
        if _retryable(exc):
            raise TargetStopped(f"Google kept answering {status} {reason or ''}: the run "
                                "stopped; run it again later to finish".rstrip()) from exc
        if status == 401:
            raise ReconnectNeeded(f"Google refused the credentials (401): reconnect with "
                                  f"gestan-bridge google connect --user {self.login} "
                                  "--client-secrets FILE") from exc
        if status not in HANDLED:
            raise TargetStopped(f"Google refused the request ({status} {reason})".replace(
                " )", ")") + ": the run stopped; see gestan-bridge sync log --user "
                f"{self.login}") from exc

    # ------------------------------------------------------------------ calendar
    def bind(self, cached: str | None) -> str:
        """Find the calendar by name (once: the answer is cached in the sync state)."""
        if cached:
            known = json.loads(cached)
            if known.get("name") == self.calendar_name:
                self.calendar_id, self.calendar_tz = known["id"], known["tz"]
                return cached
        names, token = [], None
        while True:
            page = self._execute(self.service.calendarList().list(
                pageToken=token, maxResults=250), "calendarList.list")
            for entry in page.get("items", []):
                names.append(entry.get("summaryOverride") or entry.get("summary", ""))
                if self.calendar_name in (entry.get("summary"), entry.get("summaryOverride"),
                                          entry.get("id")):
                    self.calendar_id = entry["id"]
                    self.calendar_tz = entry.get("timeZone") or self.default_tz
                    return json.dumps({"name": self.calendar_name, "id": self.calendar_id,
                                       "tz": self.calendar_tz}, sort_keys=True)
            token = page.get("nextPageToken")
            if not token:
                break
        raise CalendarNotFound(
            f"no Google calendar named {self.calendar_name!r}; this account has: "
            + ", ".join(repr(n) for n in names))

    # ------------------------------------------------------------------ reads
    def _events(self):
        """The events resource (built once: the client builds it from the discovery document
        on every ``service.events()`` call)."""
        if self._events_resource is None:
            self._events_resource = self.service.events()
        return self._events_resource

    def _pages(self, **query) -> tuple[list[dict], str | None]:
        items, token = [], None
        while True:
            try:
                page = self._execute(self._events().list(
                    calendarId=self.calendar_id, pageToken=token, maxResults=PAGE_SIZE,
                    **query), "events.list")
            except HttpError as exc:
                if exc.resp.status == 404:
                    raise CalendarNotFound(
                        f"the Google calendar {self.calendar_name!r} no longer exists or is "
                        "no longer shared with this account") from None
                raise
            items += page.get("items", [])
            token = page.get("nextPageToken")
            if not token:
                return items, page.get("nextSyncToken")

    def list_window(self, window: Window, known: Collection[str] = ()) -> Listing:
        items, _ = self._pages(timeMin=window.start.isoformat() + "Z",
                               timeMax=window.end.isoformat() + "Z", singleEvents=False)
        skip = set(known)
        return self._objects([i for i in items if i["id"] not in skip
                              and i.get("recurringEventId") not in skip], True, None)

    def list_changes(self, state: str | None, window: Window,
                     known: Mapping[str, frozenset[str]] | None = None) -> Listing:
        full = state is None
        if not full:
            try:
                items, token = self._pages(syncToken=state)
            except HttpError as exc:
                if exc.resp.status != 410:
                    raise
                full = True  # fullSyncRequired: list the window, deleting nothing on absence
        if full:
            items, token = self._pages(
                timeMin=window.start.isoformat() + "Z", timeMax=window.end.isoformat() + "Z",
                singleEvents=False, showDeleted=True)
        return self._objects(_unknown(items, known or {}), full, token)

    def _objects(self, items: list[dict], full: bool, token: str | None) -> Listing:
        """Listed events as calendar objects: each series whole (master and exceptions)."""
        masters: dict[str, dict] = {}
        exceptions: dict[str, list[dict]] = {}
        for item in items:
            series = item.get("recurringEventId")
            if series:
                exceptions.setdefault(series, []).append(item)
            else:
                masters[item["id"]] = item
        objects, unreadable = [], []
        for series_id in set(exceptions) - set(masters):
            master = self._get(series_id)
            if master is not None:
                masters[series_id] = master
        # A series is read whole: a listing holds only the changed exceptions (incremental)
        # or those whose *new* time is in the window (full), and an occurrence moved out of
        # it must still replace its original slot.
        series = [m for m in masters.values() if m.get("recurrence")
                  and m.get("status") != "cancelled"
                  and m.get("eventType", "default") == "default"]
        whole = self._exceptions_of_many(series)
        for event_id, master in masters.items():
            if master.get("eventType", "default") != "default":
                continue  # working locations, out of office, birthdays: not appointments
            if master.get("status") == "cancelled":
                objects.append(RemoteObject(event_id, master.get("etag"), None))
                continue
            known = whole.get(event_id, exceptions.get(event_id, []))
            try:
                objects.append(self._remote(master, known))
            except (ValueError, KeyError, TypeError) as exc:  # reported, the rest goes on
                start = master.get("start") or {}
                when = start.get("dateTime") or start.get("date") or "?"
                unreadable.append((event_id, f"{master.get('summary') or '(no title)'} "
                                             f"({when}): Google event not understood: {exc}"))
        return Listing(objects, token, full, unreadable)

    def _get(self, event_id: str) -> dict | None:
        try:
            return self._execute(self._events().get(calendarId=self.calendar_id,
                                                    eventId=event_id), "events.get")
        except HttpError as exc:
            if exc.resp.status in (404, 410):
                return None
            raise

    def _exceptions_of(self, master: dict) -> list[dict]:
        items, _ = self._pages(iCalUID=master["iCalUID"], showDeleted=True)
        return [i for i in items if i.get("recurringEventId") == master["id"]]

    def _exceptions_of_many(self, masters: list[dict]) -> dict[str, list[dict]]:
        """The exceptions of each series, wherever they were moved: the iCalUID listings go
        in batches (one HTTP request per 50 series); a series with more than one page of
        exceptions, or whose part failed, is read on its own."""
        found: dict[str, list[dict]] = {}
        alone: list[dict] = []
        for first in range(0, len(masters), BATCH_SIZE):
            chunk = masters[first:first + BATCH_SIZE]

            def answer(request_id: str, response: Any, error: Exception | None,
                       chunk: list[dict] = chunk) -> None:
                master = chunk[int(request_id)]
                if error is not None or response.get("nextPageToken"):
                    alone.append(master)
                    return
                found[master["id"]] = [i for i in response.get("items", [])
                                       if i.get("recurringEventId") == master["id"]]

            batch = BatchHttpRequest(callback=answer, batch_uri=self.batch_uri)
            for n, master in enumerate(chunk):
                batch.add(self._events().list(
                    calendarId=self.calendar_id, iCalUID=master["iCalUID"], showDeleted=True,
                    maxResults=PAGE_SIZE), request_id=str(n))
            try:
                self._execute(batch, "batch")
            except HttpError:
                alone.extend(m for m in chunk if m["id"] not in found and m not in alone)
        for master in alone:
            found[master["id"]] = self._exceptions_of(master)
        return found

    def _remote(self, master: dict, exceptions: list[dict]) -> RemoteObject:
        private = (master.get("extendedProperties") or {}).get("private") or {}
        return RemoteObject(master["id"], master.get("etag"),
                            google_to_ics(master, exceptions, self.calendar_tz),
                            private.get(FOREIGN_KEY), _pieces([master, *exceptions]))

    def fetch(self, remote_id: str) -> RemoteObject | None:
        return self.fetch_many([remote_id])[remote_id]

    def fetch_many(self, remote_ids: Sequence[str]) -> dict[str, RemoteObject | None]:
        """The events, then their series' exceptions, 50 to a batch (one alone: plain
        requests)."""
        masters = ({remote_ids[0]: self._get(remote_ids[0])} if len(remote_ids) == 1
                   else self._get_many(remote_ids))
        series = [m for m in masters.values()
                  if m and m.get("status") != "cancelled" and m.get("recurrence")]
        exceptions = ({series[0]["id"]: self._exceptions_of(series[0])} if len(series) == 1
                      else self._exceptions_of_many(series))
        found: dict[str, RemoteObject | None] = {}
        for remote_id in remote_ids:
            master = masters.get(remote_id)
            if master is None:
                found[remote_id] = None
            elif master.get("status") == "cancelled":
                found[remote_id] = RemoteObject(remote_id, master.get("etag"), None)
            else:
                found[remote_id] = self._remote(master, exceptions.get(master["id"], []))
        return found

    def _get_many(self, event_ids: Sequence[str]) -> dict[str, dict | None]:
        """Events by id, 50 to a batch; a part that failed otherwise than 404/410 is read
        again alone (its error then stops the run as a single read's would)."""
        found: dict[str, dict | None] = {}
        for first in range(0, len(event_ids), BATCH_SIZE):
            chunk = list(event_ids[first:first + BATCH_SIZE])

            def answer(request_id: str, response: Any, error: Exception | None,
                       chunk: list[str] = chunk) -> None:
                event_id = chunk[int(request_id)]
                if error is None:
                    found[event_id] = response
                elif isinstance(error, HttpError) and error.resp.status in (404, 410):
                    found[event_id] = None

            batch = BatchHttpRequest(callback=answer, batch_uri=self.batch_uri)
            for n, event_id in enumerate(chunk):
                batch.add(self._events().get(calendarId=self.calendar_id, eventId=event_id),
                          request_id=str(n))
            self._execute(batch, "batch")
            for event_id in chunk:
                if event_id not in found:
                    found[event_id] = self._get(event_id)
        return found

    # ------------------------------------------------------------------ writes
    def _body(self, op: WriteOp) -> tuple[dict, list[dict]]:
        body, exceptions = ics_to_google(op.parsed or op.ics, self.default_tz)
        body["status"] = "confirmed" if body.get("status") != "tentative" else "tentative"
        body["extendedProperties"] = {"private": {FOREIGN_KEY: op.uid}}
        return body, exceptions

    def _request(self, pending: _Pending):
        """The next request of a write. Updates are patches of the fields Gestan owns:
        attendees, reminders, colours, conference links, other apps' properties stay."""
        op, events = pending.op, self._events()
        if pending.master is not None or (pending.partial and pending.body is None):
            # phase 2: the next exception of a series
            exception = pending.exceptions[len(pending.written)]
            if pending.master is not None:
                master_id, all_day = pending.master["id"], "date" in pending.master["start"]
            else:
                master_id, all_day = op.remote_id, pending.all_day
            eid = instance_id(master_id, exception["originalStartTime"], all_day)
            return events.patch(calendarId=self.calendar_id, eventId=eid, body=exception)
        if op.kind is WriteKind.DELETE:
            request = events.delete(calendarId=self.calendar_id, eventId=op.remote_id)
        elif op.kind is WriteKind.CREATE and op.remote_id is None:
            pending.body = dict(pending.body, id=stable_id(self.login, op.uid))
            request = events.insert(calendarId=self.calendar_id, body=pending.body)
        else:
            request = events.patch(calendarId=self.calendar_id,
                                   eventId=op.remote_id, body=pending.body)
        if op.etag and op.kind is not WriteKind.CREATE:
            request.headers["If-Match"] = op.etag
        return request

    def write(self, ops: Sequence[WriteOp],
              on_result: Callable[[WriteResult], None]) -> None:
        queue: list[_Pending] = []
        for index, op in enumerate(ops):
            pending = _Pending(index, op)
            if op.kind is not WriteKind.DELETE:
                try:
                    pending.body, pending.exceptions = self._body(op)
                    if op.base is not None and op.kind is WriteKind.UPDATE:
                        self._only_changes(pending)
                except ValueError as exc:
                    on_result(WriteResult(op, error=WriteError.REJECTED, message=str(exc)))
                    continue
                if pending.partial and pending.body is None and not pending.exceptions:
                    on_result(WriteResult(op, remote=RemoteObject(
                        op.remote_id, op.etag, op.ics, op.uid, op.base_pieces)))  # same
                    continue
            queue.append(pending)
        attempt = 0
        while queue:
            chunk, queue = queue[:BATCH_SIZE], queue[BATCH_SIZE:]
            round_ = _Round(chunk)
            batch = BatchHttpRequest(callback=partial(self._answer, round_, on_result),
                                     batch_uri=self.batch_uri)
            for n, pending in enumerate(chunk):
                batch.add(self._request(pending), request_id=str(n))
            self.requests.count += 1
            self.requests.by_kind["batch"] = self.requests.by_kind.get("batch", 0) + 1
            try:
                batch.execute()
            except RefreshError as exc:
                raise self._refused_consent(exc) from None
            except HttpError as exc:  # the batch itself was refused: all of it again
                if not _retryable(exc) or attempt >= self.max_tries:
                    self._stop_if_fatal(exc)
                    raise
                round_.again, round_.pause = list(chunk), [exc]
            except OSError as exc:
                if attempt >= self.max_tries:
                    raise TargetStopped(f"Google could not be reached "
                                        f"({type(exc).__name__})") from exc
                round_.again, round_.pause = list(chunk), []
            if round_.stop:
                raise round_.stop[0]
            if round_.pause:
                self._pause(attempt, round_.pause[0])
                attempt += 1
            queue = round_.again + queue

    def _answer(self, round_: _Round, on_result: Callable[[WriteResult], None],
                request_id: str, response: Any, error: Exception | None) -> None:
        """One part of a batch answered: done, follow-up, retry later, or stop the run."""
        pending = round_.chunk[int(request_id)]
        if error is None:
            follow = self._done(pending, response, on_result)
        elif isinstance(error, HttpError) and not _retryable(error):
            try:
                self._stop_if_fatal(error)
            except TargetStopped as exc:
                round_.stop.append(exc)
                return
            follow = self._refused(pending, error, on_result)
        else:  # throttled, 5xx, or a broken part: again after a pause
            pending.tries += 1
            if pending.tries >= self.max_tries:
                round_.stop.append(TargetStopped(
                    "Google kept refusing (throttling or errors): the run stopped; run it "
                    "again later to finish"))
                return
            round_.pause.append(error if isinstance(error, HttpError) else None)
            follow = pending
        if follow is not None:
            round_.again.append(follow)

    def _done(self, pending: _Pending, response: Any,
              on_result: Callable[[WriteResult], None]) -> _Pending | None:
        """A part succeeded: write the series' next exception, or report the op done."""
        op = pending.op
        if op.kind is WriteKind.DELETE:
            on_result(WriteResult(op))
            return None
        if pending.master is None and not (pending.partial and pending.body is None):
            pending.master = response
            if (op.kind is WriteKind.UPDATE and response.get("recurrence")
                    and not pending.partial):
                pending.exceptions += self._stale_exceptions(op, response, pending.exceptions)
        else:
            pending.written.append(response)
        if len(pending.written) < len(pending.exceptions):
            return pending
        if pending.partial:  # the rest of the series is as the base said: no re-read
            etag = pending.master.get("etag") if pending.master else op.etag
            written = [pending.master] if pending.master else []
            remote = RemoteObject(op.remote_id, etag, op.ics, op.uid,
                                  op.base_pieces | _pieces(written + pending.written))
        elif not pending.exceptions and _echoes(pending.body, pending.master):
            # Google holds what we sent: its meaning is our text's (no reading back)
            remote = RemoteObject(pending.master["id"], pending.master.get("etag"), op.ics,
                                  op.uid, _pieces([pending.master]))
        else:
            remote = self._remote(pending.master, pending.written)
        on_result(WriteResult(op, remote=remote))
        return None

    def _only_changes(self, pending: _Pending) -> None:
        """Keep only the writes that make the remote's ``base`` into ``op.ics``: the master
        if its own part changed, and one instance patch per occurrence that differs
        (overridden, cancelled, or put back as the series generates it)."""
        op, tz = pending.op, self.default_tz
        base, new = parse_object(op.base, tz), parse_object(op.ics, tz)
        if not (base.is_series and new.is_series):
            return  # a single event (or one becoming a series): one patch of the master
        before, after = content_of(base, tz).parts, content_of(new, tz).parts
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        pending.partial, pending.all_day = True, new.master.all_day
        if MASTER not in changed:
            pending.body = None
        wanted = {}
        for body in pending.exceptions:
            key = recurrence_key(body["originalStartTime"],
                                 series_zone(new.master, tz))
            if new.master.all_day and len(key) != 8:
                key = utc_to_date(rid_instant(key, tz), tz).strftime("%Y%m%d")
            wanted[key] = body
        bodies = []
        for key in sorted(changed - {MASTER}):
            if key in wanted:
                bodies.append(wanted[key])
            elif after.get(key) == CANCELLED and key not in before and pending.body:
                continue  # the master's new EXDATE removes it (the instance is no more)
            elif key not in after and before.get(key) == CANCELLED \
                    and self._generated(new, key) is None:
                continue  # cancelled in the series' old times: gone with them
            else:
                bodies.append(self._instance_body(new, key, after.get(key) == CANCELLED))
        pending.exceptions = bodies

    def _generated(self, parsed: ParsedObject, key: str) -> EventData | None:
        """The occurrence the series' master makes at ``key``, if it makes one."""
        instant = rid_instant(key, series_zone(parsed.master, self.default_tz))
        return next((o for o in expand(
            parsed.series_ics, instant - timedelta(days=1), instant + timedelta(days=1),
            self.default_tz, with_overrides=False) if o.recurrence_id == key), None)

    def _instance_body(self, parsed: ParsedObject, key: str, cancelled: bool
                       ) -> dict[str, Any]:
        """A patch for one instance: cancelled, or back to what the series generates."""
        tz = self.default_tz
        master = parsed.master
        series_tz = series_zone(master, tz)
        body: dict[str, Any] = {"originalStartTime": original_start_body(key, master,
                                                                          series_tz)}
        generated = None if cancelled else self._generated(parsed, key)
        if generated is not None:
            body.update(event_fields(generated, tz))
        else:
            body["status"] = "cancelled"
        return body

    def _stale_exceptions(self, op: WriteOp, master: dict, wanted: list[dict]) -> list[dict]:
        """Bodies undoing the Google exceptions Gestan no longer has: an occurrence deleted in
        Gestan is cancelled, one put back is reset to what the series generates (an EXDATE
        on the master alone leaves an exception visible)."""
        all_day = "date" in master["start"]
        keep = {instance_id(master["id"], b["originalStartTime"], all_day) for b in wanted}
        stale = [e for e in self._exceptions_of(master) if e.get("status") != "cancelled"
                 and instance_id(master["id"], e["originalStartTime"], all_day) not in keep]
        if not stale:
            return []
        series_ics = parse_object(op.ics, self.default_tz).series_ics
        series_tz = master["start"].get("timeZone") or self.calendar_tz
        bodies = []
        for exception in stale:
            key = recurrence_key(exception["originalStartTime"], series_tz)
            instant = rid_instant(key, series_tz)
            generated = {o.recurrence_id: o for o in expand(
                series_ics, instant - timedelta(days=1), instant + timedelta(days=1),
                self.default_tz, with_overrides=False)}
            body = {"originalStartTime": exception["originalStartTime"]}
            if key in generated:
                body.update(event_fields(generated[key], self.default_tz))
            else:
                body.update(start=exception["start"], end=exception["end"], status="cancelled")
            bodies.append(body)
        return bodies

    def _refused(self, pending: _Pending, error: HttpError,
                 on_result: Callable[[WriteResult], None]) -> _Pending | None:
        op, status = pending.op, error.resp.status
        if pending.master is not None:  # an exception of a series we just wrote
            on_result(WriteResult(op, error=WriteError.REJECTED,
                                  message=f"occurrence refused by Google: {status}"))
            return None
        if status == 409 and op.kind is WriteKind.CREATE:
            event_id = pending.body["id"]
            current = self._get(event_id)
            if current is not None and current.get("status") == "cancelled":
                # Our id, deleted in Google: Gestan wins at close, the event comes back.
                revived = replace(op, kind=WriteKind.UPDATE, remote_id=event_id, etag=None)
                return _Pending(pending.index, revived, pending.body, pending.exceptions)
            remote = self.fetch(event_id) if current is not None else None
            on_result(WriteResult(op, remote=remote, error=WriteError.EXISTS))
            return None
        if status == 412:
            on_result(WriteResult(op, error=WriteError.PRECONDITION))
        elif status in (404, 410):
            on_result(WriteResult(op, error=WriteError.GONE))
        else:
            on_result(WriteResult(op, error=WriteError.REJECTED,
                                  message=f"Google refused it: {status} {_reason(error)}"))
        return None
