"""Exchange (on-premises) through EWS as a sync target, with the real exchangelib. The only
module (with ``ews_mapping``) that knows EWS; the user's Outlook connection maps to it.

Costs: an open with nothing changed is one SyncFolderItems (the folder id is kept in the
cached reference: no GetFolder per run; version, auth type and endpoint are given, so
exchangelib probes nothing); creates go 100 to a CreateItem after one FindItem that looks
for items already stamped with their Gestan UID (a create retried after a crash); updates
are one UpdateItem each (a conflict inside a batch would lose the other items' ChangeKeys);
a series' occurrences go 100 to an UpdateItem / DeleteItem, then one GetItem learns the
master's new ChangeKey. SyncFolderItems gives whole items (extended properties included):
only a series' modified occurrences are read beside it (GetItem, 100 at a time), and a
series whose ChangeKey the engine knows (our own write) is not read at all.

Errors: the retry policy is FailFast (exchangelib's FaultTolerance reads a 401 as throttling
and waits for minutes): ErrorServerBusy is retried here, waiting BackOffMilliseconds (an
injectable sleep), and the run stops cleanly (TargetStopped) after ``max_busy`` of them in a
row or a back-off beyond ``max_wait``; a 401 stops at once (ReconnectNeeded naming
``gestan-bridge outlook connect``); a lost connection stops the run (a write is never sent
twice blindly: the next run's create finds the stamped UID). Never AlwaysOverwrite: updates
and deletes carry the ChangeKey the engine decided from (NeverOverwrite), and
ErrorIrresolvableConflict is WriteError.PRECONDITION. Every create, update and delete is
SendToNone (DESIGN.md rule 9).

Series (see ews_mapping for the rules Exchange cannot hold: refused, reported as skipped).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import requests
from exchangelib import (
    BASIC,
    DELEGATE,
    Account,
    Build,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDateTime,
    EWSTimeZone,
    FailFast,
    Q,
    Version,
)
from exchangelib.errors import (
    ErrorCalendarOccurrenceIsDeletedFromRecurrence as OccurrenceDeleted,
)
from exchangelib.errors import (
    ErrorFolderNotFound,
    ErrorInvalidSyncStateData,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
    ErrorServerBusy,
    ErrorTimeoutExpired,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)
from exchangelib.fields import FieldPath
from exchangelib.folders import Calendar, FolderCollection
from exchangelib.folders.roots import Root
from exchangelib.items import ID_ONLY, NEVER_OVERWRITE, SEND_TO_NONE
from exchangelib.properties import FolderId, OccurrenceItemId, RecurringMasterItemId
from exchangelib.protocol import Protocol
from exchangelib.services import SyncFolderItems

from bridge.ical import parse_object
from bridge.ical.content import CANCELLED, MASTER, content_of, series_zone
from bridge.ical.model import EventData, InvalidObject, ParsedObject
from bridge.ical.series import expand
from bridge.ical.timezones import rid_instant
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
from bridge.targets.ews_mapping import (
    UID_FIELD,
    ItemFields,
    SeriesPlan,
    Unsupported,
    event_fields,
    item_to_ics,
    object_plan,
    register_properties,
)

CHUNK = 100            # items per CreateItem / UpdateItem / DeleteItem / GetItem
SYNC_PAGE = 512        # SyncFolderItems' MaxChangesReturned maximum
MAX_BUSY = 6           # ErrorServerBusy answers in a row before the run stops
MAX_WAIT = 120.0       # the longest back-off honoured (seconds)
DEFAULT_BUILD = (15, 1, 2507, 6)   # Exchange 2016 CU: told, never probed
SINGLE_TYPES = ("Single", "RecurringMaster")
T = TypeVar("T")


@dataclass
class _Write:
    """One op in flight: its plan and what is known of the remote master."""

    op: WriteOp
    plan: SeriesPlan | None = None
    parsed: ParsedObject | None = None
    item_id: str | None = None
    changekey: str | None = None
    occurrences: dict[str, ItemFields | None] = field(default_factory=dict)
    failed: str = ""


class EwsTarget:
    name = "ews"
    # times, texts, TENTATIVE, recurrence: nothing beyond the base set (as Google)
    carries: frozenset[str] = frozenset()

    def __init__(self, *, service_endpoint: str, username: str, password: str, email: str,
                 calendar_name: str | None, default_tz: str, login: str = "",
                 auth_type: str = BASIC, build: tuple[int, ...] = DEFAULT_BUILD,
                 sleep: Callable[[float], None] = time.sleep, max_busy: int = MAX_BUSY,
                 max_wait: float = MAX_WAIT) -> None:
        register_properties()
        config = Configuration(service_endpoint=service_endpoint,
                               credentials=Credentials(username, password), auth_type=auth_type,
                               version=Version(build=Build(*build)), retry_policy=FailFast())
        try:  # exchangelib caches one protocol per (endpoint, credentials): ours must fail fast
            cached = Protocol[config][0]
        except KeyError:
            cached = None
        if cached is not None and not isinstance(getattr(cached, "retry_policy", None),
                                                 FailFast):
            del Protocol[config]
        self.account = Account(email, config=config, autodiscover=False, access_type=DELEGATE,
                               default_timezone=EWSTimeZone(default_tz))
        self.login = login
        self.calendar_name = calendar_name
        self.default_tz = default_tz
        self.sleep = sleep
        self.max_busy = max_busy
        self.max_wait = max_wait
        self.requests = RequestCounter()
        self.folder: Calendar | None = None

    # ------------------------------------------------------------------ plumbing
    def _call(self, kind: str, request: Callable[[], T]) -> T:
        """One EWS request (``request`` must make exactly one), retried while the server is
        busy; what ends the run becomes a neutral error."""
        for attempt in range(self.max_busy + 1):
            self.requests.count += 1
            self.requests.by_kind[kind] = self.requests.by_kind.get(kind, 0) + 1
            try:
                return request()
            except UnauthorizedError:
                raise ReconnectNeeded(
                    "Exchange refused the credentials (401): reconnect with gestan-bridge "
                    f"outlook connect --user {self.login or 'LOGIN'}") from None
            except ErrorServerBusy as exc:
                wait = exc.back_off if exc.back_off else min(2.0 ** attempt, 30.0)
                if attempt == self.max_busy or wait > self.max_wait:
                    raise TargetStopped(
                        "Exchange kept answering ErrorServerBusy: the run stopped cleanly; "
                        "run it again later to finish") from exc
                self.requests.retries += 1
                self.sleep(wait)
            except ErrorFolderNotFound:
                raise CalendarNotFound(
                    f"the Exchange calendar {self._label()} no longer exists") from None
            except ErrorTimeoutExpired as exc:  # exchangelib's name for a lost connection
                raise TargetStopped("Exchange did not answer: the run stopped; run it again "
                                    "later") from exc
            except ResponseMessageError:
                raise  # an answer about this request (conflict, not found...): the caller's
            except (TransportError, requests.RequestException, OSError) as exc:
                raise TargetStopped(f"Exchange could not be reached ({type(exc).__name__}): "
                                    "the run stopped; run it again later") from exc
        raise AssertionError("unreachable")

    def _label(self) -> str:
        return repr(self.calendar_name) if self.calendar_name else "'Calendar'"

    def _bound(self) -> Calendar:
        if self.folder is None:
            raise RuntimeError("bind() the target before using it")
        return self.folder

    # ------------------------------------------------------------------ calendar
    def bind(self, cached: str | None) -> str:
        """The calendar folder: the main Calendar, or a folder under it by display name.
        Its id is kept in the reference, so that later runs ask nothing."""
        root = Root(account=self.account)
        if cached:
            try:
                known = json.loads(cached)
            except ValueError:
                known = {}
            if known.get("name") == self.calendar_name and known.get("id"):
                self.folder = Calendar(root=root, _id=FolderId(id=known["id"]))
                return cached
        calendar = self._call("GetFolder", lambda: Calendar.get_distinguished(root=root))
        if self.calendar_name:
            children = self._call("FindFolder", lambda: list(FolderCollection(
                account=self.account, folders=[calendar]).find_folders()))
            found = [f for f in children if isinstance(f, Calendar)
                     and (f.name or "").casefold() == self.calendar_name.casefold()]
            if not found:
                names = ", ".join(repr(f.name) for f in children if isinstance(f, Calendar))
                raise CalendarNotFound(
                    f"no Exchange calendar named {self.calendar_name!r} under Calendar; the "
                    f"mailbox has: 'Calendar'{', ' + names if names else ''}")
            calendar = found[0]
        self.folder = Calendar(root=root, _id=FolderId(id=calendar.id))
        return json.dumps({"name": self.calendar_name, "id": calendar.id}, sort_keys=True)

    # ------------------------------------------------------------------ reads
    def _sync(self, state: str | None) -> tuple[list[tuple[str, Any]], str]:
        """Every change since ``state`` (None: every item), paged; the new SyncState."""
        folder = self._bound()
        fields = {FieldPath(field=f) for f in folder.allowed_item_fields(
            version=self.account.version)}
        changes: list[tuple[str, Any]] = []
        while True:
            service = SyncFolderItems(account=self.account)
            changes += self._call("SyncFolderItems", lambda s=service, st=state: list(s.call(
                folder=folder, shape=ID_ONLY, additional_fields=fields, sync_state=st,
                ignore=None, max_changes_returned=SYNC_PAGE, sync_scope=None)))
            same = service.sync_state == state
            state = service.sync_state
            if same or service.includes_last_item_in_range:
                return changes, state or ""

    def list_changes(self, state: str | None, window: Window,
                     known: Mapping[str, frozenset[str]] | None = None) -> Listing:
        """SyncFolderItems since ``state``; None or expired: a sync from nothing, which lists
        every item of the folder once and gives a working state (only those overlapping
        ``window`` are handed over, flagged full: nothing is deleted on absence)."""
        full = state is None
        changes: list[tuple[str, Any]] = []
        if not full:
            try:
                changes, new_state = self._sync(state)
            except ErrorInvalidSyncStateData:
                full = True
        if full:
            changes, new_state = self._sync(None)
        known = known or {}
        masters: dict[str, Any] = {}
        deleted: list[str] = []
        occurrences: list[Any] = []
        for kind, item in changes:
            if kind == SyncFolderItems.DELETE:
                deleted.append(item.id)
                masters.pop(item.id, None)
            elif kind in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE) and isinstance(
                    item, CalendarItem):
                if item.type in SINGLE_TYPES:
                    masters[item.id] = item
                else:  # an occurrence or exception: its series is read whole
                    occurrences.append(item)
        for master in self._masters_of(occurrences):
            masters.setdefault(master.id, master)
        chosen = [m for m in masters.values()
                  if not (m.changekey and m.changekey in known.get(m.id, frozenset()))]
        if full:
            chosen = [m for m in chosen if self._overlaps(m, window)]
        objects, unreadable = self._objects(chosen)
        if not full:
            objects += [RemoteObject(item_id, None, None) for item_id in deleted]
        return Listing(objects, new_state, full, unreadable)

    def _overlaps(self, item: Any, window: Window) -> bool:
        """Whether an item may have an instance in the window (a series: unless its range
        ended before it); a full listing is filtered so, the engine checks the rest."""
        start, end = item.start, item.end
        if not isinstance(start, datetime):
            start = EWSDateTime.combine(start, datetime.min.time()).replace(
                tzinfo=EWSTimeZone(self.default_tz))
            end = EWSDateTime.combine(end, datetime.min.time()).replace(
                tzinfo=EWSTimeZone(self.default_tz)) + timedelta(days=1)
        lo = window.start.replace(tzinfo=EWSTimeZone("UTC"))
        hi = window.end.replace(tzinfo=EWSTimeZone("UTC"))
        if item.recurrence is None:
            return start < hi and end > lo
        boundary_end = getattr(item.recurrence.boundary, "end", None)
        if start >= hi:
            return False
        if boundary_end is not None:  # a date, or a date-time when sent without offset
            if isinstance(boundary_end, datetime):
                boundary_end = boundary_end.date()
            return boundary_end >= (window.start - timedelta(days=2)).date()
        return True

    def _masters_of(self, occurrences: list[Any]) -> list[Any]:
        """The recurring masters of occurrences (GetItem RecurringMasterItemId), one per
        series (their UID), 100 to a request."""
        by_uid: dict[str, Any] = {}
        for item in occurrences:
            by_uid.setdefault(item.uid or item.id, item)
        wanted = [CalendarItem(account=self.account, folder=self.folder,
                               _id=RecurringMasterItemId(id=o.id, changekey=o.changekey))
                  for o in by_uid.values()]
        found = []
        for first in range(0, len(wanted), CHUNK):
            chunk = wanted[first:first + CHUNK]
            found += [i for i in self._call("GetItem", lambda c=chunk: list(
                self.account.fetch(ids=c, folder=self._bound())))
                if isinstance(i, CalendarItem)]
        return found

    def _get(self, ids: list[tuple[str, str | None]]) -> list[Any]:
        """Items by id, 100 to a GetItem; an error (not found...) in its place."""
        found: list[Any] = []
        for first in range(0, len(ids), CHUNK):
            chunk = ids[first:first + CHUNK]
            found += self._call("GetItem", lambda c=chunk: list(
                self.account.fetch(ids=c, folder=self._bound())))
        return found

    def _objects(self, masters: list[Any]) -> tuple[list[RemoteObject], list[tuple[str, str]]]:
        """Items as calendar objects: each series with its modified occurrences, read whole
        (one GetItem per 100 of them, for every series listed)."""
        wanted = [(o.id, o.changekey) for m in masters if m.recurrence is not None
                  for o in m.modified_occurrences or []]
        exceptions: dict[str, Any] = {}
        for item in self._get(wanted):
            if isinstance(item, CalendarItem):
                exceptions[item.id] = item
        objects, unreadable = [], []
        for master in masters:
            mine = [exceptions[o.id] for o in (master.modified_occurrences or [])
                    if master.recurrence is not None and o.id in exceptions]
            try:
                objects.append(self._remote(master, mine))
            except (Unsupported, ValueError, KeyError, TypeError, AttributeError) as exc:
                when = master.start.isoformat() if master.start else "?"
                unreadable.append((master.id, f"{master.subject or '(no title)'} ({when}): "
                                              f"Exchange item not understood: {exc}"))
        return objects, unreadable

    def _remote(self, master: Any, exceptions: list[Any]) -> RemoteObject:
        return RemoteObject(master.id, master.changekey,
                            item_to_ics(master, exceptions, self.default_tz),
                            getattr(master, UID_FIELD, None), frozenset({master.changekey}))

    def list_window(self, window: Window, known: Collection[str] = ()) -> Listing:
        """One FindItem of the singles overlapping the slice and of the series starting
        before its end (masters, not their occurrences: what is known is skipped by id
        without reading more), then GetItem of the rest; no state."""
        folder = self._bound()
        tz = EWSTimeZone("UTC")
        lo = EWSDateTime.from_datetime(window.start.replace(tzinfo=tz))
        hi = EWSDateTime.from_datetime(window.end.replace(tzinfo=tz))
        query = folder.filter(Q(start__lt=hi, end__gt=lo) | Q(type="RecurringMaster",
                                                               start__lt=hi))
        query.page_size = 1000
        found = self._call("FindItem", lambda: list(query.only("type", "changekey")))
        skip = set(known)
        wanted = [(i.id, None) for i in found
                  if isinstance(i, CalendarItem) and i.id not in skip]
        items = [i for i in self._get(wanted) if isinstance(i, CalendarItem)]
        objects, unreadable = self._objects([i for i in items if self._overlaps(i, window)])
        return Listing(objects, None, True, unreadable)

    def fetch(self, remote_id: str) -> RemoteObject | None:
        return self.fetch_many([remote_id])[remote_id]

    def fetch_many(self, remote_ids: Sequence[str]) -> dict[str, RemoteObject | None]:
        """GetItem of the items, then of their series' modified occurrences, 100 to a
        request."""
        self._bound()
        items = self._get([(remote_id, None) for remote_id in remote_ids])
        found: dict[str, RemoteObject | None] = dict.fromkeys(remote_ids)
        present = {remote_id: item for remote_id, item in zip(remote_ids, items, strict=True)
                   if isinstance(item, CalendarItem)}
        objects, unreadable = self._objects(list(present.values()))
        if unreadable:
            raise TargetStopped(unreadable[0][1])
        for remote_id, remote in zip(present, objects, strict=True):
            found[remote_id] = remote
        return found

    # ------------------------------------------------------------------ writes
    def write(self, ops: Sequence[WriteOp], on_result: Callable[[WriteResult], None]) -> None:
        """Creates in bulk (after looking their Gestan UIDs up), then updates one by one,
        then deletes; a series' occurrences follow its master."""
        self._bound()
        creates, updates, deletes = [], [], []
        for op in ops:
            if op.kind is WriteKind.DELETE:
                deletes.append(_Write(op))
                continue
            try:
                parsed = op.parsed or parse_object(op.ics or "", self.default_tz)
                plan = object_plan(parsed, self.default_tz)
            except (InvalidObject, Unsupported, ValueError) as exc:
                on_result(WriteResult(op, error=WriteError.REJECTED,
                                      message=f"Exchange cannot hold it: {exc}"))
                continue
            pending = _Write(op, plan, parsed)
            (creates if op.kind is WriteKind.CREATE else updates).append(pending)
        series: list[_Write] = []
        if creates:
            series += self._create(creates, on_result)
        for pending in updates:
            if self._update(pending, on_result):
                series.append(pending)
        if series:
            self._occurrences(series, on_result)
        if deletes:
            self._delete(deletes, on_result)

    def _new_item(self, fields: ItemFields, uid: str) -> CalendarItem:
        item = CalendarItem(account=self.account, folder=self.folder)
        fields.apply(item)
        setattr(item, UID_FIELD, uid)
        if fields.tentative:
            item.legacy_free_busy_status = "Tentative"
        return item

    def _stamped(self, uids: list[str]) -> dict[str, str]:
        """Gestan UID → item id of what an earlier run already made (FindItem on our
        extended property: one request for up to 100 UIDs, a scan of our items beyond)."""
        if not uids:
            return {}
        folder = self._bound()
        found: dict[str, str] = {}
        if len(uids) <= CHUNK:
            query = folder.filter(**{f"{UID_FIELD}__in": uids})
        else:
            query = folder.filter(**{f"{UID_FIELD}__exists": True})
        query.page_size = 1000
        for item in self._call("FindItem", lambda: list(query.only(UID_FIELD))):
            uid = getattr(item, UID_FIELD, None)
            if uid:
                found.setdefault(uid, item.id)
        return found

    def _create(self, creates: list[_Write], on_result: Callable[[WriteResult], None]
                ) -> list[_Write]:
        # only creates an unfinished earlier close may have made are looked for
        existing = self._stamped([p.op.uid for p in creates if p.op.may_exist])
        fresh: list[_Write] = []
        for pending in creates:
            item_id = existing.get(pending.op.uid)
            if item_id is None:
                fresh.append(pending)
                continue
            remote = self.fetch(item_id)
            on_result(WriteResult(pending.op, remote=remote, error=WriteError.EXISTS))
        series: list[_Write] = []
        for first in range(0, len(fresh), CHUNK):
            chunk = fresh[first:first + CHUNK]
            items = [self._new_item(p.plan.master, p.op.uid) for p in chunk]  # type: ignore
            results = self._call("CreateItem", lambda i=items: self.account.bulk_create(
                folder=self.folder, items=i, send_meeting_invitations=SEND_TO_NONE))
            for pending, result in zip(chunk, results, strict=True):
                if isinstance(result, Exception):
                    on_result(WriteResult(pending.op, error=WriteError.REJECTED,
                                          message=f"Exchange refused it: {result}"))
                    continue
                pending.item_id, pending.changekey = result.id, result.changekey
                pending.occurrences = dict(pending.plan.occurrences)  # type: ignore[union-attr]
                if pending.occurrences:
                    series.append(pending)
                else:
                    self._done(pending, on_result)
        return series

    def _done(self, pending: _Write, on_result: Callable[[WriteResult], None]) -> None:
        op = pending.op
        if pending.failed:
            on_result(WriteResult(op, error=WriteError.REJECTED, message=pending.failed))
            return
        assert pending.item_id is not None and pending.changekey is not None
        pieces = frozenset({pending.changekey})
        on_result(WriteResult(op, remote=RemoteObject(pending.item_id, pending.changekey,
                                                      op.ics, op.uid, pieces)))

    def _update(self, pending: _Write, on_result: Callable[[WriteResult], None]) -> bool:
        """The master's UpdateItem (conditional on the ChangeKey), only what Gestan owns and
        what changed; True when occurrences follow."""
        op, plan, parsed = pending.op, pending.plan, pending.parsed
        assert plan is not None and parsed is not None and op.remote_id is not None
        base = op.base
        if base is None and parsed.is_series:
            current = self.fetch(op.remote_id)  # what the series holds now, to write less
            if current is None or current.ics is None:
                on_result(WriteResult(op, error=WriteError.GONE))
                return False
            if op.etag and current.etag != op.etag:
                on_result(WriteResult(op, error=WriteError.PRECONDITION))
                return False
            base = current.ics
        names, occurrences = self._changes(plan, parsed, base)
        was_tentative = base is not None and _master_status(base) == "TENTATIVE"
        if not (plan.master.tentative or was_tentative):  # Outlook's own "show as" stays
            names = [n for n in names if n != "legacy_free_busy_status"]
        pending.item_id, pending.changekey = op.remote_id, op.etag
        if names:
            item = CalendarItem(account=self.account, folder=self.folder, id=op.remote_id,
                                changekey=op.etag)
            plan.master.apply(item)
            item.legacy_free_busy_status = "Tentative" if plan.master.tentative else "Busy"
            try:
                [result] = self._call("UpdateItem", lambda: self.account.bulk_update(
                    [(item, names)], conflict_resolution=NEVER_OVERWRITE,
                    send_meeting_invitations_or_cancellations=SEND_TO_NONE))
            except ErrorIrresolvableConflict:
                on_result(WriteResult(op, error=WriteError.PRECONDITION))
                return False
            if isinstance(result, ErrorItemNotFound):
                on_result(WriteResult(op, error=WriteError.GONE))
                return False
            if isinstance(result, Exception):
                on_result(WriteResult(op, error=WriteError.REJECTED,
                                      message=f"Exchange refused it: {result}"))
                return False
            pending.item_id, pending.changekey = result
        pending.occurrences = occurrences
        if occurrences:
            return True
        if pending.changekey is None:  # nothing written, unconditional: learn the ChangeKey
            self._refresh([pending])
        self._done(pending, on_result)
        return False

    def _changes(self, plan: SeriesPlan, parsed: ParsedObject, base: str | None
                 ) -> tuple[list[str], dict[str, ItemFields | None]]:
        """The master's fields to write and the occurrences to write after it. A new
        pattern or new master times make Exchange drop every exception: then all of them
        are written again; else only the occurrences that differ from ``base``."""
        everything = ["subject", "body", "location", "start", "end", "is_all_day",
                      "legacy_free_busy_status", "gestan_bridge_zone"]
        if parsed.is_series:
            everything += ["recurrence", "gestan_bridge_rule"]
        texts = ["subject", "body", "location", "legacy_free_busy_status"]
        if base is None:
            return everything, dict(plan.occurrences)
        try:
            before = parse_object(base, self.default_tz)
        except InvalidObject:
            return everything, dict(plan.occurrences)
        if before.is_series != parsed.is_series:
            return everything + ["recurrence"] * (not parsed.is_series), dict(plan.occurrences)
        tz = self.default_tz
        old, new = content_of(before, tz).parts, content_of(parsed, tz).parts
        if not parsed.is_series:
            if old.get(MASTER) == new.get(MASTER):
                return [], {}
            return everything + ["recurrence"], {}
        timing = _timing(before.master, tz) != _timing(parsed.master, tz)
        revived = any(old.get(k) == CANCELLED and new.get(k) != CANCELLED for k in old)
        rule_changed = old.get(MASTER) != new.get(MASTER) and _rule_part(before, tz) != \
            _rule_part(parsed, tz)
        if timing or revived or rule_changed:
            return everything, dict(plan.occurrences)
        names = texts if old.get(MASTER) != new.get(MASTER) else []
        occurrences: dict[str, ItemFields | None] = {}
        for key in sorted((set(old) | set(new)) - {MASTER}):
            if old.get(key) == new.get(key) or key not in plan.indexes and key in new:
                continue
            if key in plan.occurrences:
                occurrences[key] = plan.occurrences[key]
            else:  # put back as the series generates it
                fields = self._generated(parsed, key)
                if fields is None:
                    continue
                occurrences[key] = fields
                index = _index_of(parsed, key, tz)
                if index is None:
                    occurrences.pop(key)
                    continue
                plan.indexes[key] = index
        return names, occurrences

    def _generated(self, parsed: ParsedObject, key: str) -> ItemFields | None:
        tz = self.default_tz
        instant = rid_instant(key, series_zone(parsed.master, tz))
        for event in expand(parsed.series_ics or "", instant - timedelta(days=1),
                            instant + timedelta(days=1), tz, with_overrides=False):
            if event.recurrence_id == key:
                return event_fields(event, tz)
        return None

    def _occurrences(self, series: list[_Write], on_result: Callable[[WriteResult], None]
                     ) -> None:
        """Each series' modified occurrences (UpdateItem on OccurrenceItemId) and deleted
        ones (DeleteItem), 100 to a request across series, then the masters' ChangeKeys."""
        edits: list[tuple[_Write, CalendarItem, list[str]]] = []
        removals: list[tuple[_Write, CalendarItem]] = []
        for pending in series:
            assert pending.plan is not None
            for key, fields in sorted(pending.occurrences.items()):
                target = CalendarItem(account=self.account, folder=self.folder,
                                      _id=OccurrenceItemId(id=pending.item_id,
                                                           changekey=pending.changekey,
                                                           instance_index=pending.plan.indexes[
                                                               key]))
                if fields is None:
                    removals.append((pending, target))
                else:
                    target.subject, target.body = fields.subject, fields.body
                    target.location = fields.location
                    target.start, target.end = fields.start, fields.end
                    target._start_timezone = target._end_timezone = fields.zone
                    edits.append((pending, target, ["subject", "body", "location", "start",
                                                    "end"]))
        for first in range(0, len(edits), CHUNK):
            chunk = edits[first:first + CHUNK]
            results = self._call("UpdateItem", lambda c=chunk: self.account.bulk_update(
                [(item, names) for _, item, names in c], conflict_resolution=NEVER_OVERWRITE,
                send_meeting_invitations_or_cancellations=SEND_TO_NONE))
            for (pending, _, _), result in zip(chunk, results, strict=True):
                if isinstance(result, Exception) and not pending.failed:
                    pending.failed = f"an occurrence was refused by Exchange: {result}"
        for first in range(0, len(removals), CHUNK):
            chunk2 = removals[first:first + CHUNK]
            results = self._call("DeleteItem", lambda c=chunk2: self.account.bulk_delete(
                [item for _, item in c], send_meeting_cancellations=SEND_TO_NONE))
            for (pending, _), result in zip(chunk2, results, strict=True):
                if isinstance(result, Exception) and not isinstance(result, OccurrenceDeleted) \
                        and not pending.failed:
                    pending.failed = f"an occurrence could not be deleted: {result}"
        self._refresh(series)
        for pending in series:
            self._done(pending, on_result)

    def _refresh(self, writes: list[_Write]) -> None:
        """The masters' ChangeKeys now (an occurrence's write changes its master's)."""
        ids = [(p.item_id, None) for p in writes if p.item_id]
        found = {}
        for first in range(0, len(ids), CHUNK):
            chunk = ids[first:first + CHUNK]
            for item in self._call("GetItem", lambda c=chunk: list(self.account.fetch(
                    ids=c, folder=self._bound(), only_fields=["changekey"]))):
                if isinstance(item, CalendarItem):
                    found[item.id] = item.changekey
        for pending in writes:
            if pending.item_id in found:
                pending.changekey = found[pending.item_id]
            elif not pending.failed:
                pending.failed = "the series vanished while it was written"

    def _delete(self, deletes: list[_Write], on_result: Callable[[WriteResult], None]) -> None:
        """DeleteItem, 100 to a request; a conflict inside a batch raises with the others
        applied: that batch is then deleted again one by one (what is gone answers GONE)."""
        for first in range(0, len(deletes), CHUNK):
            chunk = deletes[first:first + CHUNK]
            try:
                results = self._call("DeleteItem", lambda c=chunk: self.account.bulk_delete(
                    [(p.op.remote_id, p.op.etag) for p in c],
                    send_meeting_cancellations=SEND_TO_NONE))
            except ErrorIrresolvableConflict:
                if len(chunk) == 1:
                    on_result(WriteResult(chunk[0].op, error=WriteError.PRECONDITION))
                else:
                    for pending in chunk:
                        self._delete([pending], on_result)
                continue
            for pending, result in zip(chunk, results, strict=True):
                if result is True:
                    on_result(WriteResult(pending.op))
                elif isinstance(result, ErrorItemNotFound):
                    on_result(WriteResult(pending.op, error=WriteError.GONE))
                else:
                    on_result(WriteResult(pending.op, error=WriteError.REJECTED,
                                          message=f"Exchange refused it: {result}"))


def _master_status(ics: str) -> str:
    """The master's STATUS in an iCalendar text (its first VEVENT is the master here)."""
    head = ics.split("BEGIN:VEVENT", 1)[-1].split("END:VEVENT", 1)[0]
    return "TENTATIVE" if "\nSTATUS:TENTATIVE" in head.replace("\r\n", "\n") else ""


def _timing(event: EventData, default_tz: str) -> tuple:
    return (event.start, event.end, event.all_day, event.tzid or default_tz)


def _rule_part(parsed: ParsedObject, default_tz: str) -> tuple:
    from bridge.ical.content import series_shape

    shape = series_shape(parsed, default_tz)
    return (sorted(f"{n}:{r.to_ical().decode()}" for n, r in shape.rules),
            sorted(shape.rdates))


def _index_of(parsed: ParsedObject, key: str, default_tz: str) -> int | None:
    from bridge.targets.ews_mapping import recurrence_of

    _, _, expander = recurrence_of(parsed, default_tz)
    return expander.index(key)
