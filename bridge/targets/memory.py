"""A remote calendar held in memory: the reference target of the Target contract suite.

It behaves like a remote the bridge does not control, not like an echo of the engine: it
keeps its own objects (one VCALENDAR text of one UID each, a series with its overrides,
stored as written), chooses its own ids (no client-chosen ids, as EWS and Graph), gives each
object an etag that changes on every write, and hands out delta states over its own change
counter. So a retried create can only be recognised by the Gestan UID stamped on the object
(issue 8, point 9), as for Outlook.

The remote side is a :class:`MemoryAccount` (calendars by name, request counts, injected
failures) with a :class:`MemoryCalendar` per calendar, whose methods are the test API of
"another client"; :class:`MemoryTarget` is the client the engine uses, one per run.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from bridge.ical import parse_object
from bridge.ical.model import InvalidObject
from bridge.ical.series import span
from bridge.targets.base import (
    CalendarNotFound,
    Listing,
    RemoteObject,
    RequestCounter,
    TargetStopped,
    Window,
    WriteError,
    WriteKind,
    WriteOp,
    WriteResult,
)

BATCH_SIZE = 50  # writes per request, as remote batches go


@dataclass(frozen=True)
class MemoryObject:
    """One object as the remote holds it; ``fields`` are what the remote keeps beside the
    iCalendar (a colour, categories, attendees' answers): the engine never sees them, and
    its writes leave them as they are."""

    remote_id: str
    etag: str
    ics: str
    foreign_uid: str | None
    changed: int                  # the change counter value of its last write
    deleted: bool = False
    fields: dict[str, Any] = field(default_factory=dict)

    def remote(self) -> RemoteObject:
        if self.deleted:
            return RemoteObject(self.remote_id, self.etag, None, self.foreign_uid)
        return RemoteObject(self.remote_id, self.etag, self.ics, self.foreign_uid)


@dataclass
class _Failure:
    kind: str           # "read", "write" or "any"
    after_apply: bool   # the write is applied, then the answer is lost


class MemoryCalendar:
    """One calendar's state and the test API of another client writing to it."""

    def __init__(self, account: MemoryAccount, calendar_id: str, name: str,
                 time_zone: str) -> None:
        self.account = account
        self.calendar_id = calendar_id
        self.name = name
        self.time_zone = time_zone
        self.change = 0            # bumped by every write, ours or another client's
        self.epoch = 0             # bumped by expire_states(): older states are unknown
        self._objects: dict[str, MemoryObject] = {}
        self._spans: dict[tuple[str, str], tuple[datetime, datetime | None] | None] = {}

    # ------------------------------------------------------------------ test API
    def add(self, ics: str, *, foreign_uid: str | None = None,
            fields: dict[str, Any] | None = None) -> RemoteObject:
        """Create an object as another client would (the text is not checked: a remote may
        hold what the bridge cannot read)."""
        remote_id = self.account.new_id()
        return self._put(remote_id, ics, foreign_uid, dict(fields or {})).remote()

    def edit(self, remote_id: str, ics: str) -> RemoteObject:
        """Replace an object's text (its remote-only fields and foreign uid stay)."""
        current = self._live(remote_id)
        return self._put(remote_id, ics, current.foreign_uid, current.fields).remote()

    def set_fields(self, remote_id: str, **fields: Any) -> RemoteObject:
        """Set remote-only fields (a write: the etag changes)."""
        current = self._live(remote_id)
        return self._put(remote_id, current.ics, current.foreign_uid,
                         {**current.fields, **fields}).remote()

    def delete(self, remote_id: str) -> None:
        current = self._live(remote_id)
        self.change += 1
        self._objects[remote_id] = replace(current, deleted=True, changed=self.change,
                                           etag=self._etag())

    def expire_states(self) -> None:
        """Every delta state handed out so far is forgotten (as a 410 / expired state)."""
        self.epoch += 1

    def object(self, remote_id: str) -> MemoryObject | None:
        """The stored record, deleted ones included (None: never existed)."""
        return self._objects.get(remote_id)

    def live(self) -> list[MemoryObject]:
        """What the calendar holds now, in creation order."""
        return [o for o in self._objects.values() if not o.deleted]

    # ------------------------------------------------------------------ internals
    def _etag(self) -> str:
        return f'"{self.calendar_id}-{self.change}"'

    def _live(self, remote_id: str) -> MemoryObject:
        found = self._objects.get(remote_id)
        if found is None or found.deleted:
            raise KeyError(f"no object {remote_id!r} in {self.name!r}")
        return found

    def _put(self, remote_id: str, ics: str, foreign_uid: str | None,
             fields: dict[str, Any]) -> MemoryObject:
        self.change += 1
        stored = MemoryObject(remote_id, self._etag(), ics, foreign_uid, self.change,
                              fields=fields)
        self._objects[remote_id] = stored  # an existing key keeps its place: creation order
        return stored

    def _state(self) -> str:
        return f"{self.epoch}.{self.change}"

    def _since(self, state: str | None) -> int | None:
        """The change counter a state stands for; None: unknown, expired or malformed."""
        if state is None:
            return None
        epoch, _, change = state.partition(".")
        if epoch != str(self.epoch) or not change.isdigit() or int(change) > self.change:
            return None
        return int(change)

    def _span(self, stored: MemoryObject) -> tuple[datetime, datetime | None] | None:
        """First start and last end of every instance (None: the text cannot be read)."""
        key = (stored.remote_id, stored.etag)
        if key not in self._spans:
            try:
                self._spans[key] = span(parse_object(stored.ics, self.time_zone),
                                        self.time_zone)
            except (InvalidObject, ValueError):
                self._spans[key] = None
        return self._spans[key]

    def _overlaps(self, stored: MemoryObject, window: Window) -> bool:
        found = self._span(stored)
        if found is None:
            return True  # unreadable: listed, so that the caller reports it
        first, last = found
        return first < window.end and (last is None or last > window.start)

    def _find_foreign(self, uid: str) -> MemoryObject | None:
        return next((o for o in self._objects.values()
                     if not o.deleted and o.foreign_uid == uid), None)


class MemoryAccount:
    """The remote service: calendars by name, what reached it, and injected failures."""

    def __init__(self, time_zone: str = "Europe/Paris") -> None:
        self.time_zone = time_zone
        self.calendars: dict[str, MemoryCalendar] = {}
        self.request_count = 0      # requests that reached the remote (a batch counts once)
        self.injected_errors = 0
        self._ids = itertools.count(1)
        self._failures: list[_Failure] = []

    def add_calendar(self, name: str, time_zone: str | None = None) -> MemoryCalendar:
        calendar = MemoryCalendar(self, f"cal{next(self._ids)}", name,
                                  time_zone or self.time_zone)
        self.calendars[calendar.calendar_id] = calendar
        return calendar

    def delete_calendar(self, name: str) -> None:
        for calendar_id, calendar in list(self.calendars.items()):
            if calendar.name == name:
                del self.calendars[calendar_id]

    def new_id(self) -> str:
        """An opaque id of the remote's choosing (never derived from the client's data)."""
        return f"AAMk{next(self._ids):08x}"

    def fail_next(self, count: int = 1, *, kind: str = "any", after_apply: bool = False
                  ) -> None:
        """The next ``count`` operations of ``kind`` ("read", "write" or "any": each write
        of a batch counts one) stop the run with :class:`TargetStopped`, as a remote that
        is down. ``after_apply``: a write is applied first, and its answer lost."""
        if kind not in ("read", "write", "any"):
            raise ValueError(f"unknown kind {kind!r}")
        self._failures.extend(_Failure(kind, after_apply) for _ in range(count))

    def clear_failures(self) -> None:
        self._failures.clear()

    def target(self, calendar_name: str, default_tz: str | None = None) -> MemoryTarget:
        return MemoryTarget(self, calendar_name, default_tz or self.time_zone)

    def _take_failure(self, kind: str) -> _Failure | None:
        for n, failure in enumerate(self._failures):
            if failure.kind in (kind, "any"):
                self.injected_errors += 1
                return self._failures.pop(n)
        return None

    def _read(self) -> None:
        """One read request reaching the remote (or refused by an injected failure)."""
        self.request_count += 1
        if self._take_failure("read") is not None:
            raise TargetStopped("the remote calendar is not answering (injected failure)")


class MemoryTarget:
    """The client side: implements :class:`bridge.targets.base.Target` over an account."""

    name = "memory"
    # it stores the iCalendar text whole: alarms, attendees and the rest come back, so their
    # edits there are changes (the engine's content keys include them)
    carries: frozenset[str] = frozenset({"VALARM", "ATTENDEE", "CATEGORIES", "CONTACT"})

    def __init__(self, account: MemoryAccount, calendar_name: str,
                 default_tz: str = "Europe/Paris") -> None:
        self.account = account
        self.calendar_name = calendar_name
        self.default_tz = default_tz
        self.requests = RequestCounter()
        self.calendar: MemoryCalendar | None = None

    def _count(self, kind: str) -> None:
        self.requests.count += 1
        self.requests.by_kind[kind] = self.requests.by_kind.get(kind, 0) + 1

    def _bound(self) -> MemoryCalendar:
        if self.calendar is None:
            raise RuntimeError("bind() the target before using it")
        if self.calendar.calendar_id not in self.account.calendars:
            raise CalendarNotFound(f"the calendar {self.calendar_name!r} no longer exists")
        return self.calendar

    # ------------------------------------------------------------------ Target
    def bind(self, cached: str | None) -> str:
        """Find the calendar by name; a cached reference that still names it costs nothing."""
        if cached:
            try:
                known = json.loads(cached)
            except ValueError:
                known = {}
            calendar = self.account.calendars.get(known.get("id", ""))
            if known.get("name") == self.calendar_name and calendar is not None:
                self.calendar = calendar
                return cached
        self._count("calendars.list")
        self.account._read()
        for calendar in self.account.calendars.values():
            if calendar.name == self.calendar_name:
                self.calendar = calendar
                return json.dumps({"name": calendar.name, "id": calendar.calendar_id},
                                  sort_keys=True)
        names = ", ".join(repr(c.name) for c in self.account.calendars.values())
        raise CalendarNotFound(f"no calendar named {self.calendar_name!r}; the account has: "
                               f"{names or 'none'}")

    def list_changes(self, state: str | None, window: Window,
                     known: Mapping[str, frozenset[str]] | None = None) -> Listing:
        """A delta since ``state`` (every change, in or out of the window: a linked object
        moved out of it must be followed), or a full listing of the window when ``state``
        is None or no longer known, which holds no deletions."""
        calendar = self._bound()
        self._count("list")
        self.account._read()
        since = calendar._since(state)
        if since is None:
            chosen = [o for o in calendar.live() if calendar._overlaps(o, window)]
        else:
            chosen = [o for o in calendar._objects.values() if o.changed > since]
        # A text the bridge cannot read is handed over as is: the caller's parser reports
        # why (the remote converts nothing, so nothing is "unreadable" here).
        return Listing([o.remote() for o in chosen], calendar._state(), since is None)

    def list_window(self, window: Window, known: Collection[str] = ()) -> Listing:
        """Every live object overlapping ``window`` but those in ``known``; no state."""
        calendar = self._bound()
        self._count("list")
        self.account._read()
        skip = set(known)
        chosen = [o for o in calendar.live()
                  if o.remote_id not in skip and calendar._overlaps(o, window)]
        return Listing([o.remote() for o in chosen], None, True)

    def fetch(self, remote_id: str) -> RemoteObject | None:
        calendar = self._bound()
        self._count("get")
        self.account._read()
        found = calendar.object(remote_id)
        return None if found is None or found.deleted else found.remote()

    def fetch_many(self, remote_ids: Sequence[str]) -> dict[str, RemoteObject | None]:
        return {remote_id: self.fetch(remote_id) for remote_id in remote_ids}

    def write(self, ops: Sequence[WriteOp], on_result: Callable[[WriteResult], None]) -> None:
        """Each op answered as soon as applied; an injected failure stops the run there
        (after applying the op when the failure says so, its answer then lost)."""
        calendar = self._bound()
        for n, op in enumerate(ops):
            if n % BATCH_SIZE == 0:
                self._count("batch")
                self.account.request_count += 1
            failure = self.account._take_failure("write")
            if failure is not None and not failure.after_apply:
                raise TargetStopped("the remote calendar is not answering (injected failure)")
            result = self._apply(calendar, op)
            if failure is not None:
                raise TargetStopped("the remote calendar's answer was lost (injected failure)")
            on_result(result)

    def _apply(self, calendar: MemoryCalendar, op: WriteOp) -> WriteResult:
        if op.kind is not WriteKind.DELETE:
            try:
                parse_object(op.ics or "", self.default_tz)
            except InvalidObject as exc:
                return WriteResult(op, error=WriteError.REJECTED, message=exc.reason)
        if op.kind is WriteKind.CREATE:
            # No client-chosen ids: a create retried after a lost answer is recognised by
            # the Gestan UID stamped on what the first attempt made.
            existing = calendar._find_foreign(op.uid)
            if existing is not None:
                return WriteResult(op, remote=existing.remote(), error=WriteError.EXISTS)
            stored = calendar._put(self.account.new_id(), op.ics or "", op.uid, {})
            return WriteResult(op, remote=stored.remote())
        current = calendar.object(op.remote_id or "")
        if current is None or current.deleted:
            return WriteResult(op, error=WriteError.GONE)
        if op.etag is not None and op.etag != current.etag:
            return WriteResult(op, error=WriteError.PRECONDITION)
        if op.kind is WriteKind.DELETE:
            calendar.delete(current.remote_id)
            return WriteResult(op)
        stored = calendar._put(current.remote_id, op.ics or "", op.uid, current.fields)
        return WriteResult(op, remote=stored.remote())
