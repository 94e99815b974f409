"""Rows handed out by the store: frozen dataclasses, usable after the transaction ended."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

from bridge.action_types import ActionType
from bridge.ical.model import EventData

__all__ = ["Action", "ActionType", "StoredObject", "User", "event_columns"]


@dataclass(frozen=True)
class User:
    id: int
    login: str
    name: str
    email: str
    timezone: str
    is_admin: bool
    settings: dict = field(default_factory=dict)
    calendar_props: dict = field(default_factory=dict)
    revision: int = 0
    password_hash: str = field(default="", repr=False)

    @classmethod
    def from_row(cls, row) -> User:
        return cls(id=row.id, login=row.login, name=row.name, email=row.email,
                   timezone=row.timezone, is_admin=bool(row.is_admin),
                   settings=json.loads(row.settings or "{}"),
                   calendar_props=json.loads(row.calendar_props or "{}"),
                   revision=row.revision, password_hash=row.password_hash)


@dataclass(frozen=True)
class Action:
    """One Gestan agenda entry; ``event`` holds its time and texts as the mapping sees them."""

    id: int
    user_id: int
    type: ActionType
    event: EventData
    object_id: int | None
    revision: int
    deleted: bool
    updated_at: datetime

    @property
    def recurrence_id(self) -> str | None:
        return self.event.recurrence_id

    @classmethod
    def from_row(cls, row) -> Action:
        event = EventData(
            start=row.start_utc, end=row.end_utc, tzid=row.tzid, all_day=bool(row.all_day),
            subject=row.subject, notes=row.notes, location=row.location, contact=row.contact,
            status=row.status, extra_ics=row.extra_ics, recurrence_id=row.recurrence_id)
        return cls(id=row.id, user_id=row.user_id, type=ActionType(row.type), event=event,
                   object_id=row.object_id, revision=row.revision, deleted=bool(row.deleted),
                   updated_at=row.updated_at)


@dataclass(frozen=True)
class StoredObject:
    """A CalDAV object of a user's Rendez-vous calendar, as served (``ics`` None: deleted)."""

    id: int
    user_id: int
    href: str
    uid: str
    ics: str | None
    etag: str | None
    first_start: datetime | None
    last_end: datetime | None
    is_series: bool
    revision: int
    deleted: bool
    updated_at: datetime
    # a single appointment's action, when the reader asked for it: what the text means,
    # without parsing it again (a sync's close reads thousands)
    event: EventData | None = None

    @classmethod
    def from_row(cls, row) -> StoredObject:
        return cls(id=row.id, user_id=row.user_id, href=row.href, uid=row.uid,
                   ics=row.ics if "ics" in row._fields else None, etag=row.etag,
                   first_start=row.first_start,
                   last_end=row.last_end, is_series=bool(row.is_series), revision=row.revision,
                   deleted=bool(row.deleted), updated_at=row.updated_at)


def event_columns(event: EventData) -> dict:
    """The ``actions`` column values for an event."""
    return dict(start_utc=event.start, end_utc=event.end, tzid=event.tzid,
                all_day=event.all_day, subject=event.subject, notes=event.notes,
                location=event.location, contact=event.contact, status=event.status,
                extra_ics=event.extra_ics, recurrence_id=event.recurrence_id)
