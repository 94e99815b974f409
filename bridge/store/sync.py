"""The sync engine's tables: links (the status table), per-target state, the audit log.

SQL only; the engine in ``bridge.sync`` decides what to write.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.engine import Connection

from bridge.ical.model import EventData
from bridge.store.objects import _LISTING
from bridge.store.records import Action, StoredObject
from bridge.store.schema import (
    actions,
    calendar_objects,
    sync_links,
    sync_locks,
    sync_run_items,
    sync_runs,
    sync_state,
)


@dataclass(frozen=True)
class Link:
    object_id: int
    remote_id: str
    remote_etag: str | None
    local_hash: str
    remote_hash: str
    # {occurrence key: content key} of the agreed version of a series (None: decide whole)
    parts: dict[str, str] | None = None
    # versions of the remote's pieces (RemoteObject.pieces) as last seen or written
    pieces: frozenset[str] = frozenset()
    # "" the object; else the part of a series cut "this and following" (its key in
    # bridge.ical.future) that this remote object holds
    part: str = ""


@dataclass(frozen=True)
class SyncState:
    calendar_id: str | None = None
    remote_state: str | None = None
    pushed_revision: int = 0
    open_window_end: datetime | None = None
    close_window_end: datetime | None = None


@dataclass(frozen=True)
class RunRecord:
    id: int
    target: str
    direction: str
    dry_run: bool
    status: str
    message: str
    counts: dict
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class RunItem:
    change: str
    side: str
    uid: str
    summary: str
    detail: str
    losing_ics: str | None


# ---------------------------------------------------------------- state

def get_state(conn: Connection, user_id: int, target: str) -> SyncState:
    row = conn.execute(select(sync_state).where(
        sync_state.c.user_id == user_id, sync_state.c.target == target)).first()
    if row is None:
        return SyncState()
    return SyncState(row.calendar_id, row.remote_state, row.pushed_revision,
                     row.open_window_end, row.close_window_end)


def save_state(conn: Connection, user_id: int, target: str, now: datetime, **fields) -> None:
    """Update some of calendar_id / remote_state / pushed_revision / open_window_end /
    close_window_end (row created if need be)."""
    where = (sync_state.c.user_id == user_id, sync_state.c.target == target)
    if conn.execute(select(sync_state.c.user_id).where(*where)).first() is None:
        values = {"calendar_id": None, "remote_state": None, "pushed_revision": 0, **fields}
        conn.execute(insert(sync_state).values(user_id=user_id, target=target, updated_at=now,
                                               **values))
    else:
        conn.execute(update(sync_state).where(*where).values(updated_at=now, **fields))


def reset_state(conn: Connection, user_id: int, target: str) -> None:
    """Forget a target entirely (another calendar was chosen): links and state."""
    conn.execute(delete(sync_links).where(sync_links.c.user_id == user_id,
                                          sync_links.c.target == target))
    conn.execute(delete(sync_state).where(sync_state.c.user_id == user_id,
                                          sync_state.c.target == target))


# ---------------------------------------------------------------- lock

def take_lock(conn: Connection, user_id: int, holder: str, now: datetime,
              lease: timedelta, dead: Callable[[str], bool] | None = None) -> datetime | None:
    """Take the user's sync lock: None when taken, else the end of the other holder's
    lease (a lease past its end is taken over, and so is one whose holder ``dead`` says
    is provably gone: its process died)."""
    current = conn.execute(select(sync_locks).where(sync_locks.c.user_id == user_id)
                           .with_for_update()).first()
    if current is not None and current.expires_at > now and current.holder != holder \
            and not (dead is not None and dead(current.holder)):
        return current.expires_at
    conn.execute(delete(sync_locks).where(sync_locks.c.user_id == user_id))
    conn.execute(insert(sync_locks).values(user_id=user_id, holder=holder, started_at=now,
                                           expires_at=now + lease))
    return None


def force_unlock(conn: Connection, user_id: int) -> bool:
    """Drop the user's lock whoever holds it (``sync unlock``); False if there was none."""
    return conn.execute(delete(sync_locks).where(sync_locks.c.user_id == user_id)).rowcount > 0


def renew_lock(conn: Connection, user_id: int, holder: str, until: datetime) -> None:
    conn.execute(update(sync_locks).where(sync_locks.c.user_id == user_id,
                                          sync_locks.c.holder == holder)
                 .values(expires_at=until))


def release_lock(conn: Connection, user_id: int, holder: str) -> None:
    conn.execute(delete(sync_locks).where(sync_locks.c.user_id == user_id,
                                          sync_locks.c.holder == holder))


# ---------------------------------------------------------------- links

def _link(row) -> Link:
    return Link(row.object_id, row.remote_id, row.remote_etag, row.local_hash, row.remote_hash,
                json.loads(row.parts) if row.parts else None,
                frozenset(json.loads(row.remote_pieces)) if row.remote_pieces else frozenset(),
                row.part or "")


def links(conn: Connection, user_id: int, target: str) -> list[Link]:
    return [_link(r) for r in conn.execute(select(sync_links).where(
        sync_links.c.user_id == user_id, sync_links.c.target == target))]


def save_link(conn: Connection, user_id: int, target: str, link: Link, now: datetime) -> None:
    """Insert or replace the link of ``link.object_id``'s part (and of its remote id)."""
    save_links(conn, user_id, target, [link], now)


_DROP_LINK = delete(sync_links).where(
    sync_links.c.user_id == bindparam("u"), sync_links.c.target == bindparam("t"),
    or_(and_(sync_links.c.object_id == bindparam("o"), sync_links.c.part == bindparam("p")),
        sync_links.c.remote_id == bindparam("r")))
_ADD_LINK = insert(sync_links)


def save_links(conn: Connection, user_id: int, target: str, links: list[Link],
               now: datetime) -> None:
    """:func:`save_link` for many: two statements, each run over all of them."""
    if not links:
        return
    conn.execute(_DROP_LINK, [dict(u=user_id, t=target, o=link.object_id, p=link.part,
                                   r=link.remote_id) for link in links])
    conn.execute(_ADD_LINK, [dict(
        user_id=user_id, target=target, object_id=link.object_id, remote_id=link.remote_id,
        remote_etag=link.remote_etag, local_hash=link.local_hash,
        remote_hash=link.remote_hash,
        parts=json.dumps(link.parts, sort_keys=True) if link.parts else None,
        remote_pieces=json.dumps(sorted(link.pieces)) if link.pieces else None,
        part=link.part, updated_at=now) for link in links])


def forget_link(conn: Connection, user_id: int, target: str, object_id: int,
                part: str | None = None) -> None:
    """Drop the object's link of ``part`` (None: every link of the object)."""
    where = [sync_links.c.user_id == user_id, sync_links.c.target == target,
             sync_links.c.object_id == object_id]
    if part is not None:
        where.append(sync_links.c.part == part)
    conn.execute(delete(sync_links).where(*where))


# ---------------------------------------------------------------- local objects

def objects_by_id(conn: Connection, user_id: int, ids) -> dict[int, StoredObject]:
    """Objects (tombstones included, with their text) by id."""
    ids = list(set(ids))
    found: dict[int, StoredObject] = {}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(select(*_LISTING, calendar_objects.c.ics).where(
            calendar_objects.c.user_id == user_id,
            calendar_objects.c.id.in_(ids[chunk:chunk + 500])))
        found.update((r.id, StoredObject.from_row(r)) for r in rows)
    return found


def objects_by_uid(conn: Connection, user_id: int, uids) -> dict[str, StoredObject]:
    """Live objects by UID (with their text)."""
    uids = list(set(uids))
    found: dict[str, StoredObject] = {}
    for chunk in range(0, len(uids), 500):
        rows = conn.execute(select(*_LISTING, calendar_objects.c.ics).where(
            calendar_objects.c.user_id == user_id, ~calendar_objects.c.deleted,
            calendar_objects.c.uid.in_(uids[chunk:chunk + 500])))
        found.update((r.uid, StoredObject.from_row(r)) for r in rows)
    return found


def changed_objects(conn: Connection, user_id: int, since: int, upto: int,
                    start: datetime, end: datetime, target: str) -> list[StoredObject]:
    """Objects written in (since, upto] that may have an instance in [start, end), or that
    are linked on ``target`` wherever they now are (a linked appointment is followed out of
    the window), tombstones included (their last bounds are kept)."""
    linked = exists().where(sync_links.c.user_id == user_id, sync_links.c.target == target,
                            sync_links.c.object_id == calendar_objects.c.id)
    in_window = and_(calendar_objects.c.first_start < end,
                     or_(calendar_objects.c.last_end.is_(None),
                         calendar_objects.c.last_end > start))
    rows = conn.execute(select(*_LISTING, calendar_objects.c.ics).where(
        calendar_objects.c.user_id == user_id,
        calendar_objects.c.revision > since, calendar_objects.c.revision <= upto,
        or_(in_window, linked),
    ).order_by(calendar_objects.c.revision))
    return with_events(conn, [StoredObject.from_row(r) for r in rows])


def with_events(conn: Connection, found: list[StoredObject]) -> list[StoredObject]:
    """The objects, each live single appointment with its action's event attached."""
    ids = [o.id for o in found if not o.is_series and not o.deleted]
    events: dict[int, EventData] = {}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(select(actions).where(
            actions.c.object_id.in_(ids[chunk:chunk + 500]), ~actions.c.deleted,
            actions.c.recurrence_id.is_(None)))
        events.update((r.object_id, Action.from_row(r).event) for r in rows)
    return [dataclasses.replace(o, event=events[o.id]) if o.id in events else o
            for o in found]


def entering_objects(conn: Connection, user_id: int, start: datetime, end: datetime,
                     upto: int, target: str) -> list[StoredObject]:
    """Live objects not linked on ``target``, written at or before revision ``upto``, that
    start in [start, end): what entered the window as time passed (one index range)."""
    linked = exists().where(sync_links.c.user_id == user_id, sync_links.c.target == target,
                            sync_links.c.object_id == calendar_objects.c.id)
    rows = conn.execute(select(*_LISTING, calendar_objects.c.ics).where(
        calendar_objects.c.user_id == user_id, ~calendar_objects.c.deleted,
        calendar_objects.c.first_start >= start, calendar_objects.c.first_start < end,
        calendar_objects.c.revision <= upto, ~linked).order_by(calendar_objects.c.id))
    return [StoredObject.from_row(r) for r in rows]


def first_events(conn: Connection, user_id: int, object_ids) -> dict[int, EventData]:
    """The earliest action of each object, deleted ones included: what a deleted
    appointment was, for the run's report (its text is gone with it)."""
    ids = list(set(object_ids))
    found: dict[int, EventData] = {}
    for chunk in range(0, len(ids), 500):
        rows = conn.execute(select(actions).where(
            actions.c.user_id == user_id, actions.c.object_id.in_(ids[chunk:chunk + 500]))
            .order_by(actions.c.start_utc.desc()))
        for row in rows:
            found[row.object_id] = Action.from_row(row).event
    return found


# ---------------------------------------------------------------- audit log

def start_run(conn: Connection, user_id: int, target: str, direction: str, dry_run: bool,
              now: datetime) -> int:
    return conn.execute(insert(sync_runs).values(
        user_id=user_id, target=target, direction=direction, dry_run=dry_run,
        status="running", message="", counts="{}", started_at=now)).inserted_primary_key[0]


def add_items(conn: Connection, run_id: int, items: list[RunItem]) -> None:
    if items:
        conn.execute(insert(sync_run_items), [
            dict(run_id=run_id, change=i.change, side=i.side, uid=i.uid, summary=i.summary,
                 detail=i.detail, losing_ics=i.losing_ics) for i in items])


def interrupt_runs(conn: Connection, user_id: int, now: datetime) -> list[int]:
    """Mark the user's runs still "running" as "interrupted" (called with the user's lock
    held, so none of them is alive), their counts taken from the items they logged."""
    stale = list(conn.execute(select(sync_runs.c.id).where(
        sync_runs.c.user_id == user_id, sync_runs.c.status == "running")).scalars())
    for run_id in stale:
        counts: dict = {"gestan": {"created": 0, "updated": 0, "deleted": 0},
                        "remote": {"created": 0, "updated": 0, "deleted": 0},
                        "conflicts": 0, "skipped": 0, "requests": 0}
        for item in run_items(conn, run_id):
            if item.change == "conflict":
                counts["conflicts"] += 1
            elif item.change in ("create", "update", "delete"):
                side = counts["gestan" if item.side == "gestan" else "remote"]
                side[item.change + "d"] += 1
        finish_run(conn, run_id, "interrupted", "the process running it stopped (killed or "
                   "crashed) before the end; what it did is recorded", counts, now)
    return stale


def finish_run(conn: Connection, run_id: int, status: str, message: str, counts: dict,
               now: datetime) -> None:
    conn.execute(update(sync_runs).where(sync_runs.c.id == run_id).values(
        status=status, message=message, counts=json.dumps(counts, sort_keys=True),
        finished_at=now))


def previous_close_finished(conn: Connection, user_id: int, target: str, before: int) -> bool:
    """Whether the user's last close on ``target`` before run ``before`` finished (status
    ok), or there was none: then everything it created remotely is linked."""
    status = conn.execute(select(sync_runs.c.status).where(
        sync_runs.c.user_id == user_id, sync_runs.c.target == target,
        sync_runs.c.direction == "close", ~sync_runs.c.dry_run, sync_runs.c.id < before)
        .order_by(sync_runs.c.id.desc()).limit(1)).scalar_one_or_none()
    return status in (None, "ok")


def runs(conn: Connection, user_id: int, limit: int = 20) -> list[RunRecord]:
    rows = conn.execute(select(sync_runs).where(sync_runs.c.user_id == user_id)
                        .order_by(sync_runs.c.id.desc()).limit(limit))
    return [RunRecord(r.id, r.target, r.direction, bool(r.dry_run), r.status, r.message,
                      json.loads(r.counts or "{}"), r.started_at, r.finished_at) for r in rows]


def run_items(conn: Connection, run_id: int) -> list[RunItem]:
    rows = conn.execute(select(sync_run_items).where(sync_run_items.c.run_id == run_id)
                        .order_by(sync_run_items.c.id))
    return [RunItem(r.change, r.side, r.uid, r.summary, r.detail, r.losing_ics) for r in rows]
