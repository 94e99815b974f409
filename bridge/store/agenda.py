"""Gestan's agenda as Gestan sees it: actions of every type, listed, added and deleted.

Adding or deleting a Rendez-vous here also updates the calendar object phones read, in the
same transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from bridge.ical.model import EventData
from bridge.store import objects
from bridge.store.records import Action, ActionType, User
from bridge.store.schema import actions, calendar_objects


class ActionNotFound(LookupError):
    pass


def listing(conn: Connection, user: User, start: datetime | None = None,
            end: datetime | None = None, types: list[ActionType] | None = None) -> list[Action]:
    """Live actions overlapping [start, end), by start time (series occurrences one each)."""
    query = select(actions).where(actions.c.user_id == user.id, ~actions.c.deleted)
    if types:
        query = query.where(actions.c.type.in_([t.value for t in types]))
    if start is not None:
        query = query.where(actions.c.end_utc > start)
    if end is not None:
        query = query.where(actions.c.start_utc < end)
    rows = conn.execute(query.order_by(actions.c.start_utc, actions.c.id))
    return [Action.from_row(r) for r in rows]


def get(conn: Connection, user: User, action_id: int) -> Action:
    row = conn.execute(select(actions).where(
        actions.c.id == action_id, actions.c.user_id == user.id, ~actions.c.deleted)).first()
    if row is None:
        raise ActionNotFound(f"no action {action_id} in {user.login}'s agenda")
    return Action.from_row(row)


def add(conn: Connection, user: User, type_: ActionType, event: EventData, revision: int,
        now: datetime) -> Action:
    """Add an action; a Rendez-vous also gets its calendar object (a new UID and href)."""
    object_id = None
    if type_ is ActionType.APPOINTMENT:
        uid = f"{uuid.uuid4()}@gestan-bridge"
        object_id = conn.execute(calendar_objects.insert().values(
            user_id=user.id, href=f"{uid.split('@')[0]}.ics", uid=uid, ics="", etag="",
            is_series=False, revision=revision, deleted=False, updated_at=now,
        )).inserted_primary_key[0]
    action_id = objects.insert_action(conn, user.id, type_, event, revision, now, object_id)
    if object_id is not None:
        objects.rerender(conn, user, object_id, revision, force=True)
    return get(conn, user, action_id)


def delete(conn: Connection, user: User, action_id: int, revision: int, now: datetime) -> Action:
    """Delete one action. A single Rendez-vous takes its calendar object with it; a series
    occurrence becomes an EXDATE of its series."""
    action = get(conn, user, action_id)
    conn.execute(actions.update().where(actions.c.id == action_id)
                 .values(deleted=True, revision=revision, updated_at=now))
    if action.object_id is not None:
        owner = conn.execute(select(calendar_objects.c.href, calendar_objects.c.is_series)
                             .where(calendar_objects.c.id == action.object_id)).one()
        if owner.is_series:
            objects.rerender(conn, user, action.object_id, revision)
        else:
            objects.delete(conn, user, owner.href, revision, now)
    return action
