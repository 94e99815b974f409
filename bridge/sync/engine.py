"""The executor: one open (pull) or close (push) run of one user against one target.

It reads Gestan's side from the store and the remote's through a
:class:`bridge.targets.base.Target`, asks :func:`bridge.sync.decide.decide` what to do for
each object (and :func:`~bridge.sync.decide.split_occurrences` for a series changed on both
sides), and writes each outcome with its link in one transaction, so a run stopped at any
point leaves a state from which the next run finishes the job without duplicates. Every
write into Gestan is conditional on the revision it was decided from: a phone's write that
lands during the run is decided again, never overwritten unseen.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from bridge.config import setting
from bridge.ical import parse_object
from bridge.ical.content import Content, content_of
from bridge.ical.describe import label, raw_label
from bridge.ical.future import CannotCut, cut_series, has_future, part_of, part_uid, with_uid
from bridge.ical.merge import keep_local_extras, merge_occurrences
from bridge.ical.model import EventData, InvalidObject, ParsedObject
from bridge.ical.series import span
from bridge.ical.timezones import now_utc
from bridge.store import Link, PullWrite, RunItem, Store, StoredObject, User
from bridge.store.objects import HORIZON
from bridge.sync.decide import (
    ABSENT,
    UNKNOWN,
    Action,
    Decision,
    LinkState,
    Present,
    SideState,
    decide,
    split_occurrences,
)
from bridge.sync.report import Conflict, RunReport
from bridge.targets.base import (
    Listing,
    RemoteObject,
    Target,
    TargetStopped,
    Window,
    WriteError,
    WriteKind,
    WriteOp,
    WriteResult,
)

GESTAN = "gestan"
MAX_WRITE_ROUNDS = 3
MAX_DECISIONS = 3   # a Gestan object changed under the run is decided again, this many times
PULL_BATCH = 100    # writes of an open per transaction (phones wait at most that long)
LINKS_PER_TRANSACTION = 50  # links recorded after a close's writes, per transaction
ITEMS_PER_TRANSACTION = 100  # audit log items written as the run goes
UNFINISHED = "unfinished"   # a link's local key when Gestan's version is not yet written
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    # None: the user's "sync_days_back" setting, else [gestan] sync_days_back
    days_back: int | None = None
    allow_mass_delete: bool = False
    # defaults from [gestan] (bridge.config), read when the options are made
    mass_delete_ratio: float = field(default_factory=lambda: setting("mass_delete_ratio"))
    mass_delete_min: int = field(default_factory=lambda: setting("mass_delete_min"))


class SyncBusy(RuntimeError):
    """Another sync of this user is running."""


class MassDelete(RuntimeError):
    """The run would delete more than the threshold: nothing was applied."""


# Two syncs of one user never run at once, in any process (a lease in the database,
# renewed while the run goes on, so that a killed process blocks for minutes, not for ever).
LOCK_LEASE = timedelta(minutes=10)
LOCK_RENEW_SECONDS = 60.0


def holder_is_dead(holder: str) -> bool:
    """Whether a lock's holder (``host:pid:nonce``) is provably gone: a process of this host
    that no longer exists. Another host's holder is never presumed dead (its lease ends)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:40] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process: a run of another thread, alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False


def window_end(now: datetime) -> datetime:
    """The window's end: one year ahead, at the UTC midnight before (never beyond a year),
    so that it moves once a day and a run looks at the slice that entered it once a day."""
    end = now + HORIZON
    return end.replace(hour=0, minute=0, second=0, microsecond=0)


def bind_calendar(store: Store, user: User, target: Target, *, dry_run: bool = False):
    """Find the remote calendar and keep the target's reference to it in the sync state
    (``outlook connect`` does it once, so that runs ask nothing); another calendar than
    last time starts the target's sync afresh. The sync state, as now kept."""
    name = target.name
    state = store.sync_state(user.id, name)
    reference = target.bind(state.calendar_id)
    if reference != state.calendar_id and not dry_run:
        if state.calendar_id is not None:
            store.reset_sync(user.id, name)
        store.save_sync_state(user.id, name, calendar_id=reference)
        state = store.sync_state(user.id, name)
    return state


@dataclass(frozen=True)
class _Unit:
    """What one remote object holds of a Gestan object: the object itself, or a part of a
    series cut "this and following" (:mod:`bridge.ical.future`), which Google and Outlook
    hold as a series of its own."""

    obj: StoredObject
    part: str       # "" the object (or the first part), else the part's key
    uid: str        # what is stamped remotely
    ics: str | None  # None: deleted in Gestan (the object, or this part of it)

    @property
    def deleted(self) -> bool:
        return self.ics is None


@dataclass
class _PullStep:
    """One remote object of an open and what was decided for it."""

    remote: RemoteObject
    parsed: ParsedObject | None
    link: Link | None
    local: StoredObject | None = None
    part: str = ""   # the part of ``local`` it holds (a series cut "this and following")
    decision: Decision = Decision(Action.NOTHING)
    merged: str | None = None   # a series merged per occurrence: what Gestan gets
    clashes: frozenset[str] = frozenset()  # occurrences both sides changed
    adopt: bool = False   # our own unfinished write: link it, leave Gestan as it is


class SyncRun:
    def __init__(self, store: Store, login: str, target: Target,
                 options: SyncOptions | None = None, progress: Progress | None = None,
                 now: datetime | None = None) -> None:
        self.store = store
        self.user: User = store.require_user(login)
        self.target = target
        self.carries: frozenset[str] = getattr(target, "carries", frozenset())
        self.options = options or SyncOptions()
        self.progress = progress
        self.now = now = now or now_utc()
        days_back = self.options.days_back
        if days_back is None:
            own = self.user.settings.get("sync_days_back")
            days_back = int(own) if own not in (None, "") else setting("sync_days_back")
        self.window = Window(now - timedelta(days=days_back), window_end(now))
        self._items: list[RunItem] = []
        self._contents: dict[str, Content] = {}
        self._readings: dict[str, ParsedObject] = {}
        self._deleted_events: dict[int, EventData] = {}  # what deleted objects were
        self._fetched: dict[str, RemoteObject | None] = {}  # series read before a close
        self._linked_parts: dict[int, frozenset[str]] = {}  # object id → parts linked
        self._cuts: dict[tuple[str, frozenset[str]], dict[str, str]] = {}
        self._holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._run_id: int | None = None
        self._renewed = 0.0

    # ------------------------------------------------------------------ helpers
    def _parse(self, ics: str) -> ParsedObject:
        """What a text means: the store's own reading (a single's action) when there is
        one, else the text parsed, once per run (the target and the store are handed the
        reading, never the text to parse again)."""
        reading = self._readings.get(ics)
        if reading is None:
            reading = self._readings[ics] = parse_object(ics, self.user.timezone)
        return reading

    def _content(self, ics: str | None) -> Content | None:
        """What a text means (memoised for the run: each side is read once)."""
        if not ics:
            return None
        content = self._contents.get(ics)
        if content is None:
            content = self._contents[ics] = content_of(self._parse(ics), self.user.timezone,
                                                       self.carries)
        return content

    def _key(self, ics: str | None) -> str | None:
        content = self._content(ics)
        return content.key if content else None

    def _parts(self, ics: str | None) -> dict[str, str] | None:
        """The per-occurrence keys kept in a link: series only."""
        content = self._content(ics)
        if content is None or not self._parse(ics).is_series:
            return None
        return content.parts

    def _cut(self, obj: StoredObject) -> dict[str, str]:
        """The parts of a live object (part key → text): the object whole, unless it has
        THISANDFUTURE overrides or the target holds it cut (its links name the parts).
        :class:`CannotCut` when it cannot be written as plain series."""
        linked = self._linked_parts.get(obj.id, frozenset())
        if not has_future(obj.ics) and linked <= {""}:
            return {"": obj.ics}
        memo = (obj.ics, linked)
        if memo not in self._cuts:
            self._cuts[memo] = {p.key: p.ics for p in cut_series(obj.ics, self.user.timezone,
                                                                    linked)}
        return self._cuts[memo]

    def _local_part(self, obj: StoredObject | None, part: str) -> str | None:
        """Gestan's text of one part of an object (None: deleted, or no such part now)."""
        if obj is None or obj.deleted or not obj.ics:
            return None
        try:
            return self._cut(obj).get(part)
        except CannotCut:
            return obj.ics if part == "" else None

    def _label(self, *texts: str | None, object_id: int | None = None) -> str:
        """The appointment in words (subject and date) from the first readable text, else
        from what Gestan kept of a deleted object: every line of a report names it."""
        for ics in texts:
            if ics:
                try:
                    parsed = self._parse(ics)
                except InvalidObject:
                    continue
                return label(parsed.master, self.user.timezone, parsed.is_series)
        if object_id is not None:
            if object_id not in self._deleted_events:
                self._deleted_events.update(self.store.first_events(self.user.id, [object_id]))
            event = self._deleted_events.get(object_id)
            if event is not None:
                return label(event, self.user.timezone)
        return ""

    def _in_window(self, parsed: ParsedObject) -> bool:
        first, last = span(parsed, self.user.timezone)
        return first < self.window.end and (last is None or last > self.window.start)

    def _record(self, report: RunReport, change: str, side: str, uid: str, ics: str | None,
                conflict: bool, losing_ics: str | None, winner: str,
                object_id: int | None = None) -> None:
        report.count(side, change)
        summary = self._label(ics, losing_ics, object_id=object_id)
        self._items.append(RunItem(change, side, uid, summary, "", None))
        if conflict:
            self._conflict(report, side, uid, summary, winner, change, losing_ics)

    def _conflict(self, report: RunReport, side: str, uid: str, summary: str, winner: str,
                  change: str, losing_ics: str | None, occurrences: str = "") -> None:
        detail = f"{winner} won ({change})" + (f" on {occurrences}" if occurrences else "")
        report.conflicts.append(Conflict(uid, summary, winner, change, losing_ics))
        self._items.append(RunItem("conflict", side, uid, summary, detail, losing_ics))

    def _tick(self, phase: str, done: int, total: int) -> None:
        if time.monotonic() - self._renewed > LOCK_RENEW_SECONDS:
            self.store.renew_sync_lock(self.user.id, self._holder, LOCK_LEASE)
            self._renewed = time.monotonic()
        if len(self._items) >= ITEMS_PER_TRANSACTION:
            self._log_items()  # a run killed later still shows what it did
        if self.progress:
            self.progress(phase, done, total)

    def _log_items(self) -> None:
        if self._items and self._run_id is not None:
            self.store.log_run_items(self._run_id, self._items)
            self._items = []

    def _check_mass_delete(self, deletes: int, total: int) -> None:
        o = self.options
        if o.allow_mass_delete or deletes < o.mass_delete_min:
            return
        if deletes > o.mass_delete_ratio * max(total, 1):
            raise MassDelete(
                f"this run would delete {deletes} of {total} appointments: nothing was "
                "changed; check the calendar, then rerun with --allow-mass-delete")

    def _run(self, direction: str, body: Callable[[RunReport], None]) -> RunReport:
        report = RunReport(self.user.login, self.target.name, direction, self.options.dry_run)
        busy_until = self.store.take_sync_lock(self.user.id, self._holder, LOCK_LEASE,
                                               dead=holder_is_dead)
        if busy_until is not None:
            raise SyncBusy(f"a sync of {self.user.login} is already running (if its process "
                           f"died, its lock ends at {busy_until:%H:%M:%S} UTC)")
        self._renewed = time.monotonic()
        try:
            report.run_id = self._run_id = self.store.start_run(
                self.user.id, self.target.name, direction, self.options.dry_run)
            try:
                body(report)
            except (TargetStopped, MassDelete) as exc:
                report.status, report.message = "stopped", str(exc)
            except Exception as exc:
                report.status, report.message = "failed", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                report.requests = self.target.requests.count
                self._log_items()
                self.store.finish_run(report.run_id, report.status, report.message,
                                      report.counts())
        finally:
            self.store.release_sync_lock(self.user.id, self._holder)
        return report

    def _bind(self):
        return bind_calendar(self.store, self.user, self.target, dry_run=self.options.dry_run)

    # ------------------------------------------------------------------ open
    def pull(self) -> RunReport:
        """Open: the target's changes come into Gestan (the target wins)."""
        return self._run("open", self._pull)

    def _listing(self, state, links: dict[str, Link]) -> Listing:
        """The remote's changes since the last open, and what entered the window since (a
        listing of the new slice only, at most once a day)."""
        listing = self.target.list_changes(
            state.remote_state, self.window,
            known={r: link.pieces for r, link in links.items() if link.pieces})
        entered = state.open_window_end
        if listing.full or entered is None or entered >= self.window.end:
            return listing
        extra = self.target.list_window(Window(max(entered, self.window.start),
                                               self.window.end), known=links.keys())
        seen = {o.remote_id for o in listing.objects}
        return Listing(listing.objects + [o for o in extra.objects if o.remote_id not in seen
                                          and o.ics is not None],
                       listing.state, listing.full, listing.unreadable + extra.unreadable)

    def _pull(self, report: RunReport) -> None:
        login, target = self.user.login, self.target.name
        if not self.options.dry_run:
            self.store.refresh_series(login, now=self.now)
        state = self._bind()
        self._pushed_revision = state.pushed_revision
        links = {link.remote_id: link for link in self.store.sync_links(self.user.id, target)}
        self._note_parts(links.values())
        self._object_links: dict[int, list[Link]] = {}
        for link in links.values():
            self._object_links.setdefault(link.object_id, []).append(link)
        listing = self._listing(state, links)
        report.skipped.extend(listing.unreadable)
        steps: list[_PullStep] = []
        for remote in listing.objects:
            parsed = None
            if remote.ics is not None:
                try:
                    parsed = self._parse(remote.ics)
                except InvalidObject as exc:
                    report.skipped.append((remote.foreign_uid or remote.remote_id,
                                           f"{raw_label(remote.ics)}: {exc.reason}"))
                    continue
                if remote.remote_id not in links and not self._in_window(parsed):
                    continue  # outside the window nothing is pulled
            steps.append(_PullStep(remote, parsed, links.get(remote.remote_id)))
        by_id = self.store.objects_by_id(
            self.user.id, [s.link.object_id for s in steps if s.link is not None])
        uids = [s.parsed.uid for s in steps if s.parsed and s.link is None] \
            + [s.remote.foreign_uid for s in steps if s.remote.foreign_uid and s.link is None]
        by_uid = self.store.objects_by_uid(
            self.user.id, uids + [found[0] for uid in uids if (found := part_of(uid))])
        for step in steps:
            if step.link is not None:
                local = by_id.get(step.link.object_id)
                step.part = step.link.part
            else:
                local = by_uid.get(step.remote.foreign_uid or "") or (
                    by_uid.get(step.parsed.uid) if step.parsed else None)
                if local is None:
                    local, step.part = self._part_owner(step, by_uid)
            self._decide_pull(step, local)
        deletes = sum(1 for s in steps if s.decision.action is Action.DELETE)
        self._check_mass_delete(deletes, self.store.object_count(self.user.id))
        self._apply_pull(report, steps)
        if not self.options.dry_run:
            fields = {"open_window_end": self.window.end}
            if listing.state is not None:
                fields["remote_state"] = listing.state
            self.store.save_sync_state(self.user.id, target, **fields)

    def _part_owner(self, step: _PullStep, by_uid: dict[str, StoredObject]
                    ) -> tuple[StoredObject | None, str]:
        """An unlinked remote series stamped with a part's UID (a close that made it and
        stopped before linking it): the Gestan object whose part it is, if it still has it."""
        found = part_of(step.remote.foreign_uid or (step.parsed.uid if step.parsed else ""))
        owner = by_uid.get(found[0]) if found else None
        if owner is None or self._local_part(owner, found[1]) is None:
            return None, ""
        return owner, found[1]

    def _decide_pull(self, step: _PullStep, local: StoredObject | None) -> None:
        """What to do with one remote object, given Gestan's object as just read."""
        remote, link = step.remote, step.link
        step.local, step.merged = local, None
        mine = self._local_part(local, step.part)  # Gestan's text of what the remote holds
        dest: SideState
        if local is None:
            dest = ABSENT if link is not None else UNKNOWN
        else:
            dest = ABSENT if mine is None else Present(self._key(mine))
        remote_key = self._key(remote.ics)
        source = Present(remote_key) if remote_key else ABSENT
        state = LinkState(link.remote_hash, link.local_hash) if link else None
        step.decision = decide(source, dest, state)
        if (link is None and mine is not None and remote.ics
                and remote.foreign_uid == part_uid(local.uid, step.part)
                and step.decision.action is Action.UPDATE
                and local.revision > self._pushed_revision):
            # Our own write that a close did not finish (a series whose occurrences were
            # not all written when it stopped): Gestan's version is the truth, the next
            # close completes it. Linked as "not agreed", nothing pulled.
            step.decision = Decision(Action.LINK)
            step.adopt = True
            return
        if (step.decision.action is Action.UPDATE and step.decision.conflict and link
                and link.parts and isinstance(dest, Present)):
            step.decision, step.merged, step.clashes = self._per_occurrence(
                link.parts, remote.ics, mine, step.decision)

    def _per_occurrence(self, agreed: dict[str, str], source_ics: str, dest_ics: str,
                        decision: Decision
                        ) -> tuple[Decision, str | None, frozenset[str]]:
        """A series changed on both sides: each occurrence from the side that changed it;
        a conflict only where both changed the same occurrence."""
        source, dest = self._parts(source_ics), self._parts(dest_ics)
        if source is None or dest is None:
            return decision, None, frozenset()
        split = split_occurrences(agreed, source, dest)
        merged = None
        if split.from_dest:
            merged = merge_occurrences(source_ics, dest_ics, set(split.from_dest),
                                       self.user.timezone)
        return Decision(decision.action, conflict=bool(split.clashes)), merged, split.clashes

    def _writes_cut(self, step: _PullStep) -> bool:
        """Whether applying ``step`` takes a series cut "this and following" apart."""
        local = step.local
        if step.decision.action not in (Action.CREATE, Action.UPDATE, Action.DELETE) \
                or local is None or local.deleted:
            return False
        if step.part:
            return True
        try:
            return len(self._cut(local)) > 1
        except CannotCut:
            return False

    def _groups(self, steps: list[_PullStep]) -> list[list[_PullStep]]:
        """One write per group: a step alone, or every step of an object taken apart."""
        cut = {s.local.id for s in steps if self._writes_cut(s)}
        groups: list[list[_PullStep]] = []
        by_object: dict[int, list[_PullStep]] = {}
        for step in steps:
            if step.local is None or step.local.id not in cut:
                groups.append([step])
            elif step.local.id in by_object:
                by_object[step.local.id].append(step)
            else:
                groups.append(by_object.setdefault(step.local.id, [step]))
        return groups

    def _apply_pull(self, report: RunReport, steps: list[_PullStep]) -> None:
        """Apply the decisions, writes in transactions of ``PULL_BATCH``; a step whose Gestan
        object changed since it was read (a phone's write during the run) is read again
        and decided again."""
        pending, total, done = steps, len(steps), 0
        for _attempt in range(MAX_DECISIONS):
            again: list[_PullStep] = []
            groups = self._groups(pending)
            for first in range(0, len(groups), PULL_BATCH):
                chunk, writes = [], []
                for group in groups[first:first + PULL_BATCH]:
                    write = (self._cut_write(report, group) if len(group) > 1
                             or self._writes_cut(group[0])
                             else self._pull_write(report, group[0]))
                    if write is not None:
                        chunk.append(group)
                        writes.append(write)
                    done = min(done + len(group), total)
                    self._tick("open", done, total)
                if not writes:
                    continue
                applied = self.store.pull_batch(self.user.login, self.target.name, writes)
                for group, ok in zip(chunk, applied, strict=True):
                    if ok:
                        for step in group:
                            if step.decision.action in (Action.CREATE, Action.UPDATE,
                                                        Action.DELETE):
                                self._record_pull(report, step)
                    else:
                        again.extend(group)
            if not again:
                return
            for step in again:
                self._decide_pull(step, self._reread(step))
            pending = again
        for step in pending:
            report.skipped.append((self._uid(step), f"{self._label(step.remote.ics)}: changed "
                                                    "in Gestan again and again during the run"))

    def _reread(self, step: _PullStep) -> StoredObject | None:
        uid = step.local.uid if step.local else (step.parsed.uid if step.parsed else "")
        fresh = self.store.objects_by_uid(self.user.id, [uid]).get(uid)
        if fresh is None and step.local is not None:
            fresh = self.store.objects_by_id(self.user.id, [step.local.id]).get(step.local.id)
        return fresh

    @staticmethod
    def _uid(step: _PullStep) -> str:
        if step.parsed:
            return step.parsed.uid
        return step.local.uid if step.local else step.remote.remote_id

    def _pull_write(self, report: RunReport, step: _PullStep) -> PullWrite | None:
        """What to write into Gestan for one step (links alone are written here)."""
        remote, local, link = step.remote, step.local, step.link
        action = step.decision.action
        if action is Action.NOTHING:
            return None
        if self.options.dry_run:
            if action in (Action.CREATE, Action.UPDATE, Action.DELETE):
                report.planned.append(f"{action} in gestan: {self._uid(step)} "
                                      f"({self._label(remote.ics, local and local.ics)})")
                report.count(GESTAN, action.value)
            return None
        target = self.target.name
        remote_key = self._key(remote.ics)
        parts = self._parts(remote.ics)
        if action in (Action.CREATE, Action.UPDATE):
            text, local_hash = remote.ics, None
            if step.merged is not None:
                # Gestan keeps its own occurrences; it now differs from the remote, so the
                # link says "agreed on the remote's version" and the next close sends them.
                text, local_hash = step.merged, remote_key
            if local is not None and local.ics:  # keep the alarms, CONTACT... Gestan had
                text = keep_local_extras(text, local.ics, self.carries)
            # what Gestan stores means what ``text`` means: its key, without reading back
            local_hash = local_hash or self._key(text)
            return PullWrite(self._parse(text), Link(
                0, remote.remote_id, remote.etag, local_hash, remote_key, parts,
                remote.pieces), None if local is None or local.deleted else local)
        if action is Action.DELETE:
            return PullWrite(None, link, local)
        if action is Action.LINK:
            self.store.save_link(self.user.id, target, self._agreed(step))
        elif action is Action.FORGET and link is not None:
            self.store.forget_link(self.user.id, target, link.object_id, link.part)
        return None

    def _agreed(self, step: _PullStep) -> Link:
        """The link of a step whose two sides agree (adopted: no agreed version, the next
        close writes Gestan's whole)."""
        remote = step.remote
        return Link(step.local.id, remote.remote_id, remote.etag,
                    UNFINISHED if step.adopt else self._key(self._local_part(
                        step.local, step.part)), self._key(remote.ics),
                    None if step.adopt else self._parts(remote.ics), remote.pieces, step.part)

    def _cut_write(self, report: RunReport, group: list[_PullStep]) -> PullWrite | None:
        """The remote changed a part of a series cut "this and following": Gestan takes the
        cut too, as Google and Outlook do when a user edits "this and following" there:
        the object keeps the first part, each later part becomes a series of its own (its
        UID the part's), every part from the side the decisions say, links moved along."""
        local = group[0].local
        if self.options.dry_run:
            for step in group:
                self._pull_write(report, step)
            return None
        parts = dict(self._cut(local))
        links = {link.part: link for link in self._object_links.get(local.id, [])}
        for step in group:
            action, remote = step.decision.action, step.remote
            if action in (Action.DELETE, Action.FORGET):
                parts.pop(step.part, None)
                links.pop(step.part, None)
            elif action is Action.LINK:
                links[step.part] = self._agreed(step)
            elif action in (Action.CREATE, Action.UPDATE):
                remote_key = self._key(remote.ics)
                text, local_hash = step.merged or remote.ics, None
                if step.merged is not None:
                    local_hash = remote_key
                if parts.get(step.part):
                    text = keep_local_extras(text, parts[step.part], self.carries)
                parts[step.part] = text
                links[step.part] = Link(0, remote.remote_id, remote.etag,
                                        local_hash or self._key(text), remote_key,
                                        self._parts(remote.ics), remote.pieces)

        def write(key: str, expected: StoredObject | None) -> PullWrite:
            text = with_uid(parts[key], part_uid(local.uid, key))
            link = links.get(key)
            return PullWrite(self._parse(text), link and dataclasses.replace(
                link, object_id=0, part=""), expected)

        followers = tuple(write(key, None) for key in sorted(parts) if key)
        if "" in parts:
            return dataclasses.replace(write("", local), cut=True, parts=followers)
        return PullWrite(None, None, local, cut=True, parts=followers)

    def _record_pull(self, report: RunReport, step: _PullStep) -> None:
        """A write of the open landed: count it, log it (a conflict with its loser)."""
        remote, local, decision = step.remote, step.local, step.decision
        uid, target = self._uid(step), self.target.name
        losing = local.ics if local is not None and decision.conflict else None
        if decision.action is Action.DELETE:
            self._record(report, "delete", GESTAN, uid, None, decision.conflict, local.ics,
                         target)
            return
        action = decision.action.value
        report.count(GESTAN, action)
        self._items.append(RunItem(action, GESTAN, uid,
                                   self._label(remote.ics, losing), "", None))
        if decision.conflict:
            self._conflict(report, GESTAN, uid, self._label(remote.ics), target, action, losing,
                           ", ".join(sorted(step.clashes)))

    # ------------------------------------------------------------------ close
    def push(self) -> RunReport:
        """Close: Gestan's changes since the last push go to the target (Gestan wins)."""
        return self._run("close", self._push)

    def _push(self, report: RunReport) -> None:
        target = self.target.name
        state = self._bind()
        upto = self.store.require_user(self.user.login).revision
        changed = self.store.changed_objects(self.user.id, state.pushed_revision, upto,
                                             self.window.start, self.window.end, target)
        if state.close_window_end is not None and state.close_window_end < self.window.end:
            seen = {o.id for o in changed}
            changed += [o for o in self.store.entering_objects(
                self.user.id, max(state.close_window_end, self.window.start),
                self.window.end, state.pushed_revision, target) if o.id not in seen]
        links = {(link.object_id, link.part): link
                 for link in self.store.sync_links(self.user.id, target)}
        self._note_parts(links.values())
        self._readings.update((o.ics, ParsedObject(o.uid, o.event)) for o in changed
                              if o.event is not None and o.ics)
        # the reports name deleted appointments: what they were, read in one query
        self._deleted_events = self.store.first_events(
            self.user.id, [o.id for o in changed if o.deleted])
        self._links = links
        self._units: list[_Unit] = []   # WriteOp.local_id: an index in it
        for obj in changed:
            try:
                self._units += self._units_of(obj)
            except CannotCut as exc:
                report.skipped.append((obj.uid, f"{self._label(obj.ics)}: {exc}"))
        self._merged_ids: set[int] = set()
        self._unsaved: list[Link] = []
        # after a close that did not finish, a create may have been made but not linked
        self._may_exist = not self.store.previous_close_finished(
            self.user.id, target, self._run_id or 0)
        # Deletions are counted before anything is read or written (the mass-delete guard);
        # then the whole close is decided and handed to the target in one call, so that it
        # batches across every object (a series' follow-ups included), not per slice.
        deletes = sum(1 for u in self._units if u.deleted and (u.obj.id, u.part) in links)
        self._check_mass_delete(deletes, len(links))
        self._written, self._total = 0, len(self._units)
        self._fetched = self._series_to_update(self._units, links)
        ops = [op for index, unit in enumerate(self._units)
               if (op := self._push_op(report, index, unit)) is not None]
        unfinished: list[WriteOp] = []
        if self.options.dry_run:
            for op in ops:
                report.planned.append(f"{op.kind} in {target}: {op.uid} ({self._op_label(op)})")
                report.count(target, op.kind.value)
        else:
            unfinished = self._write(report, ops)
        for op in unfinished:  # still refused after the last round: the next run tries again
            report.skipped.append((op.uid, f"{self._op_label(op)}: "
                                           "changed again in the target during the run"))
        if not unfinished and not self.options.dry_run:
            self.store.save_sync_state(self.user.id, target, pushed_revision=upto,
                                       close_window_end=self.window.end)

    def _note_parts(self, links) -> None:
        parts: dict[int, set[str]] = {}
        for link in links:
            parts.setdefault(link.object_id, set()).add(link.part)
        self._linked_parts = {k: frozenset(v) for k, v in parts.items()}

    def _units_of(self, obj: StoredObject) -> list[_Unit]:
        """What the target holds or will hold of an object changed in Gestan: the object,
        or its parts if it is a series changed "this and following" (a part it no longer
        has, or the parts of a deleted object, as deleted)."""
        linked = self._linked_parts.get(obj.id, frozenset())
        if obj.deleted or not obj.ics:
            return [_Unit(obj, p, part_uid(obj.uid, p), None) for p in sorted(linked or {""})]
        if not has_future(obj.ics) and linked <= {""}:
            return [_Unit(obj, "", obj.uid, obj.ics)]
        parts = {p.key: p for p in cut_series(obj.ics, self.user.timezone)}
        return [_Unit(obj, key, parts[key].uid if key in parts else part_uid(obj.uid, key),
                      parts[key].ics if key in parts else None)
                for key in sorted(set(parts) | linked)]

    def _op_label(self, op: WriteOp) -> str:
        return self._label(op.ics, object_id=self._units[op.local_id].obj.id)

    def _push_op(self, report: RunReport, index: int, unit: _Unit) -> WriteOp | None:
        """What to write for one object (or part) changed in Gestan (None: nothing)."""
        link = self._links.get((unit.obj.id, unit.part))
        source = ABSENT if unit.deleted else Present(self._key(unit.ics))
        state = LinkState(link.local_hash, link.remote_hash) if link else None
        decision = decide(source, UNKNOWN, state)
        op = self._op_for(report, index, unit, link, decision.action)
        if op is None and decision.action is Action.FORGET and link \
                and not self.options.dry_run:
            self.store.forget_link(self.user.id, self.target.name, unit.obj.id, unit.part)
        return op

    def _write(self, report: RunReport, ops: list[WriteOp]) -> list[WriteOp]:
        """Write ``ops``, and again those refused then decided again; what is still
        refused after the last round."""
        for _round in range(MAX_WRITE_ROUNDS):
            if not ops:
                break
            retry: list[WriteOp] = []
            try:
                self.target.write(ops, partial(self._on_write, report, retry))
            finally:  # what was written is recorded, even when the run stops here
                self._save_links()
            ops = retry
        return ops

    def _keep_link(self, link: Link) -> None:
        """Record a link after a write, 50 to a transaction (a crash before they are saved
        is safe: the next run's create finds the object, see Target)."""
        self._links[(link.object_id, link.part)] = link
        self._unsaved.append(link)

    def _save_links(self) -> None:
        """The links kept so far, and the audit log of the same writes: a run killed after
        this shows what it did (interrupted runs are counted from their logged items)."""
        if self._unsaved:
            self.store.save_links(self.user.id, self.target.name, self._unsaved)
            self._unsaved = []
        self._log_items()

    def _on_write(self, report: RunReport, retry: list[WriteOp],
                  result: WriteResult) -> None:
        self._written += 1
        self._tick("close", min(self._written, self._total), self._total)
        follow_up = self._after_write(report, result)
        if len(self._unsaved) >= LINKS_PER_TRANSACTION:  # after the write's audit item
            self._save_links()
        if follow_up is not None:
            retry.append(follow_up)

    def _op_for(self, report: RunReport, index: int, unit: _Unit, link: Link | None,
                action: Action) -> WriteOp | None:
        if action is Action.CREATE and link is None:
            return WriteOp(WriteKind.CREATE, unit.uid, unit.ics, local_id=index,
                           parsed=self._parse(unit.ics), may_exist=self._may_exist)
        if action is Action.UPDATE and link.parts and unit.obj.is_series \
                and not self.options.dry_run:
            return self._series_update(report, index, unit, link)
        if action in (Action.CREATE, Action.UPDATE):  # CREATE with a link: recreate it there
            return WriteOp(WriteKind.UPDATE, unit.uid, unit.ics, link.remote_id,
                           link.remote_etag, local_id=index, parsed=self._parse(unit.ics))
        if action is Action.DELETE:
            return WriteOp(WriteKind.DELETE, unit.uid, None, link.remote_id, link.remote_etag,
                           local_id=index)
        return None

    def _series_to_update(self, units: list[_Unit], links: dict[tuple[int, str], Link]
                          ) -> dict[str, RemoteObject | None]:
        """The remote versions of the series this close updates, read together before
        anything is decided (each series update starts from the remote's version)."""
        if self.options.dry_run:
            return {}
        wanted = [link.remote_id for u in units
                  if not u.deleted and u.obj.is_series
                  and (link := links.get((u.obj.id, u.part)))
                  and link.parts and self._key(u.ics) != link.local_hash]
        return self.target.fetch_many(wanted) if wanted else {}

    def _series_update(self, report: RunReport, index: int, unit: _Unit, link: Link
                       ) -> WriteOp:
        """A series changed in Gestan: read the remote's version first, so that what it
        changed in other occurrences stays, and only the occurrences that differ are
        written."""
        if link.remote_id in self._fetched:
            remote = self._fetched.pop(link.remote_id)
        else:
            remote = self.target.fetch(link.remote_id)
        if remote is None or remote.ics is None:  # deleted there: Gestan wins, made again
            return WriteOp(WriteKind.UPDATE, unit.uid, unit.ics, link.remote_id, None,
                           local_id=index)
        text = unit.ics
        if self._key(remote.ics) != link.remote_hash:
            decision, merged, clashes = self._per_occurrence(
                link.parts, unit.ics, remote.ics, Decision(Action.UPDATE, conflict=True))
            if merged is not None:
                text = merged
                self._merged_ids.add(index)
            if decision.conflict:
                self._conflict(report, self.target.name, unit.uid, self._label(remote.ics),
                               GESTAN, "update", remote.ics, ", ".join(sorted(clashes)))
        return WriteOp(WriteKind.UPDATE, unit.uid, text, remote.remote_id, remote.etag,
                       local_id=index, base=remote.ics, base_pieces=remote.pieces)

    def _forget(self, unit: _Unit) -> None:
        self.store.forget_link(self.user.id, self.target.name, unit.obj.id, unit.part)
        self._links.pop((unit.obj.id, unit.part), None)

    def _after_write(self, report: RunReport, result: WriteResult) -> WriteOp | None:
        """Record a write; a refused one is looked at again (re-read, decide, maybe retry)."""
        op, target = result.op, self.target.name
        unit = self._units[op.local_id]
        obj = unit.obj
        link = self._links.get((obj.id, unit.part))
        if result.error is None:
            if op.kind is WriteKind.DELETE:
                self._forget(unit)
            else:
                remote = result.remote
                local_key = self._key(unit.ics)
                remote_key, parts = self._key(remote.ics), self._parts(remote.ics)
                pieces = remote.pieces
                if op.local_id in self._merged_ids:
                    # the remote kept occurrences Gestan lacks: the next open must read
                    # them (its pieces are not "ours") and bring them
                    remote_key, parts, pieces = local_key, self._parts(unit.ics), frozenset()
                self._keep_link(Link(obj.id, remote.remote_id, remote.etag, local_key,
                                     remote_key, parts, pieces, unit.part))
            self._record(report, op.kind.value, target, op.uid, op.ics, False, None, GESTAN,
                         object_id=obj.id)
            return None
        if result.error is WriteError.REJECTED:
            report.skipped.append((op.uid, f"{self._label(op.ics, object_id=obj.id)}: "
                                           f"{result.message}"))
            return None
        # PRECONDITION (changed there), GONE (deleted there), EXISTS (an earlier run made it)
        remote_id = op.remote_id or (result.remote.remote_id if result.remote else None)
        remote = result.remote if result.error is WriteError.EXISTS else (
            self.target.fetch(remote_id) if remote_id else None)
        if op.kind is WriteKind.DELETE and (remote is None or remote.ics is None):
            self._forget(unit)
            return None
        dest = Present(self._key(remote.ics)) if remote and remote.ics else ABSENT
        source = ABSENT if unit.deleted else Present(self._key(unit.ics))
        ours = remote is not None and remote.foreign_uid == unit.uid and link is None
        state_ = LinkState(link.local_hash, link.remote_hash) if link else None
        decision = decide(source, dest, state_)
        if decision.action is Action.LINK:
            self._keep_link(Link(obj.id, remote.remote_id, remote.etag, self._key(unit.ics),
                                 self._key(remote.ics), self._parts(remote.ics),
                                 remote.pieces, unit.part))
            return None
        if remote is None or remote.ics is None:
            # Deleted there while changed here: Gestan wins, it is created again (the
            # target revives its stable id).
            if decision.conflict:
                report.conflicts.append(Conflict(op.uid, self._label(unit.ics), GESTAN,
                                                 "create", None))
            return WriteOp(WriteKind.CREATE, unit.uid, unit.ics, local_id=op.local_id)
        text = unit.ics
        if decision.conflict and not ours and link and link.parts and not unit.deleted:
            decision, merged, _ = self._per_occurrence(link.parts, unit.ics, remote.ics,
                                                       decision)
            if merged is not None:
                text = merged
                self._merged_ids.add(op.local_id)
        if decision.conflict and not ours:
            self._conflict(report, target, op.uid, self._label(remote.ics), GESTAN,
                           op.kind.value, remote.ics)
        kind = WriteKind.DELETE if unit.deleted else WriteKind.UPDATE
        update = kind is WriteKind.UPDATE
        return WriteOp(kind, unit.uid, text, remote.remote_id, remote.etag,
                       local_id=op.local_id, base=remote.ics if update else None,
                       base_pieces=remote.pieces if update else frozenset())
