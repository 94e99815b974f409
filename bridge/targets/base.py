"""The one interface every remote calendar implements for the sync engine.

The unit is a calendar object: a single appointment or a whole series (master, overrides,
cancelled occurrences) as one VCALENDAR text, the same unit as Gestan's CalDAV calendar.
A target converts to and from its own representation; the engine never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from bridge.ical.model import ParsedObject


@dataclass(frozen=True)
class Window:
    """The instants a run looks at (naive UTC): from ``start`` to ``end``."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class RemoteObject:
    remote_id: str
    etag: str | None
    ics: str | None              # None: the remote says it was deleted (a positive signal)
    foreign_uid: str | None = None  # the Gestan UID we stamped on it, when it carries one
    # versions of the pieces the remote keeps apart (a Google series: the etags of its
    # master and exceptions); the engine keeps them and hands them back to list_changes
    pieces: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Listing:
    objects: list[RemoteObject]
    state: str | None            # store it once every object was applied
    full: bool                   # a full listing of the window, not a delta
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (remote id, why)


class WriteKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


@dataclass(frozen=True)
class WriteOp:
    kind: WriteKind
    uid: str                     # the Gestan object's UID (foreign id stamped remotely)
    ics: str | None = None       # create / update
    remote_id: str | None = None  # update / delete (create: the target chooses, stably)
    etag: str | None = None      # If-Match: the version we last saw; None: unconditional
    local_id: int = 0            # the caller's own key for the object (opaque to targets)
    # update only: the remote's version this write replaces, as just read; the target then
    # writes only the occurrences (master, exceptions, cancelled instances) that differ
    # from it. None: write every field Gestan owns (never the fields it does not own).
    base: str | None = None
    base_pieces: frozenset[str] = frozenset()  # the base's RemoteObject.pieces
    # the engine's reading of ``ics`` when it has one (a target may use it rather than
    # parse the text again; it means exactly what ``ics`` means)
    parsed: ParsedObject | None = None
    # create only: False when no earlier attempt of it can exist remotely (every earlier
    # close of this target finished and recorded what it made), so a target without
    # client-chosen ids may skip looking the stamped Gestan UID up; True: look it up
    may_exist: bool = True


class WriteError(StrEnum):
    PRECONDITION = "precondition"  # changed remotely since ``etag``: re-read, decide again
    GONE = "gone"                  # 404/410: does not exist (any more)
    EXISTS = "exists"              # create: the stable id is taken (an earlier run made it)
    REJECTED = "rejected"          # the remote refuses this object (reported, skipped)


@dataclass(frozen=True)
class WriteResult:
    op: WriteOp
    remote: RemoteObject | None = None   # success: the object as now stored remotely
    error: WriteError | None = None
    message: str = ""


class TargetStopped(Exception):
    """The run cannot go on (quota exhausted, consent revoked, remote down after retries).

    Everything applied before it is recorded; the next run finishes the job."""


class ReconnectNeeded(TargetStopped):
    """The remote refuses the stored consent or credentials (revoked, expired, deleted
    client): only the user can cure it. The message names the command that reconnects."""


class CalendarNotFound(LookupError):
    """The calendar named in the user's settings does not exist (any more) in the remote
    account; the message lists the calendars found. Raised by ``bind`` or by a later call
    when the calendar vanished: the caller forgets the cached reference, so that the next
    run looks the name up again."""


@dataclass
class RequestCounter:
    count: int = 0
    retries: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class Target(Protocol):
    """A remote calendar as the engine sees it (tests/test_target_contract.py checks it).

    Creates must be safe to retry (issue 8, point 9): a run may crash after the remote made
    an object but before the engine heard of it, and the next run sends the same CREATE.
    Every target stamps the Gestan UID (``WriteOp.uid``) on what it writes, and recognises
    a retried create instead of making a duplicate, answering
    ``WriteResult(op, remote=<the existing object>, error=WriteError.EXISTS)``:

    - with client-chosen ids (Google): the id is derived from the Gestan UID, stable across
      runs, so the retried insert is refused (409) and the existing object is fetched;
    - without them (EWS, Graph, the in-memory target): before creating, look the stamped
      Gestan UID up on the remote (an extended property) and answer with what is found.
    """

    name: str
    requests: RequestCounter
    # iCalendar properties it carries beyond times, texts, status and recurrence (e.g.
    # "VALARM", "ATTENDEE", "CATEGORIES"): their edits there are changes, and the remote's
    # value of them wins on open; what it does not carry is kept from Gestan's version.
    carries: frozenset[str]

    def bind(self, cached: str | None) -> str:
        """Find the remote calendar; ``cached`` is what an earlier run returned (an opaque
        reference kept in the sync state), so that it is looked up once, not every run."""

    def list_window(self, window: Window, known: Collection[str] = ()) -> Listing:
        """Every object with an instance in ``window`` (no state kept): the slice of time
        that entered the sync window since the last run. Objects whose remote id is in
        ``known`` (already followed) may be left out, and should cost nothing more."""

    def list_changes(self, state: str | None, window: Window,
                     known: Mapping[str, frozenset[str]] | None = None) -> Listing:
        """Changes since ``state`` (None or expired: a full listing of ``window``).
        ``known``: remote id → the pieces last seen or written (RemoteObject.pieces); an
        object all of whose listed pieces are known is unchanged (our own write) and may be
        left out without reading more of it."""

    def fetch(self, remote_id: str) -> RemoteObject | None:
        """The object now, or None when the remote confirms it does not exist."""

    def fetch_many(self, remote_ids: Sequence[str]) -> dict[str, RemoteObject | None]:
        """Several objects now (each as ``fetch`` answers), batched as the remote allows: a
        close that updates many series reads them all first in a few requests."""

    def write(self, ops: Sequence[WriteOp], on_result: Callable[[WriteResult], None]) -> None:
        """Apply writes, batched as the remote allows; ``on_result`` hears each outcome as
        soon as it is known (so it is recorded even if the run stops later)."""
