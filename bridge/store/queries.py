"""The CalDAV query side of the store: time-range candidates with the occurrences the store
materialised at write time, sync pages, and moving an object to another href.

A time-range query never expands a series over the span its occurrences were materialised
for (``Candidate.covered``): they are rows of ``actions``, read through the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.engine import Connection

from bridge.ical.model import EventData
from bridge.store import objects
from bridge.store.objects import _LISTING
from bridge.store.records import Action, StoredObject, User
from bridge.store.schema import actions, calendar_objects

# Radicale reads DATE and floating values as UTC where the store reads them in the user's
# zone: the same occurrence is up to 14 hours apart in the two readings.
SLACK = timedelta(days=1)
_CHUNK = 500  # bound parameters per IN list (SQLite's limit is 999 on old builds)


def shifted(value: datetime, delta: timedelta) -> datetime:
    """``value + delta``, held within the years 1 to 9999 (a time range may ask for any)."""
    try:
        return value + delta
    except OverflowError:
        return datetime.max if delta > timedelta(0) else datetime.min


@dataclass(frozen=True)
class Candidate:
    """A live object that may have an instance in the asked range.

    ``occurrences``: its live actions near the range (a single appointment: its one action,
    read only when its bounds alone cannot decide). For a series, every occurrence that
    ends after ``covered[0]`` and starts before ``covered[1]`` is among its actions (they
    were made at its last write, and extended as time passed); ``covered`` is None for a
    single appointment, whose bounds are exact.
    """

    stored: StoredObject
    covered: tuple[datetime, datetime] | None
    occurrences: tuple[EventData, ...]
    exact: bool  # a single appointment wholly inside or outside the range in any reading


def range_candidates(conn: Connection, user_id: int, start: datetime | None,
                     end: datetime | None, every_action: bool = False) -> list[Candidate]:
    """Live objects whose instants may meet [start, end) (naive UTC, None: open);
    ``every_action``: a single appointment's action read even when its bounds decide."""
    lower = shifted(start, -SLACK) if start is not None else None
    upper = shifted(end, SLACK) if end is not None else None
    query = select(*_LISTING, calendar_objects.c.ics,
                   calendar_objects.c.materialised_until).where(
        calendar_objects.c.user_id == user_id, ~calendar_objects.c.deleted)
    if upper is not None:
        query = query.where(calendar_objects.c.first_start < upper)
    if lower is not None:
        query = query.where(or_(calendar_objects.c.last_end.is_(None),
                                calendar_objects.c.last_end > lower))
    rows = conn.execute(query.order_by(calendar_objects.c.id)).all()
    need = [r.id for r in rows if every_action or r.is_series or not _clear(r, start, end)]
    found: dict[int, list[EventData]] = {}
    for chunk in range(0, len(need), _CHUNK):
        part = select(actions).where(actions.c.object_id.in_(need[chunk:chunk + _CHUNK]),
                                     ~actions.c.deleted)
        if upper is not None:
            part = part.where(actions.c.start_utc < upper)
        if lower is not None:
            part = part.where(actions.c.end_utc > lower)
        for row in conn.execute(part.order_by(actions.c.start_utc)):
            found.setdefault(row.object_id, []).append(Action.from_row(row).event)
    result = []
    for row in rows:
        stored = StoredObject.from_row(row)
        covered = None
        if row.is_series:
            # occurrences ending before the last write were not made (Gestan lists no
            # past occurrences of a series it just received)
            covered = (row.updated_at, row.materialised_until or row.updated_at)
        result.append(Candidate(stored, covered, tuple(found.get(row.id, ())),
                                exact=not row.is_series and _clear(row, start, end)))
    return result


def _clear(row, start: datetime | None, end: datetime | None) -> bool:
    """Whether a single appointment is inside or outside [start, end) whichever way its
    DATE or floating values are read (its bounds are then the answer)."""
    first, last = row.first_start, row.last_end
    if first is None or last is None:
        return False
    outside = ((end is not None and first >= shifted(end, SLACK))
               or (start is not None and last <= shifted(start, -SLACK)))
    inside = ((end is None or first < shifted(end, -SLACK))
              and (start is None or last > shifted(start, SLACK)))
    return outside or inside


# ---------------------------------------------------------------- sync pages

def sync_page(conn: Connection, user_id: int, after: tuple[int, int | None],
              limit: int | None, live_only: bool) -> list[StoredObject]:
    """Objects changed after the checkpoint ``(revision, id)`` (id None: after the whole
    revision), in (revision, id) order, with their text; ``limit + 1`` at most, so the
    caller knows whether there are more. ``live_only``: no tombstones (a first sync lists
    what exists)."""
    revision, last_id = after
    later = calendar_objects.c.revision > revision
    if last_id is not None:
        later = or_(later, and_(calendar_objects.c.revision == revision,
                                calendar_objects.c.id > last_id))
    query = select(*_LISTING, calendar_objects.c.ics).where(
        calendar_objects.c.user_id == user_id, later)
    if live_only:
        query = query.where(~calendar_objects.c.deleted)
    query = query.order_by(calendar_objects.c.revision, calendar_objects.c.id)
    if limit is not None:
        query = query.limit(limit + 1)
    return [StoredObject.from_row(r) for r in conn.execute(query)]


# ---------------------------------------------------------------- moves

def rename(conn: Connection, user: User, href: str, to_href: str, revision: int,
           now: datetime) -> StoredObject:
    """Give the object at ``href`` the name ``to_href``: the same row (Gestan's actions and
    the sync links stay), and a tombstone at the old name so that phones see it go."""
    row = conn.execute(select(calendar_objects.c.id, calendar_objects.c.uid).where(
        calendar_objects.c.user_id == user.id, calendar_objects.c.href == href,
        ~calendar_objects.c.deleted)).first()
    if row is None:
        raise ValueError(f"no appointment at {href}")
    taken = conn.execute(select(calendar_objects.c.id, calendar_objects.c.deleted).where(
        calendar_objects.c.user_id == user.id, calendar_objects.c.href == to_href)).first()
    if taken is not None:
        if not taken.deleted:
            raise ValueError(f"{to_href} already holds another appointment")
        # the name is live again: its old tombstone has nothing left to tell
        conn.execute(update(actions).where(actions.c.object_id == taken.id)
                     .values(object_id=None))
        conn.execute(delete(calendar_objects).where(calendar_objects.c.id == taken.id))
    conn.execute(update(calendar_objects).where(calendar_objects.c.id == row.id).values(
        href=to_href, revision=revision, updated_at=now))
    conn.execute(insert(calendar_objects).values(
        user_id=user.id, href=href, uid=row.uid, ics=None, etag=None, is_series=False,
        revision=revision, deleted=True, updated_at=now))
    moved = objects.get(conn, user.id, to_href)
    assert moved is not None
    return moved

