"""The CalDAV view of a user's Rendez-vous: one calendar object per appointment or series.

Writes keep ``actions`` (what Gestan sees) and ``calendar_objects`` (what phones see) in
step inside the caller's transaction; reads never parse iCalendar, they serve stored text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from bridge.ical import series as ical_series
from bridge.ical.model import EventData, ParsedObject
from bridge.ical.parse import event_from_component, override_from_component, series_kind
from bridge.ical.render import etag_of, render_object
from bridge.ical.timezones import now_utc, rid_instant, rid_key
from bridge.store.records import Action, ActionType, StoredObject, User, event_columns
from bridge.store.schema import actions, calendar_objects

# Series occurrences exist as actions up to this far ahead (Gestan: "au-delà d'un an").
HORIZON = timedelta(days=365)
# Refresh a series' occurrences once its horizon is this much behind.
REFRESH_SLACK = timedelta(days=1)

_LISTING = [calendar_objects.c[name] for name in (
    "id", "user_id", "href", "uid", "etag", "first_start", "last_end", "is_series",
    "revision", "deleted", "updated_at")]


class UidConflict(ValueError):
    """Another live object of the user already has this UID."""


@dataclass(frozen=True)
class Precondition:
    """A client's conditions on writing one object (RFC 7232), as Radicale reads them.

    Checked inside the write's transaction, once the user's revision row is locked: two
    writers of one object, even in two server processes, cannot both pass ``If-Match``."""

    if_match: str = ""           # an etag, "*" (any existing object) or "" (no condition)
    if_none_match: bool = False  # ``If-None-Match: *``: the object must not exist yet
    strict: bool = False         # ``[storage] strict_preconditions``: replacing needs If-Match

    def check(self, existing: StoredObject | None) -> None:
        if existing is None:
            if self.if_match:
                raise PreconditionFailed("the object does not exist (If-Match)")
            return
        if self.if_none_match:
            raise PreconditionFailed("the object already exists (If-None-Match)")
        if not self.if_match and self.strict:
            raise PreconditionFailed("replacing an object needs If-Match")
        if self.if_match not in ("", "*", existing.etag):
            raise PreconditionFailed("the object has changed (If-Match)")


class PreconditionFailed(RuntimeError):
    """A write's :class:`Precondition` does not hold: nothing was written (a 412)."""


class ObjectChanged(RuntimeError):
    """A conditional write found the object changed since it was read (a phone wrote it
    meanwhile): nothing was written; read it again and decide again."""


def require_unchanged(conn: Connection, user_id: int, uid: str,
                      expected: StoredObject | None) -> None:
    """Compare-and-set guard, called once the user's revision row is locked: the object
    is still the revision ``expected`` was read at (None: still no live object of ``uid``).
    """
    if expected is None:
        if has_uid(conn, user_id, uid):
            raise ObjectChanged(uid)
        return
    current = conn.execute(select(calendar_objects.c.revision).where(
        calendar_objects.c.id == expected.id)).scalar_one_or_none()
    if current != expected.revision:
        raise ObjectChanged(uid)


# One statement each, values passed as parameters: built once (building and keying a
# statement cost more than running it), compiled once.
_INSERT_OBJECT = insert(calendar_objects)
_INSERT_ACTION = insert(actions)
_OBJECT_AT = select(calendar_objects).where(calendar_objects.c.user_id == bindparam("b_user"),
                                            calendar_objects.c.href == bindparam("b_href"))
_UID_ELSEWHERE = select(calendar_objects.c.href).where(
    calendar_objects.c.user_id == bindparam("b_user"),
    calendar_objects.c.uid == bindparam("b_uid"), ~calendar_objects.c.deleted,
    calendar_objects.c.href != bindparam("b_href"))
_LIVE_AT = {with_ics: select(*_LISTING, *([calendar_objects.c.ics] if with_ics else [])).where(
    calendar_objects.c.user_id == bindparam("b_user"),
    calendar_objects.c.href == bindparam("b_href"), ~calendar_objects.c.deleted)
    for with_ics in (False, True)}
_UPDATE_OBJECT = update(calendar_objects).where(calendar_objects.c.id == bindparam("b_id"))
_UPDATE_ACTION = update(actions).where(actions.c.id == bindparam("b_id"))
_ACTIONS_OF = select(actions).where(actions.c.object_id == bindparam("b_object")).order_by(
    actions.c.start_utc, actions.c.id)


# ---------------------------------------------------------------- reads

def get(conn: Connection, user_id: int, href: str, with_ics: bool = True) -> StoredObject | None:
    row = conn.execute(_LIVE_AT[with_ics], {"b_user": user_id, "b_href": href}).first()
    return StoredObject.from_row(row) if row else None


def get_many(conn: Connection, user_id: int, hrefs: Iterable[str]) -> list[StoredObject]:
    hrefs = list(dict.fromkeys(hrefs))
    found: list[StoredObject] = []
    for chunk in range(0, len(hrefs), 500):  # stay under SQLite's bound-parameter limit
        rows = conn.execute(select(*_LISTING, calendar_objects.c.ics).where(
            calendar_objects.c.user_id == user_id, ~calendar_objects.c.deleted,
            calendar_objects.c.href.in_(hrefs[chunk:chunk + 500])))
        found.extend(StoredObject.from_row(r) for r in rows)
    return found


def listing(conn: Connection, user_id: int, with_ics: bool = False,
            start: datetime | None = None, end: datetime | None = None) -> list[StoredObject]:
    """Live objects, optionally only those that may have an instance in [start, end)."""
    columns = [*_LISTING, calendar_objects.c.ics] if with_ics else _LISTING
    query = select(*columns).where(calendar_objects.c.user_id == user_id,
                                   ~calendar_objects.c.deleted)
    if end is not None:
        query = query.where(calendar_objects.c.first_start < end)
    if start is not None:
        query = query.where(or_(calendar_objects.c.last_end.is_(None),
                                calendar_objects.c.last_end > start))
    return [StoredObject.from_row(r) for r in conn.execute(query.order_by(calendar_objects.c.id))]


def ics_of(conn: Connection, object_id: int) -> str | None:
    return conn.execute(select(calendar_objects.c.ics)
                        .where(calendar_objects.c.id == object_id)).scalar_one_or_none()


def count(conn: Connection, user_id: int) -> int:
    return conn.execute(select(func.count()).select_from(calendar_objects).where(
        calendar_objects.c.user_id == user_id, ~calendar_objects.c.deleted)).scalar_one()


def last_modified(conn: Connection, user_id: int) -> datetime | None:
    """When the calendar last changed: the newest row by revision, tombstones included (a
    deletion changes the collection too); one index probe, not a scan."""
    return conn.execute(select(calendar_objects.c.updated_at).where(
        calendar_objects.c.user_id == user_id).order_by(calendar_objects.c.revision.desc())
        .limit(1)).scalar_one_or_none()


def has_uid(conn: Connection, user_id: int, uid: str) -> bool:
    return conn.execute(select(calendar_objects.c.id).where(
        calendar_objects.c.user_id == user_id, calendar_objects.c.uid == uid,
        ~calendar_objects.c.deleted)).first() is not None


_DTSTAMP_LINE = re.compile(r"^DTSTAMP[;:][^\r\n]*\r?\n", re.MULTILINE)


def observed(conn: Connection, object_id: int) -> tuple:
    """What phones and Gestan see of an object: its served text (DTSTAMP, the time of the
    last write, aside) and its live actions' contents. Two equal readings: nothing to send."""
    ics = conn.execute(select(calendar_objects.c.ics).where(
        calendar_objects.c.id == object_id)).scalar_one()
    seen = sorted((a.recurrence_id or "", a.event.content()) for a in
                  _object_actions(conn, object_id) if not a.deleted)
    return _DTSTAMP_LINE.sub("", ics or ""), seen


def _object_actions(conn: Connection, object_id: int) -> list[Action]:
    return [Action.from_row(r) for r in conn.execute(_ACTIONS_OF, {"b_object": object_id})]


# ---------------------------------------------------------------- writes

def put(conn: Connection, user: User, href: str, parsed: ParsedObject, revision: int,
        now: datetime | None = None) -> StoredObject:
    """Create or replace the object at ``href`` (a phone's PUT, an import, a pull)."""
    return write(conn, user, href, parsed, revision, now)[0]


def write(conn: Connection, user: User, href: str, parsed: ParsedObject, revision: int,
          now: datetime | None = None, precondition: Precondition | None = None
          ) -> tuple[StoredObject, bool]:
    """:func:`put` if ``precondition`` holds (else :class:`PreconditionFailed`, nothing
    written): the object, and whether it is new."""
    now = now or now_utc()
    existing = conn.execute(_OBJECT_AT, {"b_user": user.id, "b_href": href}).first()
    live = existing if existing is not None and not existing.deleted else None
    if precondition is not None:
        precondition.check(StoredObject.from_row(live) if live is not None else None)
    if live is not None and live.uid != parsed.uid:
        raise UidConflict(f"{href} holds UID {live.uid!r}, not {parsed.uid!r}")
    clash = conn.execute(_UID_ELSEWHERE, {"b_user": user.id, "b_uid": parsed.uid,
                                          "b_href": href}).first()
    if clash:
        raise UidConflict(f"UID {parsed.uid!r} is already used by {clash.href}")
    values = dict(uid=parsed.uid, is_series=parsed.is_series, series_ics=parsed.series_ics,
                  revision=revision, deleted=False, updated_at=now, ics="", etag="",
                  materialised_until=None)
    if existing is None and not parsed.is_series:
        return _insert_single(conn, user, href, parsed, values, revision, now), True
    if existing is None:
        object_id = conn.execute(_INSERT_OBJECT, dict(
            user_id=user.id, href=href, **values)).inserted_primary_key[0]
    elif not parsed.is_series:  # rendered and written at once, as a new one is
        _put_single(conn, user, existing.id, parsed.master, revision, now)
        stored = _rendered_single(user, existing.id, href, parsed, revision, now)
        conn.execute(_UPDATE_OBJECT, {"b_id": existing.id, **values, "ics": stored.ics,
                                      "etag": stored.etag, "first_start": stored.first_start,
                                      "last_end": stored.last_end})
        return stored, live is None
    else:
        object_id = existing.id
        conn.execute(_UPDATE_OBJECT, {"b_id": object_id, **values})
    _materialise(conn, user, object_id, parsed.series_ics, revision, now, replace=True)
    return rerender(conn, user, object_id, revision, force=True), live is None


def _insert_single(conn: Connection, user: User, href: str, parsed: ParsedObject,
                   values: dict, revision: int, now: datetime) -> StoredObject:
    """A new single appointment: rendered before it is stored, two INSERTs (the first open
    of a calendar makes thousands of these)."""
    stored = _rendered_single(user, 0, href, parsed, revision, now)
    object_id = conn.execute(_INSERT_OBJECT, {
        **values, "user_id": user.id, "href": href, "ics": stored.ics, "etag": stored.etag,
        "first_start": stored.first_start, "last_end": stored.last_end}).inserted_primary_key[0]
    insert_action(conn, user.id, ActionType.APPOINTMENT, parsed.master, revision, now,
                  object_id)
    return dataclasses.replace(stored, id=object_id)


def _rendered_single(user: User, object_id: int, href: str, parsed: ParsedObject,
                     revision: int, now: datetime) -> StoredObject:
    """A single appointment as :func:`rerender` makes it from its action, without reading
    the action back."""
    event = parsed.master
    ics = render_object(parsed.uid, event, default_tz=user.timezone, dtstamp=now)
    first, last = single_bounds(event)
    return StoredObject(object_id, user.id, href, parsed.uid, ics, etag_of(ics), first, last,
                        False, revision, False, now)


def single_bounds(event: EventData) -> tuple[datetime, datetime]:
    """The instants a single appointment covers (a zero-length one still matches the
    instant it is at)."""
    if event.start == event.end:
        return event.start, event.end + timedelta(seconds=1)
    return event.start, event.end


def _put_single(conn: Connection, user: User, object_id: int, event: EventData,
                revision: int, now: datetime) -> None:
    """The object's one action is updated in place (Gestan keeps its action id)."""
    current = [a for a in _object_actions(conn, object_id) if not a.deleted]
    keep = next((a for a in current if a.recurrence_id is None), None)
    for action in current:
        if action is not keep:  # it was a series before: its occurrences go
            _tombstone_action(conn, action.id, revision, now)
    if keep:
        conn.execute(_UPDATE_ACTION, {"b_id": keep.id, **event_columns(event),
                                      "revision": revision, "updated_at": now})
    else:
        insert_action(conn, user.id, ActionType.APPOINTMENT, event, revision, now, object_id)


def insert_action(conn: Connection, user_id: int, type_: ActionType, event: EventData,
                  revision: int, now: datetime, object_id: int | None = None) -> int:
    return conn.execute(_INSERT_ACTION, dict(
        user_id=user_id, type=type_.value, object_id=object_id, **event_columns(event),
        revision=revision, deleted=False, created_at=now, updated_at=now,
    )).inserted_primary_key[0]


def _tombstone_action(conn: Connection, action_id: int, revision: int, now: datetime) -> None:
    conn.execute(update(actions).where(actions.c.id == action_id)
                 .values(deleted=True, revision=revision, updated_at=now))


def delete(conn: Connection, user: User, href: str, revision: int,
           now: datetime | None = None) -> bool:
    """Delete the object and its actions, leaving tombstones; False if there was none."""
    now = now or now_utc()
    row = conn.execute(select(calendar_objects.c.id).where(
        calendar_objects.c.user_id == user.id, calendar_objects.c.href == href,
        ~calendar_objects.c.deleted)).first()
    if row is None:
        return False
    conn.execute(update(actions).where(actions.c.object_id == row.id, ~actions.c.deleted)
                 .values(deleted=True, revision=revision, updated_at=now))
    conn.execute(update(calendar_objects).where(calendar_objects.c.id == row.id).values(
        deleted=True, ics=None, etag=None, series_ics=None, revision=revision, updated_at=now))
    return True


def rerender(conn: Connection, user: User, object_id: int, revision: int,
             force: bool = False) -> StoredObject:
    """Render the object from its actions; store it (and take ``revision``) if it changed."""
    row = conn.execute(select(calendar_objects).where(calendar_objects.c.id == object_id)).one()
    object_actions = _object_actions(conn, object_id)
    live = [a for a in object_actions if not a.deleted]
    if row.is_series:
        first, last = ical_series.bounds(row.series_ics, user.timezone)
        first = min([first, *(a.event.start for a in live)])
        if last is not None:
            last = max([last, *(a.event.end for a in live)])
        ics = _render_series(row, user, object_actions, open_ended=last is None)
    else:
        action = live[0]
        ics = render_object(row.uid, action.event, default_tz=user.timezone,
                            dtstamp=action.updated_at)
        first, last = single_bounds(action.event)
    if ics != row.ics or force:
        etag = etag_of(ics)
        conn.execute(update(calendar_objects).where(calendar_objects.c.id == object_id).values(
            ics=ics, etag=etag, first_start=first, last_end=last,
            revision=revision, deleted=False))
        return StoredObject(object_id, row.user_id, row.href, row.uid, ics, etag, first,
                            last, bool(row.is_series), revision, False, row.updated_at)
    return StoredObject.from_row(row)


def _render_series(row, user: User, object_actions: list[Action], open_ended: bool) -> str:
    """Master + overrides rebuilt from the actions (DESIGN.md, "Series").

    An occurrence that differs from what the series as received generates becomes an
    override; one deleted in Gestan becomes an EXDATE; the overrides received are served as
    they came unless Gestan changed or deleted their occurrence (those never materialised,
    past or beyond the horizon, included). A RANGE=THISANDFUTURE override stays one, even
    when its own occurrence is deleted (the later ones keep its change).
    """
    tz = user.timezone
    source = ical_series.calendar_of(row.series_ics)
    events = [c for c in source.subcomponents if c.name == "VEVENT"]
    master_component = next(c for c in events if "RECURRENCE-ID" not in c)
    master = event_from_component(master_component, tz, keep_recurrence=True)
    kind = series_kind(master_component)
    live = {a.recurrence_id: a for a in object_actions if not a.deleted and a.recurrence_id}
    deleted = _deleted_here(row.series_ics, {
        a.recurrence_id for a in object_actions if a.deleted and a.recurrence_id} - set(live),
        tz)
    received: dict[str, EventData] = {}
    future: set[str] = set()
    for component in events:
        if "RECURRENCE-ID" in component:
            event = override_from_component(component, kind, tz)
            received[event.recurrence_id] = event
            if str(component["RECURRENCE-ID"].params.get("RANGE", "")).upper() == \
                    "THISANDFUTURE":
                future.add(event.recurrence_id)
    overrides = {key: event for key, event in received.items()
                 if key not in live and (key not in deleted or key in future)}
    if live:
        starts = [a.event.start for a in live.values()]
        expected = {e.recurrence_id: e for e in ical_series.expand(
            row.series_ics, min(starts) - timedelta(days=1), max(starts) + timedelta(days=2),
            tz)}
        for key, action in live.items():
            wanted = expected.get(key)
            if wanted is None or wanted.content() != action.event.content():
                overrides[key] = action.event
            elif key in received:
                overrides[key] = received[key]
    own_exdates = _exdate_keys(master_component, tz)
    return render_object(row.uid, master, overrides.values(), default_tz=tz,
                         dtstamp=row.updated_at, exdates=deleted - own_exdates,
                         open_ended=open_ended, this_and_future=future)


def _deleted_here(series_ics: str, keys: set[str], tz: str) -> set[str]:
    """The deleted occurrences the series still makes: deleted in Gestan. The others went
    with an earlier version of the series (a phone moved it): no EXDATE names them."""
    if not keys:
        return keys
    instants = [rid_instant(key, tz) for key in keys]
    made = {e.recurrence_id for e in ical_series.expand(
        series_ics, min(instants) - timedelta(days=1), max(instants) + timedelta(days=2), tz,
        with_overrides=False)}
    return keys & made


def _exdate_keys(component, default_tz: str) -> set[str]:
    values = component.get("EXDATE")
    if values is None:
        return set()
    keys = set()
    for prop in values if isinstance(values, list) else [values]:
        for item in prop.dts:
            keys.add(rid_key(item.dt, default_tz))
    return keys


# ---------------------------------------------------------------- series

def _materialise(conn: Connection, user: User, object_id: int, series_ics: str,
                 revision: int, now: datetime, replace: bool) -> bool:
    """Make the series' occurrences up to ``now + HORIZON`` exist as actions.

    Unchanged occurrences keep their action ids; with ``replace`` (a new version of the
    series) occurrences it no longer has are deleted. Occurrences that ended before now are
    not created, and those already materialised are never deleted for being past.
    Returns whether any action changed.
    """
    horizon = now + HORIZON
    known = {a.recurrence_id: a for a in _object_actions(conn, object_id) if a.recurrence_id}
    earliest = min([now, *(a.event.start for a in known.values() if not a.deleted)])
    wanted = {e.recurrence_id: e for e in ical_series.expand(
        series_ics, earliest, horizon, user.timezone)}
    changed = False
    for key, event in wanted.items():
        action = known.get(key)
        if action is None:
            if event.end > now:
                insert_action(conn, user.id, ActionType.APPOINTMENT, event, revision, now,
                              object_id)
                changed = True
        elif replace and (action.deleted or action.event.content() != event.content()):
            conn.execute(update(actions).where(actions.c.id == action.id).values(
                **event_columns(event), deleted=False, revision=revision, updated_at=now))
            changed = True
    if replace:
        for key, action in known.items():
            if key not in wanted and not action.deleted:
                _tombstone_action(conn, action.id, revision, now)
                changed = True
    # a new version without the single-event action it may have had before
    if replace:
        for action in _object_actions(conn, object_id):
            if action.recurrence_id is None and not action.deleted:
                _tombstone_action(conn, action.id, revision, now)
                changed = True
    conn.execute(update(calendar_objects).where(calendar_objects.c.id == object_id)
                 .values(materialised_until=horizon))
    return changed


def series_due(conn: Connection, user_id: int, now: datetime) -> list[int]:
    """Series whose occurrences stop before the horizon: time passed since they were made."""
    return list(conn.execute(select(calendar_objects.c.id).where(
        calendar_objects.c.user_id == user_id, calendar_objects.c.is_series,
        ~calendar_objects.c.deleted,
        or_(calendar_objects.c.materialised_until.is_(None),
            calendar_objects.c.materialised_until < now + HORIZON - REFRESH_SLACK),
        or_(calendar_objects.c.last_end.is_(None), calendar_objects.c.last_end > now),
    )).scalars())


def extend_series(conn: Connection, user: User, object_id: int, revision: int,
                  now: datetime) -> bool:
    """Create the occurrences that entered the horizon, asking no remote for anything."""
    series_ics = conn.execute(select(calendar_objects.c.series_ics).where(
        calendar_objects.c.id == object_id)).scalar_one()
    return _materialise(conn, user, object_id, series_ics, revision, now, replace=False)



def objects_by_id_live(conn: Connection, user_id: int, object_id: int) -> StoredObject | None:
    row = conn.execute(select(*_LISTING).where(
        calendar_objects.c.user_id == user_id, calendar_objects.c.id == object_id,
        ~calendar_objects.c.deleted)).first()
    return StoredObject.from_row(row) if row else None


def listing_by_uid(conn: Connection, user_id: int, uid: str) -> StoredObject | None:
    row = conn.execute(select(*_LISTING).where(
        calendar_objects.c.user_id == user_id, calendar_objects.c.uid == uid,
        ~calendar_objects.c.deleted)).first()
    return StoredObject.from_row(row) if row else None
