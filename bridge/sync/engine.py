"""The executor: one open (pull) or close (push) run of one user against one target.

It reads Gestan's side from the store and the remote's through a
:class:`bridge.targets.base.Target`, asks :func:`bridge.sync.decide.decide` what to do for
each object, and writes each outcome with its link in one transaction, so a run stopped at
any point leaves a state from which the next run finishes the job without duplicates.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from bridge.ical import parse_object
from bridge.ical.content import content_key
from bridge.ical.merge import keep_local_extras
from bridge.ical.model import InvalidObject, ParsedObject
from bridge.ical.series import span
from bridge.ical.timezones import now_utc
from bridge.store import Link, RunItem, Store, StoredObject, User
from bridge.store.objects import HORIZON
from bridge.sync.decide import ABSENT, UNKNOWN, Action, LinkState, Present, SideState, decide
from bridge.sync.report import Conflict, RunReport
from bridge.targets.base import (
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
Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class SyncOptions:
    dry_run: bool = False
    days_back: int | None = None  # None: the user's "sync_days_back" setting, else 0
    allow_mass_delete: bool = False
    mass_delete_ratio: float = 0.5
    mass_delete_min: int = 10


class SyncBusy(RuntimeError):
    """Another sync of this user is running."""


class MassDelete(RuntimeError):
    """The run would delete more than the threshold: nothing was applied."""


# Two syncs of one user never run at once, in any process (a lease in the database,
# renewed while the run goes on, so that a killed process blocks for minutes, not for ever).
LOCK_LEASE = timedelta(minutes=10)
LOCK_RENEW_SECONDS = 60.0


def _summary(ics: str | None) -> str:
    if not ics:
        return ""
    for line in ics.splitlines():
        if line.startswith("SUMMARY"):
            return line.split(":", 1)[1][:80].replace("\\,", ",")
    return ""


class SyncRun:
    def __init__(self, store: Store, login: str, target: Target,
                 options: SyncOptions | None = None, progress: Progress | None = None,
                 now: datetime | None = None) -> None:
        self.store = store
        self.user: User = store.require_user(login)
        self.target = target
        self.options = options or SyncOptions()
        self.progress = progress
        self.now = now = now or now_utc()
        days_back = self.options.days_back
        if days_back is None:
            days_back = int(self.user.settings.get("sync_days_back") or 0)
        self.window = Window(now - timedelta(days=days_back), now + HORIZON)
        self._items: list[RunItem] = []
        self._keys: dict[str, str] = {}
        self._holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renewed = 0.0

    # ------------------------------------------------------------------ helpers
    def _key(self, ics: str | None) -> str | None:
        """The content key of a text (memoised for the run: each side is read once)."""
        if not ics:
            return None
        key = self._keys.get(ics)
        if key is None:
            key = self._keys[ics] = content_key(ics, self.user.timezone)
        return key

    def _in_window(self, parsed: ParsedObject) -> bool:
        first, last = span(parsed, self.user.timezone)
        return first < self.window.end and (last is None or last > self.window.start)

    def _record(self, report: RunReport, change: str, side: str, uid: str, ics: str | None,
                conflict: bool, losing_ics: str | None, winner: str) -> None:
        report.count(side, change)
        summary = _summary(ics) or _summary(losing_ics)
        self._items.append(RunItem(change, side, uid, summary, "", None))
        if conflict:
            report.conflicts.append(Conflict(uid, summary, winner, change, losing_ics))
            self._items.append(RunItem("conflict", side, uid, summary,
                                       f"{winner} won ({change})", losing_ics))

    def _tick(self, phase: str, done: int, total: int) -> None:
        if time.monotonic() - self._renewed > LOCK_RENEW_SECONDS:
            self.store.renew_sync_lock(self.user.id, self._holder, LOCK_LEASE)
            self._renewed = time.monotonic()
        if self.progress:
            self.progress(phase, done, total)

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
        busy_until = self.store.take_sync_lock(self.user.id, self._holder, LOCK_LEASE)
        if busy_until is not None:
            raise SyncBusy(f"a sync of {self.user.login} is already running (if its process "
                           f"died, its lock ends at {busy_until:%H:%M:%S} UTC)")
        self._renewed = time.monotonic()
        try:
            report.run_id = self.store.start_run(self.user.id, self.target.name, direction,
                                                 self.options.dry_run)
            try:
                body(report)
            except (TargetStopped, MassDelete) as exc:
                report.status, report.message = "stopped", str(exc)
            except Exception as exc:
                report.status, report.message = "failed", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                report.requests = self.target.requests.count
                self.store.log_run_items(report.run_id, self._items)
                self.store.finish_run(report.run_id, report.status, report.message,
                                      report.counts())
        finally:
            self.store.release_sync_lock(self.user.id, self._holder)
        return report

    def _bind(self):
        """Find the remote calendar (cached); another calendar than last time starts afresh."""
        target = self.target.name
        state = self.store.sync_state(self.user.id, target)
        reference = self.target.bind(state.calendar_id)
        if reference != state.calendar_id and not self.options.dry_run:
            if state.calendar_id is not None:
                self.store.reset_sync(self.user.id, target)
            self.store.save_sync_state(self.user.id, target, calendar_id=reference)
            state = self.store.sync_state(self.user.id, target)
        return state

    # ------------------------------------------------------------------ open
    def pull(self) -> RunReport:
        """Open: the target's changes come into Gestan (the target wins)."""
        return self._run("open", self._pull)

    def _pull(self, report: RunReport) -> None:
        login, target = self.user.login, self.target.name
        if not self.options.dry_run:
            self.store.refresh_series(login, now=self.now)
        state = self._bind()
        listing = self.target.list_changes(state.remote_state, self.window)
        links = {link.remote_id: link for link in self.store.sync_links(self.user.id, target)}
        report.skipped.extend(listing.unreadable)
        remotes: list[tuple[RemoteObject, ParsedObject | None]] = []
        for remote in listing.objects:
            parsed = None
            if remote.ics is not None:
                try:
                    parsed = parse_object(remote.ics, self.user.timezone)
                except InvalidObject as exc:
                    report.skipped.append((remote.foreign_uid or remote.remote_id, exc.reason))
                    continue
                if remote.remote_id not in links and not self._in_window(parsed):
                    continue  # outside the window nothing is pulled
            remotes.append((remote, parsed))
        by_id = self.store.objects_by_id(
            self.user.id, [links[r.remote_id].object_id for r, _ in remotes
                           if r.remote_id in links])
        by_uid = self.store.objects_by_uid(
            self.user.id, [p.uid for r, p in remotes if p and r.remote_id not in links]
            + [r.foreign_uid for r, _ in remotes if r.foreign_uid and r.remote_id not in links])
        plan = []
        for remote, parsed in remotes:
            link = links.get(remote.remote_id)
            if link is not None:
                local = by_id.get(link.object_id)
            else:
                local = by_uid.get(remote.foreign_uid or "") or (
                    by_uid.get(parsed.uid) if parsed else None)
            dest: SideState
            if local is None:
                dest = ABSENT if link is not None else UNKNOWN
            else:
                dest = ABSENT if local.deleted else Present(self._key(local.ics))
            remote_key = self._key(remote.ics)
            source = Present(remote_key) if remote_key else ABSENT
            state_ = LinkState(link.remote_hash, link.local_hash) if link else None
            plan.append((remote, parsed, local, link, decide(source, dest, state_)))
        deletes = sum(1 for *_, d in plan if d.action is Action.DELETE)
        self._check_mass_delete(deletes, self.store.object_count(self.user.id))
        total = len(plan)
        for done, (remote, parsed, local, link, decision) in enumerate(plan, 1):
            self._apply_pull(report, remote, parsed, local, link, decision)
            self._tick("open", done, total)
        if not self.options.dry_run and listing.state is not None:
            self.store.save_sync_state(self.user.id, target, remote_state=listing.state)

    def _apply_pull(self, report: RunReport, remote: RemoteObject, parsed: ParsedObject | None,
                    local: StoredObject | None, link: Link | None, decision) -> None:
        action = decision.action
        if action is Action.NOTHING:
            return
        uid = parsed.uid if parsed else (local.uid if local else remote.remote_id)
        losing = local.ics if local is not None and decision.conflict else None
        if self.options.dry_run:
            if action in (Action.CREATE, Action.UPDATE, Action.DELETE):
                report.planned.append(f"{action} in gestan: {uid} "
                                      f"({_summary(remote.ics) or _summary(local and local.ics)})")
                report.count(GESTAN, action.value)
            return
        login, target = self.user.login, self.target.name
        remote_key = self._key(remote.ics)
        if action in (Action.CREATE, Action.UPDATE):
            if local is not None and local.ics:  # keep the alarms, CONTACT... Gestan had
                parsed = parse_object(keep_local_extras(remote.ics, local.ics),
                                      self.user.timezone)
            self.store.pull_object(login, target, parsed, Link(
                0, remote.remote_id, remote.etag, "", remote_key),
                key_of=self._key)
            self._record(report, action.value, GESTAN, uid, remote.ics, decision.conflict,
                         losing, target)
        elif action is Action.DELETE:
            self.store.pull_delete(login, target, local.id)
            self._record(report, "delete", GESTAN, uid, None, decision.conflict, local.ics,
                         target)
        elif action is Action.LINK:
            self.store.save_link(self.user.id, target, Link(
                local.id, remote.remote_id, remote.etag, self._key(local.ics), remote_key))
        elif action is Action.FORGET and link is not None:
            self.store.forget_link(self.user.id, target, link.object_id)

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
        links = {link.object_id: link for link in self.store.sync_links(self.user.id, target)}
        self._objects = {o.id: o for o in changed}
        self._links = links
        ops: list[WriteOp] = []
        for obj in changed:
            link = links.get(obj.id)
            source = ABSENT if obj.deleted else Present(self._key(obj.ics))
            state_ = LinkState(link.local_hash, link.remote_hash) if link else None
            decision = decide(source, UNKNOWN, state_)
            op = self._op_for(obj, link, decision.action)
            if op is not None:
                ops.append(op)
            elif decision.action is Action.FORGET and link and not self.options.dry_run:
                self.store.forget_link(self.user.id, target, obj.id)
        deletes = sum(1 for op in ops if op.kind is WriteKind.DELETE)
        self._check_mass_delete(deletes, len(links))
        if self.options.dry_run:
            for op in ops:
                report.planned.append(f"{op.kind} in {target}: {op.uid} "
                                      f"({_summary(self._objects[op.local_id].ics or op.ics)})")
                report.count(target, op.kind.value)
            return
        for _round in range(MAX_WRITE_ROUNDS):
            if not ops:
                break
            retry: list[WriteOp] = []
            self._written = 0
            self.target.write(ops, partial(self._on_write, report, retry, len(ops)))
            ops = retry
        for op in ops:  # still refused after the last round: the next run tries again
            report.skipped.append((op.uid, "changed again in the target during the run"))
        if not ops:
            self.store.save_sync_state(self.user.id, target, pushed_revision=upto)

    def _on_write(self, report: RunReport, retry: list[WriteOp], total: int,
                  result: WriteResult) -> None:
        self._written += 1
        self._tick("close", self._written, total)
        follow_up = self._after_write(report, result)
        if follow_up is not None:
            retry.append(follow_up)

    def _op_for(self, obj: StoredObject, link: Link | None, action: Action) -> WriteOp | None:
        if action is Action.CREATE and link is None:
            return WriteOp(WriteKind.CREATE, obj.uid, obj.ics, local_id=obj.id)
        if action in (Action.CREATE, Action.UPDATE):  # CREATE with a link: recreate it there
            return WriteOp(WriteKind.UPDATE, obj.uid, obj.ics, link.remote_id, link.remote_etag,
                           local_id=obj.id)
        if action is Action.DELETE:
            return WriteOp(WriteKind.DELETE, obj.uid, None, link.remote_id, link.remote_etag,
                           local_id=obj.id)
        return None

    def _after_write(self, report: RunReport, result: WriteResult) -> WriteOp | None:
        """Record a write; a refused one is looked at again (re-read, decide, maybe retry)."""
        op, target = result.op, self.target.name
        obj = self._objects[op.local_id]
        link = self._links.get(obj.id)
        if result.error is None:
            if op.kind is WriteKind.DELETE:
                self.store.forget_link(self.user.id, target, obj.id)
                self._links.pop(obj.id, None)
            else:
                remote = result.remote
                new = Link(obj.id, remote.remote_id, remote.etag, self._key(obj.ics),
                           self._key(remote.ics))
                self.store.save_link(self.user.id, target, new)
                self._links[obj.id] = new
            self._record(report, op.kind.value, target, op.uid, op.ics, False, None, GESTAN)
            return None
        if result.error is WriteError.REJECTED:
            report.skipped.append((op.uid, result.message))
            return None
        # PRECONDITION (changed there), GONE (deleted there), EXISTS (an earlier run made it)
        remote_id = op.remote_id or (result.remote.remote_id if result.remote else None)
        remote = result.remote if result.error is WriteError.EXISTS else (
            self.target.fetch(remote_id) if remote_id else None)
        if op.kind is WriteKind.DELETE and (remote is None or remote.ics is None):
            self.store.forget_link(self.user.id, target, obj.id)
            self._links.pop(obj.id, None)
            return None
        dest = Present(self._key(remote.ics)) if remote and remote.ics else ABSENT
        source = ABSENT if obj.deleted else Present(self._key(obj.ics))
        ours = remote is not None and remote.foreign_uid == obj.uid and link is None
        state_ = LinkState(link.local_hash, link.remote_hash) if link else None
        decision = decide(source, dest, state_)
        if decision.action is Action.LINK:
            new = Link(obj.id, remote.remote_id, remote.etag, self._key(obj.ics),
                       self._key(remote.ics))
            self.store.save_link(self.user.id, target, new)
            self._links[obj.id] = new
            return None
        if remote is None or remote.ics is None:
            # Deleted there while changed here: Gestan wins, it is created again (the
            # target revives its stable id).
            if decision.conflict:
                report.conflicts.append(Conflict(op.uid, _summary(obj.ics), GESTAN, "create",
                                                 None))
            return WriteOp(WriteKind.CREATE, obj.uid, obj.ics, local_id=obj.id)
        if decision.conflict and not ours:
            report.conflicts.append(Conflict(op.uid, _summary(obj.ics), GESTAN,
                                             op.kind.value, remote.ics))
            self._items.append(RunItem("conflict", target, op.uid, _summary(remote.ics),
                                       f"{GESTAN} won ({op.kind.value})", remote.ics))
        kind = WriteKind.DELETE if obj.deleted else WriteKind.UPDATE
        return WriteOp(kind, obj.uid, obj.ics, remote.remote_id, remote.etag, local_id=obj.id)
