"""The Gestan-shaped agenda store: the one API that the CLI, the Radicale plugins and the
sync engine call. Each method is one transaction; SQL lives in the modules below.

- ``users``: users, bcrypt passwords, settings, the per-user revision counter
- ``agenda``: actions as Gestan sees them (every type)
- ``objects``: the CalDAV view (one object per appointment or series), series materialised
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bridge.ical import parse_object
from bridge.ical.model import EventData, InvalidObject, ParsedObject
from bridge.ical.timezones import now_utc
from bridge.store import agenda, objects, queries, users
from bridge.store import sync as sync_tables
from bridge.store.engine import database_url, make_engine, migrate, write_options
from bridge.store.objects import ObjectChanged, Precondition, PreconditionFailed, UidConflict
from bridge.store.queries import Candidate
from bridge.store.records import Action, ActionType, StoredObject, User
from bridge.store.sync import Link, RunItem, RunRecord, SyncState
from bridge.store.users import LoginCache, LoginGuard, UserError

__all__ = ["Action", "ActionType", "Candidate", "EventData", "ImportReport", "InvalidObject",
           "Link", "ObjectChanged", "Precondition", "PreconditionFailed", "PullWrite",
           "RunItem", "RunRecord", "Store", "StoredObject", "SyncState", "UidConflict", "User",
           "UserError", "open_store"]

logger = logging.getLogger("gestan_bridge")

SYNC_TOKEN_PREFIX = "http://gestan-bridge.invalid/ns/sync/"
# a revision, and after a page cut by DAV:limit the last object id it sent of that revision
_TOKEN = re.compile(re.escape(SYNC_TOKEN_PREFIX) + r"([0-9]{1,18})(?:\.([0-9]{1,12}))?")


@dataclass(frozen=True)
class PullWrite:
    """One write of an open into Gestan (:meth:`Store.pull_batch`)."""

    parsed: ParsedObject | None   # None: delete ``expected`` (the remote deleted it)
    link: Link | None             # the link to keep (its object id is filled in)
    expected: StoredObject | None  # Gestan's object as decided from (None: none of the UID)
    # A series cut "this and following" taken apart (the remote changed one of its
    # parts): ``expected``'s links are all replaced, it keeps the first part (or is
    # deleted), and ``parts`` make the others objects of their own; all or nothing.
    cut: bool = False
    parts: tuple[PullWrite, ...] = ()


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (uid or position, reason)


class _Unchanged(Exception):
    """Rolls back an import's write that changed nothing anyone sees."""


# Users read during the current request (:meth:`Store.request_scope`), by login.
_REQUEST_USERS: contextvars.ContextVar[dict[str, User | None] | None] = contextvars.ContextVar(
    "gestan_request_users", default=None)


class Store:
    def __init__(self, url: str | None = None) -> None:
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        migrate(self.engine)
        self._logins = LoginCache()
        self._guard = LoginGuard()

    # -------------------------------------------------------------- transactions
    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                conn.execution_options(**write_options())
                with conn.begin():
                    yield conn
        finally:
            # a write may change a user (their revision above all): read them again
            cached = _REQUEST_USERS.get()
            if cached:
                cached.clear()

    @contextlib.contextmanager
    def request_scope(self) -> Iterator[None]:
        """One HTTP request: each user it names is read once, not by every plugin that
        asks (authentication, rights, discovery and the method asked for the same row up to
        six times a request); a write forgets them."""
        token = _REQUEST_USERS.set({})
        try:
            yield
        finally:
            _REQUEST_USERS.reset(token)

    # -------------------------------------------------------------- users
    def add_user(self, login: str, password: str, **fields) -> User:
        with self.writing() as conn:
            return users.add(conn, login, password, **fields)

    def set_user(self, login: str, **fields) -> User:
        with self.writing() as conn:
            return users.set_fields(conn, login, **fields)

    def user(self, login: str) -> User | None:
        cached = _REQUEST_USERS.get()
        if cached is not None and login in cached:
            return cached[login]
        with self.reading() as conn:
            found = users.get(conn, login)
        if cached is not None:
            cached[login] = found
        return found

    def require_user(self, login: str) -> User:
        return users.existing(login, self.user(login))

    def users(self) -> list[User]:
        with self.reading() as conn:
            return users.all_users(conn)

    def authenticate(self, login: str, password: str, address: str | None = None
                     ) -> User | None:
        """The user if the password is right (bcrypt, with a short cache of successes).

        The same cost whether the login exists or not; failures are counted (per login, and
        per address for unknown logins) and a login past its limit is refused for a while,
        logged (:class:`bridge.store.users.LoginGuard`)."""
        user = self.user(login)
        known = user is not None
        wait = self._guard.blocked(login, address, known)
        if wait is not None:
            logger.warning("login %r from %s refused: too many failed logins, %d s more",
                           login[:64], address or "?", int(wait))
            return None
        if user is None:
            self._logins.burn(password)
            ok = False
        else:
            ok = bool(password) and self._logins.check(user, password)
        if ok:
            self._guard.succeeded(login)
            return user
        self._guard.failed(login, address, known)
        logger.info("failed login %r from %s", login[:64], address or "?")
        return None

    # -------------------------------------------------------------- CalDAV view
    def calendar_object(self, user_id: int, href: str, with_ics: bool = True
                        ) -> StoredObject | None:
        with self.reading() as conn:
            return objects.get(conn, user_id, href, with_ics)

    def calendar_objects(self, user_id: int, hrefs) -> list[StoredObject]:
        with self.reading() as conn:
            return objects.get_many(conn, user_id, hrefs)

    def calendar_listing(self, user_id: int, with_ics: bool = False,
                         start: datetime | None = None, end: datetime | None = None
                         ) -> list[StoredObject]:
        with self.reading() as conn:
            return objects.listing(conn, user_id, with_ics, start, end)

    def object_ics(self, object_id: int) -> str | None:
        with self.reading() as conn:
            return objects.ics_of(conn, object_id)

    def object_count(self, user_id: int) -> int:
        with self.reading() as conn:
            return objects.count(conn, user_id)

    def calendar_last_modified(self, user_id: int) -> datetime | None:
        with self.reading() as conn:
            return objects.last_modified(conn, user_id)

    def has_uid(self, user_id: int, uid: str) -> bool:
        with self.reading() as conn:
            return objects.has_uid(conn, user_id, uid)

    def sync_token(self, revision: int, last_id: int | None = None) -> str:
        """The token of a complete answer at ``revision``; with ``last_id``, a checkpoint
        inside it (a page cut by ``DAV:limit``: the rest of ``revision`` after that object
        is still to come)."""
        tail = "" if last_id is None else f".{last_id}"
        return f"{SYNC_TOKEN_PREFIX}{revision}{tail}"

    def changes_since(self, user_id: int, token: str) -> tuple[str, list[StoredObject]]:
        """(current token, objects changed since ``token``, tombstones included, with their
        text: a sync report serves them without reading again); ``ValueError`` for a token
        we did not issue, as Radicale expects (it answers 403 valid-sync-token)."""
        with self.reading() as conn:
            token, changed, _ = self._changes_since(conn, users.get_by_id(conn, user_id), token)
            return token, changed

    def login_changes_since(self, login: str, token: str, limit: int | None = None
                            ) -> tuple[str, list[StoredObject], bool] | None:
        """:meth:`changes_since` by login in one transaction (None: no such user): a
        phone's sync costs one round trip to the database server. With ``limit``
        (RFC 6578 ``DAV:limit``) at most that many objects, and whether the answer was cut
        there (the token is then a checkpoint to continue from)."""
        with self.reading() as conn:
            user = users.get(conn, login)
            return None if user is None else self._changes_since(conn, user, token, limit)

    def login_calendar_objects(self, login: str, hrefs) -> list[StoredObject] | None:
        """:meth:`calendar_objects` by login in one transaction (None: no such user)."""
        with self.reading() as conn:
            user = users.get(conn, login)
            return None if user is None else objects.get_many(conn, user.id, hrefs)

    def _changes_since(self, conn: Connection, user: User, token: str,
                       limit: int | None = None) -> tuple[str, list[StoredObject], bool]:
        current = user.revision
        if not token and limit is None:
            return (self.sync_token(current),
                    objects.listing(conn, user.id, with_ics=True), False)
        after = self._checkpoint(token, current) if token else (0, None)
        found = queries.sync_page(conn, user.id, after, limit, live_only=not token)
        if limit is None or len(found) <= limit:
            return self.sync_token(current), found, False
        page = found[:limit]
        return self.sync_token(page[-1].revision, page[-1].id), page, True

    @staticmethod
    def _checkpoint(token: str, current: int) -> tuple[int, int | None]:
        """(revision, last object id sent of that revision: None, all of it) of a token we
        issued: everything up to there was sent."""
        found = _TOKEN.fullmatch(token)
        if found is None or int(found[2] or 0) >= 2 ** 31:
            raise ValueError(f"unknown sync token {token!r}")
        if int(found[1]) > current:
            raise ValueError(f"sync token {token!r} is from the future")
        return int(found[1]), int(found[2]) if found[2] else None

    def range_candidates(self, user_id: int, start: datetime | None, end: datetime | None,
                         every_action: bool = False) -> list[Candidate]:
        """Objects that may have an instance in [start, end), with their materialised
        occurrences there (:mod:`bridge.store.queries`)."""
        with self.reading() as conn:
            return queries.range_candidates(conn, user_id, start, end, every_action)

    def put_object(self, login: str, href: str, data: str | bytes | ParsedObject
                   ) -> StoredObject:
        """Store a calendar object from a phone (parsed and validated here if need be)."""
        return self.write_object(login, href, data)[0]

    def write_object(self, login: str, href: str, data: str | bytes | ParsedObject,
                     precondition: Precondition | None = None) -> tuple[StoredObject, bool]:
        """Store a calendar object if ``precondition`` holds (else :class:`PreconditionFailed`
        and nothing written): the object, and whether it is new."""
        user = self.require_user(login)
        parsed = data if isinstance(data, ParsedObject) else parse_object(data, user.timezone)
        with self.writing() as conn:
            revision = users.next_revision(conn, user.id)
            return objects.write(conn, user, href, parsed, revision, precondition=precondition)

    def move_object(self, login: str, href: str, to_login: str, to_href: str
                    ) -> StoredObject:
        """Move an appointment to another name (or another user's calendar) in one
        transaction: a client's MOVE never leaves it in both places, or in neither."""
        user = self.require_user(login)
        if to_login == login:
            with self.writing() as conn:
                revision = users.next_revision(conn, user.id)
                return queries.rename(conn, user, href, to_href, revision, now_utc())
        target = self.require_user(to_login)
        with self.writing() as conn:
            stored = objects.get(conn, user.id, href)
            if stored is None or stored.ics is None:
                raise UserError(f"{login} has no object {href}")
            parsed = parse_object(stored.ics, target.timezone)
            # revisions taken in user id order: two moves in opposite directions never
            # wait for each other's row lock
            first, second = sorted((user, target), key=lambda u: u.id)
            revisions = {first.id: users.next_revision(conn, first.id),
                         second.id: users.next_revision(conn, second.id)}
            moved = objects.put(conn, target, to_href, parsed, revisions[target.id])
            objects.delete(conn, user, href, revisions[user.id])
            return moved

    def delete_object(self, login: str, href: str) -> bool:
        user = self.require_user(login)
        with self.writing() as conn:
            revision = users.next_revision(conn, user.id)
            return objects.delete(conn, user, href, revision)

    def set_calendar_props(self, login: str, props: dict) -> User:
        with self.writing() as conn:
            user = users.set_fields(conn, login, calendar_props=props)
            users.next_revision(conn, user.id)  # the collection etag changes
            return users.require(conn, login)

    # -------------------------------------------------------------- agenda
    def agenda(self, login: str, start: datetime | None = None, end: datetime | None = None,
               types: list[ActionType] | None = None) -> list[Action]:
        self.refresh_series(login)
        user = self.require_user(login)
        with self.reading() as conn:
            return agenda.listing(conn, user, start, end, types)

    def action(self, login: str, action_id: int) -> Action:
        user = self.require_user(login)
        with self.reading() as conn:
            return agenda.get(conn, user, action_id)

    def add_action(self, login: str, event: EventData,
                   type_: ActionType = ActionType.APPOINTMENT) -> Action:
        user = self.require_user(login)
        with self.writing() as conn:
            revision = users.next_revision(conn, user.id)
            return agenda.add(conn, user, type_, event, revision, now_utc())

    def delete_action(self, login: str, action_id: int) -> Action:
        user = self.require_user(login)
        with self.writing() as conn:
            revision = users.next_revision(conn, user.id)
            return agenda.delete(conn, user, action_id, revision, now_utc())

    def import_calendar(self, login: str, text: str | bytes) -> ImportReport:
        """Add or update (by UID) every event of an .ics file; never deletes.

        Each UID is its own transaction: one bad event is reported, the others land. An
        object that the import would leave as phones and Gestan see it (its served text,
        DTSTAMP aside, and its actions) is not written at all: its etag, the calendar's
        ctag and sync token stay, and phones download nothing again. A file that cannot
        be read as iCalendar raises :class:`InvalidObject` (nothing is written).
        """
        from bridge.ical.split import split_calendar  # local: only the importer needs it

        user = self.require_user(login)
        report = ImportReport()
        for label, piece in split_calendar(text):
            try:
                parsed = parse_object(piece, user.timezone)
                outcome = self._import_one(user, parsed)
            except (InvalidObject, UidConflict) as exc:
                report.rejected.append((label, getattr(exc, "reason", str(exc))))
            else:
                getattr(report, outcome).append(parsed.uid)
        return report

    def _import_one(self, user: User, parsed: ParsedObject) -> str:
        """Write one object of an import: "added", "updated" or "unchanged" (the write was
        made, compared with what was there, and rolled back)."""
        try:
            with self.writing() as conn:
                existing = objects.listing_by_uid(conn, user.id, parsed.uid)
                revision = users.next_revision(conn, user.id)
                now = now_utc()
                if existing is None:
                    objects.put(conn, user, _href_for(parsed.uid), parsed, revision, now)
                    return "added"
                if existing.is_series:  # occurrences due anyway are not the import's doing
                    objects.extend_series(conn, user, existing.id, revision, now)
                before = objects.observed(conn, existing.id)
                objects.put(conn, user, existing.href, parsed, revision, now)
                if objects.observed(conn, existing.id) == before:
                    raise _Unchanged
                return "updated"
        except _Unchanged:
            return "unchanged"

    def refresh_series(self, login: str | None = None, now: datetime | None = None) -> int:
        """Materialise series occurrences that entered the one-year horizon (all users when
        ``login`` is None). Returns how many series were extended."""
        now = now or now_utc()
        targets = [self.require_user(login)] if login else self.users()
        extended = 0
        for user in targets:
            with self.reading() as conn:
                due = objects.series_due(conn, user.id, now)
            for object_id in due:
                with self.writing() as conn:
                    revision = users.next_revision(conn, user.id)
                    objects.extend_series(conn, user, object_id, revision, now)
                    objects.rerender(conn, user, object_id, revision)
                extended += 1
        return extended

    # -------------------------------------------------------------- sync (bridge.sync)
    def sync_state(self, user_id: int, target: str) -> SyncState:
        with self.reading() as conn:
            return sync_tables.get_state(conn, user_id, target)

    def save_sync_state(self, user_id: int, target: str, **fields) -> None:
        with self.writing() as conn:
            sync_tables.save_state(conn, user_id, target, now_utc(), **fields)

    def reset_sync(self, user_id: int, target: str) -> None:
        with self.writing() as conn:
            sync_tables.reset_state(conn, user_id, target)

    def take_sync_lock(self, user_id: int, holder: str, lease: timedelta,
                       dead: Callable[[str], bool] | None = None) -> datetime | None:
        """None when ``holder`` now runs the user's sync (runs a dead holder left "running"
        are marked "interrupted"); else until when another holds it."""
        now = now_utc()
        try:
            with self.writing() as conn:
                busy = sync_tables.take_lock(conn, user_id, holder, now, lease, dead)
                if busy is None:
                    sync_tables.interrupt_runs(conn, user_id, now)
                return busy
        except IntegrityError:  # another process inserted the row at the same moment
            return now + lease

    def unlock_sync(self, user_id: int) -> tuple[bool, list[int]]:
        """Drop the user's sync lock whoever holds it, and mark its runs interrupted: for a
        lock whose holder cannot be proven dead (another host). (lock dropped?, run ids)"""
        with self.writing() as conn:
            dropped = sync_tables.force_unlock(conn, user_id)
            return dropped, sync_tables.interrupt_runs(conn, user_id, now_utc())

    def renew_sync_lock(self, user_id: int, holder: str, lease: timedelta) -> None:
        with self.writing() as conn:
            sync_tables.renew_lock(conn, user_id, holder, now_utc() + lease)

    def release_sync_lock(self, user_id: int, holder: str) -> None:
        with self.writing() as conn:
            sync_tables.release_lock(conn, user_id, holder)

    def sync_links(self, user_id: int, target: str) -> list[Link]:
        with self.reading() as conn:
            return sync_tables.links(conn, user_id, target)

    def save_link(self, user_id: int, target: str, link: Link) -> None:
        with self.writing() as conn:
            sync_tables.save_link(conn, user_id, target, link, now_utc())

    def save_links(self, user_id: int, target: str, links: list[Link]) -> None:
        with self.writing() as conn:
            sync_tables.save_links(conn, user_id, target, links, now_utc())

    def forget_link(self, user_id: int, target: str, object_id: int,
                    part: str | None = None) -> None:
        with self.writing() as conn:
            sync_tables.forget_link(conn, user_id, target, object_id, part)

    def objects_by_id(self, user_id: int, ids) -> dict[int, StoredObject]:
        with self.reading() as conn:
            return sync_tables.objects_by_id(conn, user_id, ids)

    def objects_by_uid(self, user_id: int, uids) -> dict[str, StoredObject]:
        with self.reading() as conn:
            return sync_tables.objects_by_uid(conn, user_id, uids)

    def changed_objects(self, user_id: int, since: int, upto: int, start: datetime,
                        end: datetime, target: str) -> list[StoredObject]:
        with self.reading() as conn:
            return sync_tables.changed_objects(conn, user_id, since, upto, start, end, target)

    def first_events(self, user_id: int, object_ids) -> dict[int, EventData]:
        with self.reading() as conn:
            return sync_tables.first_events(conn, user_id, object_ids)

    def entering_objects(self, user_id: int, start: datetime, end: datetime, upto: int,
                         target: str) -> list[StoredObject]:
        with self.reading() as conn:
            return sync_tables.entering_objects(conn, user_id, start, end, upto, target)

    def pull_batch(self, login: str, target: str, writes: list[PullWrite]) -> list[bool]:
        """Write remote versions into Gestan with their links, in one transaction (a crash
        leaves all or none), each only if Gestan's object is still what it was decided
        from (compare-and-set: a phone's write that landed since is never overwritten).
        Per write, whether it was applied (False: changed meanwhile, nothing written)."""
        user = self.require_user(login)
        applied = []
        with self.writing() as conn:
            revision = users.next_revision(conn, user.id)  # locks the user's writes
            now = now_utc()
            for write in writes:
                group = (write, *write.parts)
                try:
                    for one in group:
                        uid = one.parsed.uid if one.parsed else one.expected.uid
                        objects.require_unchanged(conn, user.id, uid, one.expected)
                except ObjectChanged:
                    applied.append(False)
                    continue
                if write.cut and write.expected is not None:
                    sync_tables.forget_link(conn, user.id, target, write.expected.id)
                for one in group:
                    self._pull_one(conn, user, target, one, revision, now)
                applied.append(True)
        return applied

    @staticmethod
    def _pull_one(conn, user: User, target: str, write: PullWrite, revision: int,
                  now: datetime) -> None:
        if write.parsed is None:
            objects.delete(conn, user, write.expected.href, revision, now)
            sync_tables.forget_link(conn, user.id, target, write.expected.id)
            return
        href = write.expected.href if write.expected else _href_for(write.parsed.uid)
        stored = objects.put(conn, user, href, write.parsed, revision, now)
        if write.link is not None:
            sync_tables.save_link(conn, user.id, target, dataclasses.replace(
                write.link, object_id=stored.id), now)

    def start_run(self, user_id: int, target: str, direction: str, dry_run: bool) -> int:
        with self.writing() as conn:
            return sync_tables.start_run(conn, user_id, target, direction, dry_run, now_utc())

    def log_run_items(self, run_id: int, items: list[RunItem]) -> None:
        with self.writing() as conn:
            sync_tables.add_items(conn, run_id, items)

    def finish_run(self, run_id: int, status: str, message: str, counts: dict) -> None:
        with self.writing() as conn:
            sync_tables.finish_run(conn, run_id, status, message, counts, now_utc())

    def previous_close_finished(self, user_id: int, target: str, before: int) -> bool:
        with self.reading() as conn:
            return sync_tables.previous_close_finished(conn, user_id, target, before)

    def sync_runs(self, user_id: int, limit: int = 20) -> list[RunRecord]:
        with self.reading() as conn:
            return sync_tables.runs(conn, user_id, limit)

    def sync_run_items(self, run_id: int) -> list[RunItem]:
        with self.reading() as conn:
            return sync_tables.run_items(conn, run_id)


def _href_for(uid: str) -> str:
    """A safe href for an imported UID (UIDs may hold any character)."""
    safe = "".join(c for c in uid if c.isalnum() or c in "-_.")
    if not safe or len(safe) > 100 or safe != uid:
        safe = str(uuid.uuid5(uuid.NAMESPACE_URL, uid))
    return f"{safe}.ics"


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(url: str | None = None) -> Store:
    """The process-wide store for ``url`` (plugins, CLI and HTTP endpoints share it)."""
    url = database_url(url)
    with _stores_lock:
        if url not in _stores:
            _stores[url] = Store(url)
        return _stores[url]
