"""Microsoft Graph (Exchange Online calendars) as a sync target, through requests + msal.

Why not the official msgraph-sdk: it is async-only (kiota, httpx), pulls in a large
dependency tree and hides the HTTP we must control (``$batch`` parts, ``Prefer`` headers,
``If-Match``, Retry-After); requests (already a dependency) with msal for tokens is small,
synchronous like the engine, and talks to the loopback fake of the tests unchanged.

How Graph is used (DESIGN.md "Facts"; tests/fakes/graph.py):

- reads ask ``Prefer: outlook.timezone="UTC"`` (instants are compared, the zone is taken
  from ``originalStartTimeZone``) and ``outlook.body-content-type="text"``;
- an open is ``calendarView/delta`` from the kept deltaLink (one request when nothing
  changed); an expired link (410) lists the window again, flagged full (nothing deleted on
  absence). The delta holds instances, never masters: a changed series is read whole (its
  master, then its instances, where a missing slot is a cancelled occurrence). ``@removed``
  means deleted *or moved out of the window*: such an id is read again (a 404 is the
  deletion); an occurrence's id is mapped to its series through the pieces we kept;
- writes go 20 to a ``$batch``; a create carries a ``transactionId`` derived from the Gestan
  UID (Graph answers a retried POST with the event the first one made) and the UID in a
  single-value extended property, looked up before creating, so that a create retried after
  a crash answers EXISTS. Updates PATCH only what Gestan owns, with ``If-Match`` (412:
  PRECONDITION); never attendees (Graph would mail invitations);
- a series is one master; exceptions are PATCHes of its occurrences, cancellations their
  DELETE; against a base only the occurrences that differ are written. An occurrence put
  back after a cancellation (Graph cannot undelete one) resets the pattern, which makes
  Graph drop every exception, and writes them all again;
- 429/503/504 are retried honouring Retry-After (an injectable ``sleep``); a wait longer
  than ``MAX_WAIT`` or too many tries stop the run cleanly (TargetStopped).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import requests

from bridge.config import env
from bridge.ical import parse_object
from bridge.ical.content import CANCELLED, MASTER, content_of
from bridge.ical.model import InvalidObject, ParsedObject
from bridge.ical.series import bounds, expand
from bridge.ical.timezones import now_utc, rid_instant
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
from bridge.targets.graph_mapping import (
    SeriesPlan,
    SeriesReading,
    Unsupported,
    event_fields,
    graph_to_ics,
    master_ics,
    original_key,
    to_graph,
)

API_URL_ENV = "GESTAN_BRIDGE_GRAPH_API_URL"
DEFAULT_API_URL = "https://graph.microsoft.com/v1.0/"
BATCH_SIZE = 20          # Graph's limit of a $batch
PAGE_SIZE = 200          # Prefer: odata.maxpagesize of calendarView (and its delta)
MAX_TRIES = 8
MAX_WAIT = 120.0         # a longer Retry-After stops the run: the next one finishes
RETRYABLE = {429, 503, 504}
# Our single-value extended property: the Gestan UID (a fixed GUID of ours + a name).
PROP_ID = "String {7e2f1a64-3b9c-4d2e-9f0a-5c1b8e6d4a21} Name GestanUid"
READ_ERRORS = (InvalidObject, ValueError, KeyError)   # an event we cannot read
PREFER_READ = 'outlook.timezone="UTC", outlook.body-content-type="text"'
FAR_BACK = timedelta(days=3 * 366)     # where a far-moved exception is looked for
FAR_AHEAD = timedelta(days=5 * 366)
AHEAD = timedelta(days=400)            # an endless series is read this far
# The delta follows a year more than the window: Graph reports a change outside a delta's
# window as @removed without its etag, which would cost a read after each of our own
# writes beyond the window (the window's end moves a day at a time).
DELTA_BEYOND = timedelta(days=366)


def api_base(api_url: str | None = None) -> str:
    return (api_url or env(API_URL_ENV) or DEFAULT_API_URL).rstrip("/") + "/"


class TokenSource(Protocol):
    def token(self, force_refresh: bool = False) -> str: ...


def transaction_id(calendar_id: str, uid: str) -> str:
    """The POST's transactionId: stable for (calendar, Gestan UID), so that Graph answers a
    retried create with what the first made. It spells the UID itself when it can, so that a
    listing (which cannot expand extended properties) still tells our events apart."""
    scope = hashlib.sha256(calendar_id.encode()).hexdigest()[:8]
    if uid.isascii() and uid.isprintable() and len(uid) <= 180:
        return f"gestan:{scope}:{uid}"
    return f"gestan#{scope}#{hashlib.sha256(uid.encode()).hexdigest()}"


def _quote(value: str) -> str:
    return value.replace("'", "''")


def _retry_after(headers: Mapping[str, Any] | None) -> float:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return 0.0
    return 0.0


def _error_code(body: Any) -> str:
    try:
        return str(body["error"]["code"])
    except (KeyError, TypeError):
        return ""


def _time_param(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Plan:
    """One write: its op, and for a series what is left to do after the master."""

    op: WriteOp
    body: dict[str, Any] | None = None         # the master's/single's request body
    series: SeriesPlan | None = None
    parsed: ParsedObject | None = None
    keys: set[str] | None = None               # occurrences to write; None: all
    reset: bool = False                        # toggle the pattern first (undelete)
    master: dict[str, Any] | None = None       # Graph's answer for the master
    base_pieces: frozenset[str] = frozenset()


@dataclass
class _Span:
    """Where a series' instances are listed, and its master read as iCalendar."""

    foreign: str | None
    name: str
    parsed: ParsedObject
    lo: datetime
    hi: datetime


@dataclass
class _Stop:
    error: TargetStopped | None = None
    pause: float = 0.0
    again: list[int] = field(default_factory=list)


class GraphTarget:
    name = "graph"
    # Times, texts, showAs (TENTATIVE) and recurrence only: alarms, attendees, categories
    # are Outlook's own and never written by us, so their edits there are no changes.
    carries: frozenset[str] = frozenset()

    def __init__(self, auth: TokenSource, owner: str, calendar_name: str | None,
                 default_tz: str, *, login: str = "", api_url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, max_tries: int = MAX_TRIES,
                 session: requests.Session | None = None) -> None:
        from bridge.targets.graph_auth import http_session

        self.auth = auth
        self.owner = owner.strip("/")            # "users/{mailbox}" or "me"
        self.calendar_name = calendar_name or None
        self.default_tz = default_tz
        self.login = login
        self.base = api_base(api_url)
        self.sleep = sleep
        self.max_tries = max_tries
        self.http = session or http_session()
        self.requests = RequestCounter()
        self.calendar_id: str | None = None
        self._token: str | None = None

    # ------------------------------------------------------------------ plumbing
    def _count(self, kind: str) -> None:
        self.requests.count += 1
        self.requests.by_kind[kind] = self.requests.by_kind.get(kind, 0) + 1

    def _bearer(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            self._token = self.auth.token(force_refresh=refresh)
        return self._token

    def _pause(self, attempt: int, retry_after: float) -> None:
        backoff = min(2 ** attempt, 30) * (0.5 + random.random() / 2) / 4
        self.sleep(max(retry_after, backoff))
        self.requests.retries += 1

    def _reconnect(self, status: int, code: str) -> ReconnectNeeded:
        from bridge.targets.graph_auth import connect_hint

        return ReconnectNeeded(f"Microsoft Graph refused the stored connection ({status} "
                               f"{code}) even after a new token: consent revoked? Reconnect "
                               f"with: {connect_hint(self.login)}")

    def _call(self, method: str, url: str, kind: str, *, body: Any = None,
              prefer: str | None = PREFER_READ, if_match: str | None = None
              ) -> requests.Response:
        """One request, retried while Graph says "later"; 401 once refreshes the token."""
        refreshed = False
        for attempt in range(self.max_tries):
            headers = {"Authorization": f"Bearer {self._bearer()}"}
            if prefer:
                headers["Prefer"] = prefer
            if if_match:
                headers["If-Match"] = if_match
            self._count(kind)
            try:
                answer = self.http.request(method, url, json=body, headers=headers, timeout=60)
            except requests.RequestException as exc:
                if attempt == self.max_tries - 1:
                    raise TargetStopped(f"Microsoft Graph could not be reached "
                                        f"({type(exc).__name__}); run it again later") from None
                self._pause(attempt, 0.0)
                continue
            status = answer.status_code
            if status == 401 and not refreshed:
                refreshed = True
                self._bearer(refresh=True)
                continue
            if status == 401 or (status == 403 and _error_code(_json(answer))
                                 in ("ErrorAccessDenied", "Authorization_RequestDenied")):
                raise self._reconnect(status, _error_code(_json(answer)))
            if status in RETRYABLE:
                wait = _retry_after(answer.headers)
                if wait > MAX_WAIT or attempt == self.max_tries - 1:
                    raise self._stopped(status, wait)
                self._pause(attempt, wait)
                continue
            return answer
        raise AssertionError("unreachable")

    @staticmethod
    def _stopped(status: int, wait: float) -> TargetStopped:
        later = f" (asked to wait {wait:g} s)" if wait else ""
        return TargetStopped(f"Microsoft Graph kept answering {status}{later}: the run "
                             "stopped cleanly; run it again later to finish")

    def _failed(self, answer: requests.Response, what: str) -> TargetStopped:
        return TargetStopped(f"Microsoft Graph refused {what} ({answer.status_code} "
                             f"{_error_code(_json(answer))}): the run stopped")

    def _get(self, url: str, kind: str) -> dict[str, Any] | None:
        answer = self._call("GET", url, kind)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise self._failed(answer, kind)
        return answer.json()

    def _pages(self, url: str, kind: str, page_size: int | None = PAGE_SIZE
               ) -> tuple[list[dict[str, Any]], str | None, int]:
        """Every item of a listing (following nextLink): (items, deltaLink, status)."""
        items: list[dict[str, Any]] = []
        prefer = PREFER_READ + (f", odata.maxpagesize={page_size}" if page_size else "")
        while True:
            answer = self._call("GET", url, kind, prefer=prefer)
            if answer.status_code in (404, 410):
                return items, None, answer.status_code
            if answer.status_code != 200:
                raise self._failed(answer, kind)
            page = answer.json()
            items += page.get("value", [])
            url = page.get("@odata.nextLink")
            if not url:
                return items, page.get("@odata.deltaLink"), 200

    def _batch(self, parts: list[dict[str, Any]],
               answer: Callable[[int, dict[str, Any]], None]) -> None:
        """Send ``parts`` 20 to a ``$batch``; ``answer(index, response)`` hears each final
        answer (throttled parts are sent again after the longest Retry-After). When the run
        must stop, the answers already known are delivered first."""
        pending = list(range(len(parts)))
        tries = [0] * len(parts)
        attempt = 0
        while pending:
            chunk, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
            payload = {"requests": [{"id": str(i), **parts[i]} for i in chunk]}
            reply = self._call("POST", self.base + "$batch", "batch", body=payload,
                               prefer=None)
            if reply.status_code != 200:
                raise self._failed(reply, "a batch")
            state = _Stop()
            refreshed = False
            for item in reply.json().get("responses", []):
                index, status = int(item["id"]), int(item.get("status", 0))
                if status in RETRYABLE:
                    tries[index] += 1
                    wait = _retry_after(item.get("headers"))
                    if wait > MAX_WAIT or tries[index] >= self.max_tries:
                        state.error = state.error or self._stopped(status, wait)
                    state.again.append(index)
                    state.pause = max(state.pause, wait)
                elif status == 401:
                    tries[index] += 1
                    if tries[index] > 1:
                        state.error = state.error or self._reconnect(401, _error_code(
                            item.get("body")))
                    refreshed = True
                    state.again.append(index)
                elif status == 403 and _error_code(item.get("body")) == "ErrorAccessDenied":
                    state.error = state.error or self._reconnect(403, "ErrorAccessDenied")
                else:
                    answer(index, item)
            if state.error is not None:
                raise state.error
            if refreshed:
                self._bearer(refresh=True)
            if state.again:
                if state.pause or not refreshed:
                    self._pause(attempt, state.pause)
                attempt += 1
                pending = sorted(state.again) + pending

    def _part(self, method: str, url: str, body: Any = None, if_match: str | None = None
              ) -> dict[str, Any]:
        headers = {"Prefer": PREFER_READ}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if if_match:
            headers["If-Match"] = if_match
        part: dict[str, Any] = {"method": method, "url": "/" + url, "headers": headers}
        if body is not None:
            part["body"] = body
        return part

    # ------------------------------------------------------------------ calendar
    @property
    def _cal(self) -> str:
        if self.calendar_id is None:
            raise RuntimeError("bind() the target before using it")
        return f"{self.owner}/calendars/{self.calendar_id}"

    def bind(self, cached: str | None) -> str:
        """Find the calendar (its name; None: the mailbox's default one), once: the answer
        is kept in the sync state, so that a run with nothing to do costs one request."""
        if cached:
            try:
                known = json.loads(cached)
            except ValueError:
                known = {}
            if known.get("name") == self.calendar_name and known.get("owner") == self.owner \
                    and known.get("id"):
                self.calendar_id = known["id"]
                return cached
        if self.calendar_name is None:
            found = self._get(self.base + f"{self.owner}/calendar?$select=id,name", "calendar")
            if found is None:
                raise CalendarNotFound(f"{self.owner} has no default calendar")
            self.calendar_id = found["id"]
        else:
            items, _, status = self._pages(
                self.base + f"{self.owner}/calendars?$select=id,name&$top=100", "calendars",
                page_size=None)
            if status == 404:
                raise CalendarNotFound(f"no mailbox {self.owner!r} in Microsoft 365")
            match = [c for c in items if c.get("name") == self.calendar_name]
            if not match:
                names = ", ".join(repr(c.get("name", "")) for c in items)
                raise CalendarNotFound(f"no Outlook calendar named {self.calendar_name!r}; "
                                       f"this mailbox has: {names or 'none'}")
            self.calendar_id = match[0]["id"]
        return json.dumps({"name": self.calendar_name, "id": self.calendar_id,
                           "owner": self.owner}, sort_keys=True)

    # ------------------------------------------------------------------ reading
    def _foreign(self, event: dict[str, Any]) -> str | None:
        for prop in event.get("singleValueExtendedProperties") or []:
            if str(prop.get("id", "")).lower() == PROP_ID.lower():
                return str(prop.get("value"))
        tid = event.get("transactionId") or ""
        if tid.startswith("gestan:"):
            return tid.split(":", 2)[2]
        return None

    def _single(self, event: dict[str, Any], uid: str | None = None) -> RemoteObject:
        foreign = uid or self._foreign(event)
        ics = graph_to_ics(event, foreign or event.get("iCalUId") or event["id"],
                           self.default_tz)
        etag = event.get("@odata.etag")
        return RemoteObject(event["id"], etag, ics, foreign, frozenset([etag] if etag else []))

    def _event_url(self, event_id: str, expand: bool = True) -> str:
        url = self.base + f"{self.owner}/events/{urllib.parse.quote(event_id, safe='')}"
        if expand:
            url += ("?$expand=" + urllib.parse.quote(
                f"singleValueExtendedProperties($filter=id eq '{PROP_ID}')"))
        return url

    def _instances_url(self, master_id: str, lo: datetime, hi: datetime) -> str:
        return (self._event_url(master_id, expand=False) + "/instances?"
                + urllib.parse.urlencode({"startDateTime": _time_param(lo),
                                          "endDateTime": _time_param(hi), "$top": "1000"}))

    def _instances(self, master_id: str, lo: datetime, hi: datetime) -> list[dict[str, Any]]:
        items, _, status = self._pages(self._instances_url(master_id, lo, hi), "instances",
                                       page_size=None)
        return items if status == 200 else []

    def _instances_of(self, queries: Sequence[tuple[str, datetime, datetime]]
                      ) -> list[list[dict[str, Any]]]:
        """The instances of several series (master id, from, to), 20 to a $batch; one alone
        is a plain GET. A series gone (404) has none."""
        if len(queries) == 1:
            return [self._instances(*queries[0])]
        found: list[list[dict[str, Any]]] = [[] for _ in queries]

        def answer(index: int, item: dict[str, Any]) -> None:
            found[index] = self._listed_instances(item)

        self._batch([self._instances_part(*q) for q in queries], answer)
        return found

    def _instances_part(self, master_id: str, lo: datetime, hi: datetime) -> dict[str, Any]:
        return self._part("GET", self._instances_url(master_id, lo, hi)[len(self.base):])

    def _listed_instances(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """A $batch answer listing instances, whole (a long series: the rest page by page)."""
        status = int(item.get("status", 0))
        if status in (404, 410):
            return []
        if status != 200:
            raise TargetStopped(f"Microsoft Graph refused to list a series ({status} "
                                f"{_error_code(item.get('body'))}): the run stopped")
        page = item.get("body") or {}
        found = list(page.get("value") or [])
        if page.get("@odata.nextLink"):
            more, _, _ = self._pages(page["@odata.nextLink"], "instances", page_size=None)
            found += more
        return found

    def _span(self, master: dict[str, Any], uid: str | None) -> _Span:
        foreign = uid or self._foreign(master)
        name = foreign or master.get("iCalUId") or master["id"]
        tz = self.default_tz
        parsed = parse_object(master_ics(master, name, tz), tz)
        first, last = bounds(parsed.series_ics, tz)
        return _Span(foreign, name, parsed, first - timedelta(days=1),
                     (last or now_utc() + AHEAD) + timedelta(days=1))

    def _series(self, master: dict[str, Any], uid: str | None = None) -> RemoteObject:
        span = self._span(master, uid)
        instances = self._instances(master["id"], span.lo, span.hi)
        return self._series_from(master, span, instances)

    def _series_many(self, masters: Sequence[tuple[dict[str, Any], str | None]]
                     ) -> list[RemoteObject | Exception]:
        """Series read whole, their instances listed 20 to a $batch; an unreadable one is
        its exception, in its place."""
        out: list[RemoteObject | Exception | _Span] = []
        for master, uid in masters:
            try:
                out.append(self._span(master, uid))
            except READ_ERRORS as exc:
                out.append(exc)
        wanted = [i for i, span in enumerate(out) if isinstance(span, _Span)]
        listed = self._instances_of([(masters[i][0]["id"], out[i].lo, out[i].hi)  # type: ignore
                                     for i in wanted])
        for i, instances in zip(wanted, listed, strict=True):
            try:
                out[i] = self._series_from(masters[i][0], out[i], instances)  # type: ignore
            except READ_ERRORS as exc:
                out[i] = exc
        return out  # type: ignore[return-value]

    def _series_from(self, master: dict[str, Any], span: _Span,
                     instances: list[dict[str, Any]]) -> RemoteObject:
        """A series whole from its master and instances; a slot the pattern makes but
        Graph does not list is a cancelled occurrence (unless moved far: looked for)."""
        tz, parsed = self.default_tz, span.parsed
        all_day = parsed.master.all_day
        zone_name = parsed.master.tzid or tz
        listed = {original_key(i["originalStart"], all_day, zone_name): i for i in instances
                  if i.get("originalStart")}
        generated = {e.recurrence_id for e in expand(parsed.series_ics, span.lo, span.hi, tz,
                                                     with_overrides=False)}
        missing = generated - set(listed)
        known_cancelled = self._cancelled_occurrences(master, parsed)
        if missing - known_cancelled:
            now = now_utc()
            for item in self._instances(master["id"], now - FAR_BACK, now + FAR_AHEAD):
                if item.get("type") == "exception" and item.get("originalStart"):
                    key = original_key(item["originalStart"], all_day, zone_name)
                    if key in missing:
                        listed[key] = item
                        instances.append(item)
            missing -= set(listed)
        reading = SeriesReading(master, [i for i in listed.values()
                                         if i.get("type") == "exception"], missing)
        pieces = {master.get("@odata.etag")} | {i.get("@odata.etag") for i in instances}
        pieces |= {"#" + i["id"] for i in instances}
        return RemoteObject(master["id"], master.get("@odata.etag"),
                            graph_to_ics(reading, span.name, tz), span.foreign,
                            frozenset(p for p in pieces if p))

    @staticmethod
    def _cancelled_occurrences(master: dict[str, Any], parsed: ParsedObject) -> set[str]:
        """Keys of ``cancelledOccurrences`` ("OID.{id}.{local date}") when Graph gives it."""
        found = set()
        start = parsed.master
        for entry in master.get("cancelledOccurrences") or []:
            day = str(entry).rsplit(".", 1)[-1]
            try:
                when = datetime.fromisoformat(day)
            except ValueError:
                continue
            if start.all_day:
                found.add(when.strftime("%Y%m%d"))
            else:
                from bridge.ical.timezones import local_to_utc, utc_to_local

                wall = utc_to_local(start.start, start.tzid or "UTC").time()
                moment = local_to_utc(datetime.combine(when.date(), wall), start.tzid or "UTC")
                found.add(moment.strftime("%Y%m%dT%H%M%SZ"))
        return found

    def _object(self, event: dict[str, Any], uid: str | None = None) -> RemoteObject:
        if event.get("recurrence") or event.get("type") == "seriesMaster":
            return self._series(event, uid)
        return self._single(event, uid)

    def fetch(self, remote_id: str) -> RemoteObject | None:
        self._cal  # noqa: B018 - bound first
        event = self._get(self._event_url(remote_id), "get")
        if event is None:
            return None
        if event.get("seriesMasterId"):
            return self.fetch(event["seriesMasterId"])
        return self._object(event)

    def fetch_many(self, remote_ids: Sequence[str]) -> dict[str, RemoteObject | None]:
        """The events 20 to a $batch, then the series' instances 20 to a $batch (an
        occurrence's id is read through its series, alone)."""
        if len(remote_ids) == 1:
            return {remote_ids[0]: self.fetch(remote_ids[0])}
        self._cal  # noqa: B018 - bound first
        events = self._masters(remote_ids)
        found: dict[str, RemoteObject | None] = {}
        series: list[str] = []
        for remote_id in remote_ids:
            event = events.get(remote_id)
            if event is None:
                found[remote_id] = None
            elif event.get("seriesMasterId"):
                found[remote_id] = self.fetch(event["seriesMasterId"])
            elif event.get("recurrence") or event.get("type") == "seriesMaster":
                series.append(remote_id)
            else:
                found[remote_id] = self._single(event)
        reads = self._series_many([(events[i], None) for i in series])  # type: ignore[misc]
        for remote_id, read in zip(series, reads, strict=True):
            if isinstance(read, Exception):
                raise TargetStopped(f"an Outlook series could not be read: {read}")
            found[remote_id] = read
        return {remote_id: found[remote_id] for remote_id in remote_ids}

    def _masters(self, ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Several events by id, 20 to a $batch (None: 404)."""
        ids = list(dict.fromkeys(ids))
        found: dict[str, dict[str, Any] | None] = {}
        parts = [self._part("GET", self._event_url(i)[len(self.base):]) for i in ids]

        def answer(index: int, item: dict[str, Any]) -> None:
            status = int(item.get("status", 0))
            if status == 200:
                found[ids[index]] = item["body"]
            elif status in (404, 410):
                found[ids[index]] = None
            else:
                raise TargetStopped(f"Microsoft Graph refused to read an event ({status} "
                                    f"{_error_code(item.get('body'))}): the run stopped")

        if parts:
            self._batch(parts, answer)
        return found

    def _fold(self, items: list[dict[str, Any]], known: Mapping[str, frozenset[str]] | None,
              skip: Collection[str] = (), followed: Collection[str] = ()
              ) -> tuple[list[RemoteObject], list[tuple[str, str]]]:
        """Listed instances and singles as calendar objects (a series read whole once).

        An ``@removed`` id is read again: gone (404) is a deletion, else it moved out of the
        window. A removed occurrence is mapped to its series by the ids kept in the pieces;
        one that cannot be mapped (its series' pieces were dropped) has the followed series
        without pieces read again."""
        known = known or {}
        singles: dict[str, dict[str, Any]] = {}
        series: dict[str, list[dict[str, Any]]] = {}
        removed: list[str] = []
        for item in items:
            if "@removed" in item:
                removed.append(item["id"])
            elif item.get("seriesMasterId"):
                series.setdefault(item["seriesMasterId"], []).append(item)
            elif item.get("type") == "seriesMaster":
                series.setdefault(item["id"], [])
            else:
                singles[item["id"]] = item
        objects: list[RemoteObject] = []
        unreadable: list[tuple[str, str]] = []
        occurrence_of = {p[1:]: rid for rid, pieces in known.items() for p in pieces
                         if p.startswith("#")} if removed else {}
        confirm = []
        for rid in dict.fromkeys(removed):
            if rid in singles or rid in series or rid in skip:
                continue
            if rid in occurrence_of:
                series.setdefault(occurrence_of[rid], [])
                series[occurrence_of[rid]].append({"id": rid, "@odata.etag": None})
            else:
                confirm.append(rid)
        unmapped = False
        for rid, event in self._masters(confirm).items():
            if event is None:
                objects.append(RemoteObject(rid, None, None))
                unmapped = unmapped or rid not in known
            elif event.get("seriesMasterId"):
                series.setdefault(event["seriesMasterId"], []).append({"id": rid,
                                                                       "@odata.etag": None})
            elif event.get("recurrence"):
                series.setdefault(rid, []).append({"id": rid, "@odata.etag": None})
            else:
                singles[rid] = event
        if unmapped:
            for master_id in followed:
                if master_id not in known:
                    series.setdefault(master_id, []).append({"id": master_id,
                                                             "@odata.etag": None})
        for rid, event in singles.items():
            if rid in skip or (event.get("@odata.etag") in known.get(rid, ())):
                continue
            try:
                objects.append(self._single(event))
            except READ_ERRORS as exc:
                unreadable.append((rid, f"{event.get('subject', '')}: {exc}"))
        wanted = [m for m, group in series.items() if m not in skip and not (
            known.get(m) and group and all(i.get("@odata.etag") in known[m] for i in group))]
        masters = []
        for master_id, master in self._masters(wanted).items():
            if master is None:
                objects.append(RemoteObject(master_id, None, None))
            elif master.get("recurrence") or master.get("type") == "seriesMaster":
                masters.append(master)
            else:   # no longer a series
                try:
                    objects.append(self._single(master))
                except READ_ERRORS as exc:
                    unreadable.append((master_id, f"{master.get('subject', '')}: {exc}"))
        for master, read in zip(masters, self._series_many([(m, None) for m in masters]),
                                strict=True):
            if isinstance(read, Exception):
                unreadable.append((master["id"], f"{master.get('subject', '')}: {read}"))
            else:
                objects.append(read)
        return objects, unreadable

    def _view(self, window: Window) -> str:
        return urllib.parse.urlencode({"startDateTime": _time_param(window.start),
                                       "endDateTime": _time_param(window.end)})

    def list_window(self, window: Window, known: Collection[str] = ()) -> Listing:
        items, _, status = self._pages(self.base + f"{self._cal}/calendarView?"
                                       + self._view(window), "calendarView")
        if status == 404:
            raise self._calendar_gone()
        skip = set(known)
        items = [i for i in items if i["id"] not in skip
                 and i.get("seriesMasterId") not in skip]
        objects, unreadable = self._fold(items, None, skip)
        return Listing([o for o in objects if o.ics is not None], None, True, unreadable)

    def _calendar_gone(self) -> CalendarNotFound:
        return CalendarNotFound(f"the Outlook calendar {self.calendar_name or '(default)'!r} "
                                "no longer exists")

    def list_changes(self, state: str | None, window: Window,
                     known: Mapping[str, frozenset[str]] | None = None) -> Listing:
        full = state is None
        items: list[dict[str, Any]] = []
        link: str | None = None
        followed: set[str] = set()
        if not full:
            try:
                saved = json.loads(state)
            except ValueError:
                saved = {"delta": state}
            followed = set(saved.get("series") or [])
            items, link, status = self._pages(saved["delta"], "delta")
            if status == 404:
                raise self._calendar_gone()
            full = status == 410   # syncStateNotFound: the window again, nothing deleted
        if full:
            wide = Window(window.start, window.end + DELTA_BEYOND)
            items, link, status = self._pages(
                self.base + f"{self._cal}/calendarView/delta?" + self._view(wide), "delta")
            if status in (404, 410):
                raise self._calendar_gone()
            inside = {i.get("seriesMasterId") or i["id"] for i in items
                      if "@removed" not in i and _overlaps(i, window)}
            items = [i for i in items if (i.get("seriesMasterId") or i.get("id")) in inside]
        if full:
            followed = set()
        objects, unreadable = self._fold(items, known, followed=followed)
        if full:
            objects = [o for o in objects if o.ics is not None]
        # the series met so far (their removed occurrences cannot always be mapped)
        followed |= {i["seriesMasterId"] for i in items if i.get("seriesMasterId")}
        followed |= {o.remote_id for o in objects if o.ics and "RRULE" in o.ics}
        followed -= {o.remote_id for o in objects if o.ics is None}
        state = json.dumps({"delta": link, "series": sorted(followed)}) if link else None
        return Listing(objects, state, full, unreadable)

    # ------------------------------------------------------------------ writing
    def write(self, ops: Sequence[WriteOp], on_result: Callable[[WriteResult], None]) -> None:
        plans: list[_Plan] = []
        for op in ops:
            try:
                plan = self._plan(op)
            except (Unsupported, InvalidObject) as exc:
                on_result(WriteResult(op, error=WriteError.REJECTED, message=str(exc)))
                continue
            if plan is None:   # nothing differs from the base
                on_result(WriteResult(op, remote=RemoteObject(
                    op.remote_id or "", op.etag, op.ics, op.uid, op.base_pieces)))
                continue
            plans.append(plan)
        plans = self._existing(plans, on_result)
        follow: list[_Plan] = []
        firsts = [p for p in plans if p.body is not None or p.op.kind is WriteKind.DELETE]
        follow += [p for p in plans if p.body is None and p.op.kind is not WriteKind.DELETE]

        def answer(index: int, item: dict[str, Any]) -> None:
            plan = firsts[index]
            status, body = int(item.get("status", 0)), item.get("body")
            if status in (200, 201, 204):
                if plan.op.kind is WriteKind.DELETE:
                    on_result(WriteResult(plan.op))
                elif plan.series is None:
                    on_result(WriteResult(plan.op, remote=self._single(body, plan.op.uid)))
                else:
                    plan.master = body
                    follow.append(plan)
            elif status == 412:
                on_result(WriteResult(plan.op, error=WriteError.PRECONDITION))
            elif status in (404, 410):
                on_result(WriteResult(plan.op, error=WriteError.GONE))
            else:
                on_result(WriteResult(plan.op, error=WriteError.REJECTED, message=(
                    f"Outlook refused it: {status} {_error_code(body)} "
                    f"{(body or {}).get('error', {}).get('message', '')}").strip()))

        self._batch([self._first_request(p) for p in firsts], answer)
        self._follow_up(follow, on_result)

    def _plan(self, op: WriteOp) -> _Plan | None:
        if op.kind is WriteKind.DELETE:
            return _Plan(op)
        parsed = op.parsed or parse_object(op.ics or "", self.default_tz)
        body, series = to_graph(parsed, self.default_tz)
        body["singleValueExtendedProperties"] = [{"id": PROP_ID, "value": op.uid}]
        plan = _Plan(op, body, series, parsed, base_pieces=op.base_pieces)
        if op.kind is WriteKind.CREATE:
            body["transactionId"] = transaction_id(self.calendar_id or "", op.uid)
            return plan
        if series is None:
            body["recurrence"] = None
            return plan
        base = None
        if op.base is not None:
            try:
                base = parse_object(op.base, self.default_tz)
            except InvalidObject:
                base = None
        if base is None or not base.is_series:
            plan.reset = base is None   # unknown remote exceptions: start from a clean one
            return plan
        before = content_of(base, self.default_tz).parts
        after = content_of(parsed, self.default_tz).parts
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        if not changed:
            return None
        old_body, _ = to_graph(base, self.default_tz)
        reshaped = any(old_body.get(k) != body.get(k)
                       for k in ("start", "end", "isAllDay", "recurrence"))
        undeleted = any(before.get(k) == CANCELLED and after.get(k) != CANCELLED
                        for k in changed)
        if reshaped or undeleted:
            plan.reset = undeleted and not reshaped
            return plan      # Graph drops every exception: all are written again
        if MASTER not in changed:
            plan.body = None
        plan.keys = {_key_of(k, series) for k in changed - {MASTER}}
        return plan

    def _existing(self, plans: list[_Plan], on_result: Callable[[WriteResult], None]
                  ) -> list[_Plan]:
        """Creates whose Gestan UID is already stamped on an event (an earlier attempt made
        it): answered EXISTS with that event; the others go on."""
        # only creates an unfinished earlier close may have made are looked for
        creates = [p for p in plans if p.op.kind is WriteKind.CREATE and p.op.may_exist]
        if not creates:
            return plans
        found: dict[int, str] = {}
        parts = []
        for plan in creates:
            flt = (f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP_ID}' and "
                   f"ep/value eq '{_quote(plan.op.uid)}')")
            parts.append(self._part("GET", f"{self._cal}/events?"
                                    + urllib.parse.urlencode({"$filter": flt,
                                                              "$select": "id"})))

        def answer(index: int, item: dict[str, Any]) -> None:
            if int(item.get("status", 0)) != 200:
                raise TargetStopped(f"Microsoft Graph refused a lookup ({item.get('status')} "
                                    f"{_error_code(item.get('body'))}): the run stopped")
            values = (item.get("body") or {}).get("value") or []
            if values:
                found[index] = values[0]["id"]

        self._batch(parts, answer)
        done = {id(creates[i]) for i in found}
        for index, event_id in found.items():
            plan = creates[index]
            on_result(WriteResult(plan.op, remote=self.fetch(event_id), error=WriteError.EXISTS))
        return [p for p in plans if id(p) not in done]

    def _first_request(self, plan: _Plan) -> dict[str, Any]:
        op = plan.op
        if op.kind is WriteKind.DELETE:
            return self._part("DELETE", self._event_url(op.remote_id or "", False)[
                len(self.base):], if_match=op.etag)
        body = dict(plan.body or {})
        if plan.reset and plan.series is not None:
            toggled = json.loads(json.dumps(body["recurrence"]))
            count = 1 if toggled["range"].get("numberOfOccurrences") != 1 else 2
            toggled["range"] = {"type": "numbered", "numberOfOccurrences": count,
                                "startDate": toggled["range"]["startDate"]}
            body["recurrence"] = toggled
        if op.kind is WriteKind.CREATE:
            return self._part("POST", f"{self._cal}/events", body)
        return self._part("PATCH", self._event_url(op.remote_id or "", False)[
            len(self.base):], body, if_match=op.etag)

    def _follow_up(self, plans: list[_Plan], on_result: Callable[[WriteResult], None]
                   ) -> None:
        """The series' second phase, each step one round of $batch across every series:
        the pattern back after a reset; the occurrences to write looked up; their
        exceptions (PATCH) and cancellations (DELETE) written; every series read back."""
        plans = self._restore_patterns(plans, on_result)
        todo = [p for p in plans if self._keys(p)]
        queries = []
        for plan in todo:
            assert plan.series is not None
            instants = [rid_instant(k, plan.series.zone) for k in self._keys(plan)]
            queries.append((self._master_id(plan), min(instants) - timedelta(days=2),
                            max(instants) + timedelta(days=2)))
        failed: dict[int, WriteResult] = {}
        parts: list[tuple[_Plan, str, dict[str, Any]]] = []
        for plan, instances in zip(todo, self._instances_of(queries), strict=True):
            outcome = self._occurrence_parts(plan, instances)
            if isinstance(outcome, WriteResult):
                failed[id(plan)] = outcome
            else:
                parts += [(plan, key, part) for key, part in outcome]
        refused: dict[int, list[str]] = {}

        def answer(index: int, item: dict[str, Any]) -> None:
            if int(item.get("status", 0)) not in (200, 204, 404):
                plan, key, _ = parts[index]
                refused.setdefault(id(plan), []).append(
                    f"{key}: {item.get('status')} {_error_code(item.get('body'))}")

        self._batch([part for _, _, part in parts], answer)
        for plan in todo:
            if id(plan) in refused:
                failed[id(plan)] = WriteResult(plan.op, error=WriteError.REJECTED, message=(
                    "Outlook refused occurrences " + ", ".join(refused[id(plan)])))
        for plan in plans:
            if id(plan) in failed:
                on_result(failed[id(plan)])
        self._read_back([p for p in plans if id(p) not in failed], on_result)

    def _read_back(self, plans: list[_Plan], on_result: Callable[[WriteResult], None]
                   ) -> None:
        """Series just written, read whole: their masters, and in the same $batch round the
        instances of those whose span Graph's answer to the master's write told."""
        spans: dict[int, _Span] = {}
        for plan in plans:
            if plan.master is not None:
                with contextlib.suppress(*READ_ERRORS):
                    spans[id(plan)] = self._span(plan.master, plan.op.uid)
        spanned = [p for p in plans if id(p) in spans]
        masters: dict[int, dict[str, Any] | None] = {}
        listed: dict[int, list[dict[str, Any]]] = {}

        def answer(index: int, item: dict[str, Any]) -> None:
            if index >= len(plans):
                listed[id(spanned[index - len(plans)])] = self._listed_instances(item)
                return
            status = int(item.get("status", 0))
            if status not in (200, 404, 410):
                raise TargetStopped(f"Microsoft Graph refused to read an event ({status} "
                                    f"{_error_code(item.get('body'))}): the run stopped")
            masters[id(plans[index])] = item["body"] if status == 200 else None

        parts = [self._part("GET", self._event_url(self._master_id(p))[len(self.base):])
                 for p in plans]
        parts += [self._instances_part(self._master_id(p), spans[id(p)].lo, spans[id(p)].hi)
                  for p in spanned]
        self._batch(parts, answer)
        rest = [p for p in plans if masters.get(id(p)) is not None and id(p) not in spans]
        reads = dict(zip(map(id, rest), self._series_many(
            [(masters[id(p)], p.op.uid) for p in rest]), strict=True))  # type: ignore[misc]
        for plan in plans:
            master = masters.get(id(plan))
            if master is None:
                on_result(WriteResult(plan.op, error=WriteError.GONE))
                continue
            read: RemoteObject | Exception
            if id(plan) in reads:
                read = reads[id(plan)]
            else:
                try:
                    read = self._series_from(master, self._span(master, plan.op.uid),
                                             listed.get(id(plan), []))
                except READ_ERRORS as exc:
                    read = exc
            if isinstance(read, Exception):
                on_result(WriteResult(plan.op, error=WriteError.REJECTED,
                                      message=f"Outlook holds it in a form we cannot read: "
                                              f"{read}"))
            else:
                on_result(WriteResult(plan.op, remote=read))

    def _master_id(self, plan: _Plan) -> str:
        return plan.master["id"] if plan.master else (plan.op.remote_id or "")

    def _keys(self, plan: _Plan) -> set[str]:
        """The occurrences a series' write touches (all its exceptions and cancellations
        when the master was written whole)."""
        series = plan.series
        assert series is not None
        return plan.keys if plan.keys is not None else set(series.exceptions) | series.cancelled

    def _restore_patterns(self, plans: list[_Plan], on_result: Callable[[WriteResult], None]
                          ) -> list[_Plan]:
        """After a reset (the pattern toggled to drop every exception), the real pattern
        back, one $batch round for all; the series refused are answered and left out."""
        resets = [p for p in plans if p.reset and p.master is not None]
        refused: set[int] = set()

        def answer(index: int, item: dict[str, Any]) -> None:
            status, plan = int(item.get("status", 0)), resets[index]
            if status == 200:
                plan.master = item.get("body") or plan.master  # the pattern as now held
            else:
                refused.add(id(plan))
                on_result(WriteResult(plan.op, error=WriteError.REJECTED, message=(
                    f"Outlook refused the series pattern: {status}")))

        self._batch([self._part("PATCH", self._event_url(self._master_id(p), False)[
            len(self.base):], {"recurrence": p.series.master["recurrence"]},  # type: ignore
            if_match=p.master.get("@odata.etag")) for p in resets], answer)  # type: ignore
        return [p for p in plans if id(p) not in refused]

    def _occurrence_parts(self, plan: _Plan, instances: list[dict[str, Any]]
                          ) -> list[tuple[str, dict[str, Any]]] | WriteResult:
        """The requests writing a series' occurrences (by key), given its instances around
        them; or why it cannot be written (a changed occurrence: PRECONDITION)."""
        op, series, keys = plan.op, plan.series, self._keys(plan)
        assert series is not None and plan.parsed is not None
        by_key = self._by_key(instances, series)
        if keys - set(by_key):   # an exception moved far from its slot
            now = now_utc()
            by_key.update(self._by_key(self._instances(
                self._master_id(plan), now - FAR_BACK, now + FAR_AHEAD), series))
        parts: list[tuple[str, dict[str, Any]]] = []
        generated: dict[str, Any] | None = None
        for key in sorted(keys):
            found = by_key.get(key)
            if found is None:
                if key in series.cancelled:
                    continue  # already gone
                return WriteResult(op, error=WriteError.REJECTED, message=(
                    f"Outlook has no occurrence {key} in this series"))
            occurrence_id, etag = found
            if plan.keys is not None and plan.base_pieces and etag \
                    and etag not in plan.base_pieces:
                return WriteResult(op, error=WriteError.PRECONDITION)
            url = self._event_url(occurrence_id, False)[len(self.base):]
            body = None if key in series.cancelled else series.exceptions.get(key)
            if body is None and key not in series.cancelled:  # back to what it generates
                if generated is None:
                    generated = self._generated(plan.parsed, keys)
                body = generated.get(key)
            parts.append((key, self._part("PATCH", url, body) if body is not None
                          else self._part("DELETE", url)))
        return parts

    @staticmethod
    def _by_key(instances: list[dict[str, Any]], series: SeriesPlan
                ) -> dict[str, tuple[str, str | None]]:
        return {original_key(i["originalStart"], series.all_day, series.zone):
                (i["id"], i.get("@odata.etag")) for i in instances if i.get("originalStart")}

    def _generated(self, parsed: ParsedObject, keys: set[str]) -> dict[str, dict[str, Any]]:
        """Exception bodies that put occurrences back as the master generates them."""
        tz = self.default_tz
        instants = [rid_instant(k, tz) for k in keys]
        found = expand(parsed.series_ics or "", min(instants) - timedelta(days=2),
                       max(instants) + timedelta(days=2), tz, with_overrides=False)
        return {e.recurrence_id or "": event_fields(e, tz) for e in found}


def _key_of(key: str, series: SeriesPlan) -> str:
    from bridge.targets.graph_mapping import _plain_key

    return _plain_key(key, series.all_day, series.zone)


def _overlaps(item: dict[str, Any], window: Window) -> bool:
    """Whether a listed instance (times in UTC, as asked) overlaps the window; an all-day
    one floats, a day of slack either side."""
    try:
        start = datetime.fromisoformat(item["start"]["dateTime"][:19])
        end = datetime.fromisoformat(item["end"]["dateTime"][:19])
    except (KeyError, TypeError, ValueError):
        return True
    slack = timedelta(days=1) if item.get("isAllDay") else timedelta(0)
    return start - slack < window.end and end + slack > window.start


def _json(answer: requests.Response) -> Any:
    try:
        return answer.json()
    except ValueError:
        return None


def build_target(login: str, calendar_name: str | None, default_tz: str, *,
                 directory: Any = None, api_url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> GraphTarget:
    """The GraphTarget of a user from the stored connection (ReconnectNeeded if none)."""
    from bridge.targets import graph_auth

    auth = graph_auth.load(login, directory)
    owner = f"users/{auth.mailbox}" if auth.kind == graph_auth.APP else "me"
    return GraphTarget(auth, owner, calendar_name, default_tz, login=login, api_url=api_url,
                       sleep=sleep)
