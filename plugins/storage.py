"""Radicale storage plugin: every Gestan user has exactly one calendar, ``/<login>/rendez-vous/``.

The calendar exists as soon as the user does (no MKCALENDAR); it holds the user's Rendez-vous
only. Radicale's O(collection) defaults are replaced: the collection etag and sync tokens
come from the store's revisions, time ranges are filtered in SQL, multiget is one query, and
listings do not load the iCalendar text until a client asks for it.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from email.utils import formatdate

from radicale import config, pathutils, storage, types
from radicale import item as radicale_item
from radicale.app.report import test_filter
from radicale.item import filter as radicale_filter

from bridge.ical.render import etag_of
from bridge.radicale_compat import init_item
from bridge.store import StoredObject, User
from plugins import queries
from plugins.common import CALENDAR_NAME, DEFAULT_DISPLAY_NAME, store_for
from plugins.locks import RWLock, Turns

logger = logging.getLogger("gestan_bridge")

# The calendar properties a user may change (PROPPATCH, web UI); the rest is fixed.
EDITABLE_PROPS = ("D:displayname", "C:calendar-description", "ICAL:calendar-color",
                  "ICAL:calendar-order")


def _http_date(value: datetime | None) -> str:
    stamp = calendar.timegm(value.timetuple()) if value else 0
    return formatdate(stamp, usegmt=True)


def _timestamp(value: datetime | None, default: int) -> int:
    return calendar.timegm(value.timetuple()) if value else default


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC).replace(tzinfo=None)


class _Later:
    """An iterable computed the first time it is iterated."""

    def __init__(self, compute) -> None:
        self._compute, self._values = compute, None

    def __iter__(self):
        if self._values is None:
            self._values = self._compute()
        return iter(self._values)


class StoredItem(radicale_item.Item):
    """A calendar object whose text is fetched only if a client asks for it (listings of
    etags never read the iCalendar bodies).

    Built without ``Item.__init__`` (:func:`bridge.radicale_compat.init_item` says why).
    """

    def __init__(self, collection: RendezVousCalendar, stored: StoredObject) -> None:
        init_item(self, collection=collection, href=stored.href, text=stored.ics,
                  etag=stored.etag, uid=stored.uid)
        self._stored = stored
        self._store = collection.store

    @property
    def last_modified(self) -> str:
        return _http_date(self._stored.updated_at)

    @property
    def time_range(self) -> tuple[int, int]:
        stored = self._stored
        return (_timestamp(stored.first_start, 0),
                _timestamp(stored.last_end, radicale_filter.TIMESTAMP_MAX))

    def serialize(self) -> str:
        if self._text is None:
            self._text = self._store.object_ics(self._stored.id) or ""
        return self._text

    @property
    def vobject_item(self):
        self.serialize()
        return super().vobject_item

    def __copy__(self) -> StoredItem:
        """A copy that parses its own text: Radicale's ``<C:expand>`` rewrites the parsed
        item of the copy it is given, which must not be the one a filter already read
        (a series with overrides then had no master left: "does not have a vevent without a
        recurrence_id", and the whole REPORT failed)."""
        twin = object.__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._vobject_item = None
        return twin


class _Collection(storage.BaseCollection):
    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def get_meta(self, key: str | None = None):
        return {} if key is None else None

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise ValueError("only the Rendez-vous calendar has editable properties")

    def get_all(self) -> Iterable[radicale_item.Item]:
        return []

    def get_multi(self, hrefs: Iterable[str]):
        return [(href, None) for href in hrefs]

    def has_uid(self, uid: str) -> bool:
        return False

    def upload(self, href: str, item: radicale_item.Item):
        raise ValueError("appointments live in /<login>/rendez-vous/ only")

    def delete(self, href: str | None = None) -> None:
        raise ValueError("this collection cannot be deleted")

    @property
    def last_modified(self) -> str:
        return _http_date(None)

    @property
    def etag(self) -> str:
        return etag_of(self._path)


class Root(_Collection):
    def __init__(self) -> None:
        super().__init__("")


class Principal(_Collection):
    def __init__(self, user: User) -> None:
        super().__init__(user.login)
        self.user = user

    def get_meta(self, key: str | None = None):
        """The user's name as the principal's display name (clients show it, and a
        principal-property-search matches on it)."""
        meta = {"D:displayname": self.user.name or self.user.login}
        return meta if key is None else meta.get(key)


class RendezVousCalendar(storage.BaseCollection):
    """A user's Rendez-vous, served from the store."""

    def __init__(self, store, user: User) -> None:
        self.store = store
        self.user = user
        self._path = f"{user.login}/{CALENDAR_NAME}"
        # What ``sync`` just read (href → object, None for a deletion): Radicale asks
        # ``get_multi`` for the same hrefs next, and gets them without a second query.
        self._synced: dict[str, StoredObject | None] = {}
        self._whole = False  # serializing the whole calendar: listings carry the texts

    @property
    def path(self) -> str:
        return self._path

    def _item(self, stored: StoredObject) -> StoredItem:
        return StoredItem(self, stored)

    # ------------------------------------------------------------ meta
    def get_meta(self, key: str | None = None):
        props = self.user.calendar_props
        meta = {
            "tag": "VCALENDAR",
            "C:supported-calendar-component-set": "VEVENT",
            "D:displayname": props.get("D:displayname") or DEFAULT_DISPLAY_NAME,
        }
        meta.update({k: props[k] for k in EDITABLE_PROPS if props.get(k) and k not in meta})
        return meta if key is None else meta.get(key)

    def set_meta(self, props: Mapping[str, str]) -> None:
        """Only a real change is written: a new revision moves every phone's ctag and sync
        token (a PROPPATCH repeating the name, or one Radicale then refuses, is none)."""
        changes = {k: (props.get(k) or None) for k in EDITABLE_PROPS}
        current = self.get_meta()
        if all(changes[k] == current.get(k) for k in EDITABLE_PROPS):
            return
        self.user = self.store.set_calendar_props(self.user.login, changes)

    @property
    def etag(self) -> str:
        """From the user's revision: no pass over the items (Radicale's default hashes all)."""
        seed = f"{self.user.revision}/{json.dumps(self.get_meta(), sort_keys=True)}"
        return etag_of(seed)

    @property
    def last_modified(self) -> str:
        return _http_date(self.store.calendar_last_modified(self.user.id))

    # ------------------------------------------------------------ reads
    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        """The token, and the hrefs changed since ``old_token``. Without one, the hrefs are
        read only if asked for: a PROPFIND of ``sync-token`` (phones poll it with the ctag)
        wants the token alone, and listing every appointment made each poll O(calendar).
        The token is then taken first: a change committed in between is listed as well,
        never missed."""
        if old_token:
            return self._changes(old_token)
        return self.store.sync_token(self.user.revision), _Later(lambda: self._changes("")[1])

    def _changes(self, old_token: str) -> tuple[str, list[str]]:
        token, changed = self.store.changes_since(self.user.id, old_token)
        self._synced = {o.href: None if o.deleted else o for o in changed}
        return token, list(self._synced)

    def get_multi(self, hrefs: Iterable[str]):
        hrefs = list(hrefs)
        known, synced = {}, self._synced
        missing = [h for h in hrefs if h not in synced]
        if missing:
            known = {o.href: o for o in self.store.calendar_objects(self.user.id, missing)}
        found = [(href, synced[href] if href in synced else known.get(href)) for href in hrefs]
        return [(href, self._item(o) if o is not None else None) for href, o in found]

    def get_all(self) -> Iterable[radicale_item.Item]:
        return [self._item(o) for o in self.store.calendar_listing(
            self.user.id, with_ics=self._whole)]

    def serialize(self, *args, **kwargs) -> str:
        """The whole calendar (a GET of it, its ``getcontentlength``): the texts read in one
        query, not one per appointment (200 appointments took 57 ms of queries)."""
        self._whole = True
        try:
            return super().serialize(*args, **kwargs)
        finally:
            self._whole = False

    def get_filtered(self, filters: Iterable[ET.Element]
                     ) -> Iterable[tuple[radicale_item.Item, bool]]:
        """Every object the filters match, decided here (:mod:`plugins.queries`): the time
        range from the index and the occurrences materialised at write time, the rest by
        Radicale's matcher. A shape it does not plan for is prefiltered in SQL and left
        to Radicale."""
        filters = list(filters)
        plan = queries.plan(filters)
        if plan is None:
            yield from self._prefiltered(filters)
            return
        yield from ((item, True) for item in self.query(plan))

    def query(self, plan: queries.Plan) -> Iterator[StoredItem]:
        """The objects matching a planned calendar-query filter."""
        wanted = plan.time_range
        if wanted is None:
            found = self.store.calendar_listing(self.user.id, with_ics=True)
        else:
            candidates = self.store.range_candidates(self.user.id, wanted.start, wanted.end)
            found = [c.stored for c in candidates if self._in_range(c, wanted)]
        for stored in found:
            item = self._item(stored)
            if self.matches(item, plan.rest):
                yield item

    def _in_range(self, candidate, wanted: queries.TimeRange) -> bool:
        """An object whose instances cannot be read is kept (shown rather than lost), and
        never fails the query for the others."""
        try:
            return queries.in_range(candidate, wanted, self.user.timezone)
        except Exception:
            logger.warning("time range of %s/%s not read: kept", self.path,
                           candidate.stored.href, exc_info=True)
            return True

    def matches(self, item: StoredItem, filters) -> bool:
        """Radicale's matcher; a malformed filter is the request's fault (``ValueError``,
        a 400), an object it cannot read only fails to match."""
        try:
            return all(test_filter("VCALENDAR", item, f) for f in filters)
        except ValueError:
            raise
        except Exception:
            logger.warning("%s/%s not read by a calendar-query filter", self.path, item.href,
                           exc_info=True)
            return False

    def _prefiltered(self, filters: list[ET.Element]
                     ) -> Iterator[tuple[radicale_item.Item, bool]]:
        """Time ranges go to SQL on the objects' stored first start / last end; Radicale
        checks the rest."""
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, "VCALENDAR")
        if tag not in (None, "VEVENT"):
            return
        lower = _utc(start) if start > 0 else None
        upper = _utc(end) if end < radicale_filter.TIMESTAMP_MAX else None
        for stored in self.store.calendar_listing(self.user.id, with_ics=True,
                                                  start=lower, end=upper):
            yield self._item(stored), simple and not stored.is_series

    def has_uid(self, uid: str) -> bool:
        return self.store.has_uid(self.user.id, uid)

    # ------------------------------------------------------------ writes
    def upload(self, href: str, item: radicale_item.Item):
        stored = self.store.put_object(self.user.login, href, item.serialize())
        return self._item(stored), None

    def delete(self, href: str | None = None) -> None:
        if href is None:
            raise ValueError("the Rendez-vous calendar cannot be deleted")
        self.store.delete_object(self.user.login, href)


def _owner(path: str) -> str:
    """The user whose calendar ``path`` is in ("" for the root)."""
    parts = [p for p in pathutils.strip_path(path).split("/") if p]
    return parts[0] if parts else ""


def _requests_at_once(configuration: config.Configuration) -> int:
    """``[gestan] requests_at_once``, which bridge.server hands over (0: no limit)."""
    try:
        return int(configuration.get("storage", "requests_at_once"))
    except KeyError:
        return 0


class Storage(storage.BaseStorage):
    _supports_unicode = False

    def __init__(self, configuration: config.Configuration) -> None:
        super().__init__(configuration)
        self.store = store_for(configuration)
        self._locks: dict[str, RWLock] = {}
        self._locks_guard = threading.Lock()
        self.turns = Turns(_requests_at_once(configuration))

    def discover(self, path: str, depth: str = "0", child_context_manager=None,
                 user_groups: set = frozenset()) -> Iterator[types.CollectionOrItem]:
        parts = [p for p in pathutils.strip_path(path).split("/") if p]
        if not parts:
            yield Root()
            if depth != "0":
                yield from (Principal(u) for u in self.store.users())
            return
        user = self.store.user(parts[0])
        if user is None:
            return
        if len(parts) == 1:
            yield Principal(user)
            if depth != "0":
                yield RendezVousCalendar(self.store, user)
            return
        if parts[1] != CALENDAR_NAME:
            return
        collection = RendezVousCalendar(self.store, user)
        if len(parts) == 2:
            yield collection
            if depth != "0":
                yield from collection.get_all()
        elif len(parts) == 3:
            stored = self.store.calendar_object(user.id, parts[2])
            if stored is not None:
                yield collection._item(stored)

    def move(self, item: radicale_item.Item, to_collection: storage.BaseCollection,
             to_href: str) -> None:
        """One transaction: the appointment is never in both places, or in neither (an
        upload then a delete refused the upload, its UID being still in use)."""
        source = item.collection
        if not isinstance(to_collection, RendezVousCalendar) or not isinstance(
                source, RendezVousCalendar):
            raise ValueError("appointments can only move between Rendez-vous calendars")
        if source.user.id == to_collection.user.id and item.href == to_href:
            return
        self.store.move_object(source.user.login, item.href, to_collection.user.login,
                               to_href)

    def create_collection(self, href: str, items=None, props=None):
        parts = [p for p in pathutils.strip_path(href).split("/") if p]
        user = self.store.user(parts[0]) if parts else None
        if user is not None and not items and not props and len(parts) <= 2:
            existing = next(iter(self.discover(href)), None)
            if existing is not None:
                return existing, {}, []
        raise ValueError("gestan-bridge serves one calendar per user: /<login>/rendez-vous/")

    @types.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args, path: str | None = None,
                     to_path: str | None = None, **kwargs) -> Iterator[None]:
        """One lock per calendar owner: a request waits only for writes to the calendars it
        touches, never for another user's (a slow write of one user held every other
        user's reads and writes behind one lock). Writes name their paths (a MOVE two);
        a read takes its user's lock."""
        owners = sorted({_owner(p) for p in (path, to_path) if p is not None} or {user or ""})
        with contextlib.ExitStack() as stack:
            for owner in owners:
                with self._locks_guard:
                    lock = self._locks.setdefault(owner, RWLock())
                stack.enter_context(lock.acquire(mode))
            stack.enter_context(self.turns.turn())
            yield

    def verify(self) -> bool:
        return True
