"""The Gestan-shaped tables (SQLAlchemy Core), the one place the schema is written down.

Alembic migrations in ``migrations/versions`` create exactly this; ``tests/test_store.py``
checks that the two agree.

All instants are naive UTC ``DateTime`` values; an action's own zone is kept beside them
(``tzid``) so that Europe/Paris stays Europe/Paris when rendered back.

The change journal is the pair (``revision``, ``deleted``) on ``actions`` and
``calendar_objects``: every write takes the next value of its user's counter
(``users.revision``, bumped under a row lock so revisions commit in order) and a deletion
leaves a tombstone row instead of removing it. CalDAV sync tokens and "changed since the
last push" are both ``revision > N`` on an index.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("login", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("email", String(320), nullable=False, default=""),
    Column("timezone", String(64), nullable=False, default="Europe/Paris"),
    Column("password_hash", String(100), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    # JSON: Google account and calendar name, Outlook profile, window... (UserSettings)
    Column("settings", Text, nullable=False, default="{}"),
    # JSON: the CalDAV calendar's display name, description and colour
    Column("calendar_props", Text, nullable=False, default="{}"),
    # Last revision handed out for this user's actions and calendar objects.
    Column("revision", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime, nullable=False),
)

# One row per CalDAV object of a user's Rendez-vous calendar: a single appointment or a
# whole series. ``ics`` is rendered once per revision and served as is (its sha256 is the
# etag); ``first_start``/``last_end`` bound every instance so time-range REPORTs are
# answered from the index (``last_end`` NULL: a series without end).
calendar_objects = Table(
    "calendar_objects",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("href", String(255), nullable=False),
    Column("uid", String(255), nullable=False),
    Column("ics", Text),
    Column("etag", String(80)),
    Column("first_start", DateTime),
    Column("last_end", DateTime),
    Column("is_series", Boolean, nullable=False, default=False),
    # Series only: the master VEVENT and its overrides as last received (VCALENDAR text).
    Column("series_ics", Text),
    # Series only: occurrences starting before this instant exist as actions.
    Column("materialised_until", DateTime),
    Column("revision", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("user_id", "href", name="uq_objects_user_href"),
    # A UID is unique among live objects; tombstones keep theirs for sync reports.
    # Written as each dialect renders ``~deleted`` (SQLite: "deleted = 0"), or SQLite's
    # planner does not see that the query matches the partial index and scans the user.
    Index("uq_objects_user_uid_live", "user_id", "uid", unique=True,
          sqlite_where=text("deleted = 0"), postgresql_where=text("NOT deleted")),
    Index("ix_objects_user_revision", "user_id", "revision"),
    Index("ix_objects_user_range", "user_id", "first_start", "last_end"),
)

# Gestan's agenda: actions of every type. Rendez-vous have an ``object_id``; a series
# occurrence also has its ``recurrence_id`` (the original start, as iCalendar text).
actions = Table(
    "actions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("type", String(32), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("notes", Text, nullable=False, default=""),
    Column("location", Text, nullable=False, default=""),
    Column("contact", Text, nullable=False, default=""),
    Column("start_utc", DateTime, nullable=False),
    Column("end_utc", DateTime, nullable=False),
    # IANA zone, "UTC", or NULL for a floating time (read in the user's zone).
    Column("tzid", String(64)),
    Column("all_day", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="CONFIRMED"),
    Column("object_id", Integer, ForeignKey("calendar_objects.id", ondelete="SET NULL")),
    Column("recurrence_id", String(32)),
    # Properties the columns cannot hold (VALARM, ATTENDEE, X-...), as VEVENT content lines.
    Column("extra_ics", Text, nullable=False, default=""),
    Column("revision", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_actions_user_type_start", "user_id", "type", "start_utc"),
    Index("ix_actions_user_revision", "user_id", "revision"),
    Index("ix_actions_object", "object_id", "recurrence_id"),
)


# ---------------------------------------------------------------- the bridge's own tables
# The status table of the sync (vdirsyncer's): one row per calendar object known on a
# target, with what each side looked like when they last agreed. ``local_hash`` and
# ``remote_hash`` are content keys of the same normalised form, so equal means "same
# appointment"; a side whose current key differs from its link has changed since.
sync_links = Table(
    "sync_links",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(32), nullable=False),
    Column("object_id", Integer, ForeignKey("calendar_objects.id", ondelete="CASCADE"),
           nullable=False),
    Column("remote_id", String(1024), nullable=False),
    Column("remote_etag", String(200)),
    Column("local_hash", String(64), nullable=False),
    Column("remote_hash", String(64), nullable=False),
    # JSON {occurrence: key} of the agreed version ("" the master; NULL: a single event or
    # a link made before per-occurrence sync): series conflicts are decided per occurrence.
    Column("parts", Text),
    # JSON list: the versions of the pieces the remote keeps apart (a Google series' master
    # and exceptions) as last seen or written: a listing of only these is our own write.
    Column("remote_pieces", Text),
    # "" the object itself; a series changed "this and following" is held remotely as
    # several series, one per range (bridge.ical.future): the recurrence-id key of the
    # occurrence its remote series starts at.
    Column("part", String(20), nullable=False, server_default=""),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("user_id", "target", "object_id", "part", name="uq_links_object"),
    UniqueConstraint("user_id", "target", "remote_id", name="uq_links_remote"),
)

# Per user and target: the remote's incremental state (a Google sync token, an EWS
# SyncFolderItems state) and the journal revision up to which Gestan's changes were pushed.
sync_state = Table(
    "sync_state",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("target", String(32), primary_key=True),
    Column("calendar_id", String(1024)),
    Column("remote_state", Text),
    Column("pushed_revision", BigInteger, nullable=False, default=0),
    # The window's end at the last open / close: what starts after it was not looked at yet.
    Column("open_window_end", DateTime),
    Column("close_window_end", DateTime),
    Column("updated_at", DateTime, nullable=False),
)

# One row while a sync of the user runs, in whichever process (CLI, server): two syncs of
# one user never run at once. A lease, so that a killed process does not block for ever.
sync_locks = Table(
    "sync_locks",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# The audit log: one row per run, one per change or conflict it made (the losing version
# of a conflict is kept whole, as iCalendar text).
sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("target", String(32), nullable=False),
    Column("direction", String(8), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    # JSON: the run report's counts (created/updated/deleted per side, conflicts, requests...)
    Column("counts", Text, nullable=False, default="{}"),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Index("ix_runs_user", "user_id", "id"),
)

sync_run_items = Table(
    "sync_run_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("sync_runs.id", ondelete="CASCADE"), nullable=False),
    Column("change", String(16), nullable=False),  # create / update / delete / conflict / skip
    Column("side", String(16), nullable=False),    # where it happened: gestan or the target
    Column("uid", String(255), nullable=False),
    Column("summary", Text, nullable=False, default=""),
    Column("detail", Text, nullable=False, default=""),
    Column("losing_ics", Text),
    Index("ix_run_items_run", "run_id"),
)
