"""A loopback fake of Exchange Web Services (SOAP over HTTP), driven by the real exchangelib.

It keeps its own mailbox state and follows the behaviour Microsoft's EWS reference documents (see
DESIGN.md, "Facts the fakes must respect"), so that an unpatched exchangelib can talk to it::

    with FakeEws() as fake:
        config = Configuration(
            service_endpoint=fake.url,
            credentials=Credentials(fake.username, fake.password),
            auth_type=BASIC,
            version=Version(build=Build(15, 1, 2507, 6)),
            retry_policy=FailFast(),  # or FaultTolerance(max_wait=...) to honour ErrorServerBusy
        )
        account = Account(fake.email, config=config, autodiscover=False, access_type=DELEGATE)
        calendar = account.calendar                 # GetFolder (distinguished "calendar")
        sub = account.calendar // "Gestan"          # FindFolder (Shallow, DisplayName restriction)

With ``version`` set exchangelib sends no version probe, with ``auth_type`` no auth probe, with
``autodiscover=False`` no autodiscover: every HTTP request is one EWS operation.

Authentication: ``FakeEws(auth="basic")`` (the default) takes ``Authorization: Basic`` only;
``FakeEws(auth="ntlm")`` takes NTLM only (``WWW-Authenticate: NTLM``), checked by pyspnego's
acceptor as IIS's Windows authentication would: Negotiate, Challenge and Authenticate on one
keep-alive connection, which then stays authenticated (IIS's default), so later requests on it
carry no header; a new connection shakes hands again (three HTTP requests, each counted). A
password changed with ``set_password`` refuses new handshakes, not connections already made.
Anything else answers 401 with the scheme the fake takes.

Autodiscover: the same server answers SOAP autodiscover (what exchangelib 5 asks: GetUserSettings
at /autodiscover/autodiscover.svc, behind the same authentication) with the documented
GetUserSettingsResponseMessage: ExternalEwsUrl/InternalEwsUrl = ``url``, AutoDiscoverSMTPAddress,
EwsSupportedSchemas up to Exchange2016; other settings are UserSettingErrors
(SettingIsNotAvailable), another mailbox is InvalidUser. To reach it from an e-mail address,
see tests/fakes/autodiscover.py (loopback DNS and HTTPS hosts for exchangelib).

Operations: GetFolder, FindFolder (Shallow/Deep, IndexedPageFolderView, Restriction), FindItem
(IndexedPageItemView paging, CalendarView expanding occurrences, Restriction incl. on extended
properties), GetItem (ItemId, OccurrenceItemId, RecurringMasterItemId), CreateItem, UpdateItem
(SetItemField/AppendToItemField/DeleteItemField; on an occurrence it makes or changes an
exception), DeleteItem (an item, a whole series, or one occurrence), SyncFolderItems (opaque
SyncState, Create/Update/Delete since it, MaxChangesReturned paging with IncludesLastItemInRange,
ErrorInvalidSyncStateData for an unknown or expired state). Every response carries
ServerVersionInfo; booleans are ``true``/``false``; times are answered in UTC.

exchangelib 5.6 behaviours seen against this fake (the EWS target must handle them):

* ``account.calendar`` costs two GetFolder requests (root, then calendar); ``folder // "name"``
  is FindFolder + GetFolder; ``folder / "name"`` loads the whole folder tree (a GetFolder of every
  well-known folder, a Deep FindFolder, more GetFolders). Keep the folder id from ``connect``.
* Protocols are cached per (endpoint, credentials) for the whole process: the first
  Configuration's retry policy wins until ``exchangelib.close_connections()``.
* FailFast: a 401 raises UnauthorizedError at once, ErrorServerBusy is raised with ``back_off``
  (seconds) set from BackOffMilliseconds, a 500 page is raised as ErrorServerBusy. FaultTolerance:
  BackOffMilliseconds is honoured (the next request sleeps until then), but a 401 is read as
  throttling (10 s, doubling, up to ``max_wait``; RateLimitError past it), so a wrong password
  needs FailFast or a small ``max_wait``.
* save()/bulk_create/bulk_update/delete default to SendToNone (CreateItem
  ``SendMeetingInvitations``, UpdateItem ``SendMeetingInvitationsOrCancellations``, DeleteItem
  ``SendMeetingCancellations``); pass it explicitly anyway.
* ErrorIrresolvableConflict is raised, not returned: in a bulk_update the other items of the
  request were applied but their new ChangeKeys are lost with the exception.
* Booleans are written as ``1``/``0`` but only ``true``/``false`` are read (``0`` reads as None):
  the fake answers true/false as Exchange does.
* After delete() the item's id is None; ``view()`` is FindItem (CalendarView, IdOnly) + GetItem;
  ``sync_items()`` asks for every field, extended properties included.

Behaviour worth knowing (as in Exchange): every change gives a new ChangeKey; a stale ChangeKey
with ConflictResolution AutoResolve/NeverOverwrite answers ErrorIrresolvableConflict, with
AlwaysOverwrite it wins; DeleteItem with a stale ChangeKey answers ErrorIrresolvableConflict too
(``delete_checks_changekey=False`` turns that off); extended properties come back only when asked
for in AdditionalProperties; a recurring master carries ModifiedOccurrences/DeletedOccurrences;
SyncFolderItems reports masters and single items only (a changed exception is an Update of its
master); ErrorServerBusy is a SOAP Fault (HTTP 500) whose MessageXml holds BackOffMilliseconds,
which is where exchangelib reads it.

Test API: ``url``, ``email``, ``username``, ``password``; folders: ``add_folder(name,
parent="calendar")``, ``folder_id(name_or_distinguished)``, ``folders()``; items (as another
client, Outlook: not logged, not counted): ``add_item(folder="calendar", extended=..., **fields)``,
``modify(item_id, original_start=None, extended=None, **fields)`` (``None`` deletes a field),
``delete(item_id, original_start=None)``; state: ``item(item_id)``, ``items(folder=None)``,
``occurrence_id(master_id, original_start)``, ``occurrences(master_id, start, end)``;
``request_log`` (LoggedRequest: service, status, attrs such as SendMeetingInvitations or
ConflictResolution, count of items or changes, error codes), ``request_count`` (HTTP
requests; a CreateItem of 100 items counts once), ``injected_errors``, ``reset_log()``;
faults: ``fail_next(count, kind, back_off_ms=)`` with kind ``"busy"`` (ErrorServerBusy),
``"401"`` or ``"500"``; ``clear_failures()``, ``expire_sync_states()``, ``set_password()``.

Fields use EWS element names: ``add_item(Subject="RDV", Start=dt, End=dt, Location="Salle 2",
Categories=["Rouge"], Recurrence={"WeeklyRecurrence": {"Interval": 1, "DaysOfWeek": "Monday",
"FirstDayOfWeek": "Monday"}, "NumberedRecurrence": {"StartDate": date, "NumberOfOccurrences":
5}}, extended={(PROPERTY_SET_ID, "GestanUID"): "uid-1"})``; ``item()`` answers a dict with the same
names (datetimes aware UTC, booleans, ints, lists), plus ``id``, ``changekey``, ``folder``,
``type``, ``extended`` ({PropertyName or PropertyId: value}), ``exceptions`` ({original start:
fields}) and ``deleted_occurrences``.

Documented simplifications: one mailbox; only calendar items are stored (CalendarItem); attendees
are stored as given but nobody is invited; a series without an end is expanded up to
``horizon_days`` after its start; time zones are read from StartTimeZone's Id (Windows ids, via
exchangelib's table) and periods/transitions are ignored; SortOrder is ignored (FindItem answers
by start, then creation); AutoResolve never merges; one authentication scheme at a time (Exchange
usually offers Negotiate and NTLM together); NTLM passwords may not hold ``:`` (pyspnego's user
file format).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import copy
import functools
import itertools
import os
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import spnego
from dateutil import rrule
from lxml import etree
from spnego.exceptions import SpnegoError

from tests.fakes.loopback import LoopbackServer

SOAPNS = "http://schemas.xmlsoap.org/soap/envelope/"
ANS = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
WSA = "http://www.w3.org/2005/08/addressing"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
AUTODISCOVER_PATH = "/autodiscover/autodiscover.svc"
MNS = "http://schemas.microsoft.com/exchange/services/2006/messages"
TNS = "http://schemas.microsoft.com/exchange/services/2006/types"
ENS = "http://schemas.microsoft.com/exchange/services/2006/errors"
NSMAP = {"s": SOAPNS, "m": MNS, "t": TNS}

# Distinguished property sets (EWS names -> MAPI GUIDs), to compare ExtendedFieldURIs.
DISTINGUISHED_SETS = {
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "Common": "00062008-0000-0000-c000-000000000046",
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Address": "00062004-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "CalendarAssistant": "11000e07-b51b-40d6-af21-caa85edab1d0",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
    "Task": "00062003-0000-0000-c000-000000000046",
}
WELL_KNOWN_FOLDERS = (
    # distinguished id, display name, element, FolderClass, parent
    ("root", "Root", "Folder", None, None),
    ("msgfolderroot", "Top of Information Store", "Folder", "IPF.Note", "root"),
    ("calendar", "Calendar", "CalendarFolder", "IPF.Appointment", "msgfolderroot"),
    ("inbox", "Inbox", "Folder", "IPF.Note", "msgfolderroot"),
    ("contacts", "Contacts", "ContactsFolder", "IPF.Contact", "msgfolderroot"),
    ("tasks", "Tasks", "TasksFolder", "IPF.Task", "msgfolderroot"),
    ("deleteditems", "Deleted Items", "Folder", "IPF.Note", "msgfolderroot"),
)
# Fields the server computes: a client may not set them.
READ_ONLY_FIELDS = {
    "ItemId", "ParentFolderId", "ItemClass", "DateTimeCreated", "LastModifiedTime",
    "CalendarItemType", "IsRecurring", "ModifiedOccurrences", "DeletedOccurrences",
    "OriginalStart", "RecurrenceId", "FirstOccurrence", "LastOccurrence",
}
DEFAULT_FIELDS = {
    "Importance": "Normal", "Sensitivity": "Normal", "ReminderIsSet": "true",
    "ReminderMinutesBeforeStart": "15", "IsAllDayEvent": "false", "LegacyFreeBusyStatus": "Busy",
}
DATETIME_FIELDS = {"Start", "End", "OriginalStart", "RecurrenceId", "DateTimeCreated",
                   "LastModifiedTime"}
BOOL_FIELDS = {"IsAllDayEvent", "ReminderIsSet", "IsRecurring", "IsResponseRequested",
               "AllowNewTimeProposal", "IsMeeting", "IsCancelled"}
INT_FIELDS = {"ReminderMinutesBeforeStart"}
WEEKDAYS = {"Monday": rrule.MO, "Tuesday": rrule.TU, "Wednesday": rrule.WE, "Thursday": rrule.TH,
            "Friday": rrule.FR, "Saturday": rrule.SA, "Sunday": rrule.SU}
GROUP_DAYS = {"Day": list(WEEKDAYS.values()),
              "Weekday": [rrule.MO, rrule.TU, rrule.WE, rrule.TH, rrule.FR],
              "WeekendDay": [rrule.SA, rrule.SU]}
WEEK_INDEX = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}
MONTHS = {name: i for i, name in enumerate(
    ("January", "February", "March", "April", "May", "June", "July", "August", "September",
     "October", "November", "December"), start=1)}
PATTERNS = ("DailyRecurrence", "WeeklyRecurrence", "AbsoluteMonthlyRecurrence",
            "RelativeMonthlyRecurrence", "AbsoluteYearlyRecurrence", "RelativeYearlyRecurrence")
RANGES = ("NoEndRecurrence", "EndDateRecurrence", "NumberedRecurrence")
MESSAGES = {
    "ErrorIrresolvableConflict": "The send or update operation could not be performed because "
                                 "the change key passed in the request does not match the "
                                 "current change key for the item.",
    "ErrorItemNotFound": "The specified object was not found in the store.",
    "ErrorFolderNotFound": "The specified folder could not be found in the store.",
    "ErrorInvalidSyncStateData": "Synchronization state data is corrupt or otherwise invalid.",
    "ErrorServerBusy": "The server cannot service this request right now. Try again later.",
    "ErrorCalendarOccurrenceIsDeletedFromRecurrence":
        "Occurrence with this index was previously deleted from the recurrence.",
    "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange":
        "Occurrence index is out of recurrence range.",
    "ErrorCalendarEndDateIsEarlierThanStartDate": "EndDate is earlier than StartDate",
    "ErrorInvalidPropertySet": "Property is read-only and cannot be set.",
    "ErrorInvalidRecurrence": "The recurrence pattern is invalid.",
}


def _t(name: str) -> str:
    return f"{{{TNS}}}{name}"


def _m(name: str) -> str:
    return f"{{{MNS}}}{name}"


def _local(elem: etree._Element) -> str:
    return etree.QName(elem).localname


def _el(tag: str, text: str | None = None, attrs: dict[str, str] | None = None,
        children: Iterable[etree._Element] = ()) -> etree._Element:
    """An element in the m: or t: namespace (``"t:Subject"``)."""
    prefix, name = tag.split(":", 1)
    elem = etree.Element(f"{{{NSMAP[prefix]}}}{name}", attrib=attrs or {})
    if text is not None:
        elem.text = text
    for child in children:
        elem.append(child)
    return elem


def _fmt(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(value: bool) -> str:
    return "true" if value else "false"


class EwsError(Exception):
    """An error answered in a response message (ResponseClass="Error")."""

    def __init__(self, code: str, text: str | None = None) -> None:
        self.code = code
        self.text = text or MESSAGES.get(code, code)
        super().__init__(f"{code}: {self.text}")


def _parse_dt(value: str | None, tz: ZoneInfo | None = None) -> datetime:
    if not value:
        raise EwsError("ErrorInvalidValueForProperty", "A date/time value is missing.")
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise EwsError("ErrorInvalidValueForProperty", f"Invalid date/time {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz or UTC)
    return dt.astimezone(UTC)


def _parse_date(value: str) -> date:
    text = value.strip()
    if len(text) > 10:  # Exchange may append an offset: 2024-01-01+01:00 or Z
        text = text[:10]
    return date.fromisoformat(text)


def windows_zone(ms_id: str | None) -> ZoneInfo:
    """The IANA zone for a Windows time zone id (exchangelib's table), UTC when unknown."""
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP

    try:
        return ZoneInfo(MS_TIMEZONE_TO_IANA_MAP.get(ms_id or "", "UTC"))
    except Exception:  # noqa: BLE001 - an unknown zone falls back to UTC
        return ZoneInfo("UTC")


@dataclass
class LoggedRequest:
    """One HTTP request as the fake saw it (``count``: items, ids or changes it carried)."""

    service: str
    status: int = 200
    attrs: dict[str, str] = field(default_factory=dict)
    count: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class _Failure:
    kind: str
    back_off_ms: int


@dataclass
class _Folder:
    id: str
    changekey: str
    name: str
    tag: str
    folder_class: str | None
    parent: str | None
    distinguished: str | None = None


@dataclass
class _Exception:
    """A modified occurrence: its own fields overlay the master's (``None`` = field removed)."""

    changekey: str
    fields: dict[str, etree._Element | None] = field(default_factory=dict)
    extended: dict[tuple[str, str, str], etree._Element | None] = field(default_factory=dict)


@dataclass
class _Item:
    id: str
    changekey: str
    folder: str
    created: datetime
    seq: int
    fields: dict[str, etree._Element] = field(default_factory=dict)
    extended: dict[tuple[str, str, str], etree._Element] = field(default_factory=dict)
    exceptions: dict[datetime, _Exception] = field(default_factory=dict)
    deleted: set[datetime] = field(default_factory=set)


@dataclass
class _Target:
    """What an item id names: an item, or one occurrence (by original start) of a series."""

    item: _Item
    original_start: datetime | None = None


@dataclass
class _SyncState:
    folder: str
    known: dict[str, int]


@dataclass
class _Ctx:
    """Per-request context: the requested API version and the TimeZoneContext zone."""

    api_version: str
    tz: ZoneInfo


@dataclass
class _Connection:
    """What one keep-alive connection has established: NTLM authenticates a connection, not
    a request."""

    acceptor: Any = None  # pyspnego's NTLM acceptor, between Challenge and Authenticate
    user: str | None = None  # who completed a handshake on it


_NTLM_LOCK = threading.Lock()


@functools.cache
def _ntlm_user_file() -> str:
    """The file pyspnego's NTLM acceptor reads users from (``NTLM_USER_FILE``, its only way):
    one per process, removed at exit."""
    directory = tempfile.mkdtemp(prefix="fake-ews-ntlm-")
    atexit.register(shutil.rmtree, directory, True)
    return os.path.join(directory, "users")


@contextlib.contextmanager
def _ntlm_users(lines: list[str]) -> Iterator[None]:
    """The acceptor reads the file when made and when it checks an Authenticate: it holds
    ``lines`` (one fake's users, ``DOMAIN:USER:PASSWORD``) only meanwhile, so that fakes of
    one process do not see each other's."""
    with _NTLM_LOCK:
        path = _ntlm_user_file()
        if os.environ.get("NTLM_USER_FILE") != path:
            os.environ["NTLM_USER_FILE"] = path
        with open(path, "w", encoding="utf-8") as users:
            users.write("".join(f"{line}\n" for line in lines))
        try:
            yield
        finally:
            with open(path, "w", encoding="utf-8"):
                pass


def ext_key(uri: etree._Element) -> tuple[str, str, str]:
    """A comparable key for an ExtendedFieldURI (distinguished sets mapped to their GUID)."""
    set_id = uri.get("PropertySetId") or ""
    dist = uri.get("DistinguishedPropertySetId")
    if dist:
        set_id = DISTINGUISHED_SETS.get(dist, dist)
    name = uri.get("PropertyName") or uri.get("PropertyId") or uri.get("PropertyTag") or ""
    if uri.get("PropertyTag"):
        name = hex(int(name, 16) if name.lower().startswith("0x") else int(name))
    return (set_id.lower(), name, uri.get("PropertyType") or "")


class FakeEws(LoopbackServer):
    """Loopback EWS endpoint for one mailbox, served from a background thread."""

    def __init__(self, *, email: str = "alice@example.com", username: str = "alice",
                 password: str = "secret", time_zone: str = "Romance Standard Time",
                 build: tuple[int, int, int, int] = (15, 1, 2507, 6), horizon_days: int = 730,
                 delete_checks_changekey: bool = True, auth: str = "basic") -> None:
        if auth not in ("basic", "ntlm"):
            raise ValueError(auth)
        self.auth = auth
        self.email = email
        self.username = username
        self.password = password
        self.time_zone = time_zone
        self.build = build
        self.horizon_days = horizon_days
        self.delete_checks_changekey = delete_checks_changekey
        self.request_log: list[LoggedRequest] = []
        self.request_count = 0
        self.injected_errors = 0
        self._lock = threading.RLock()
        self._seq = itertools.count(1)
        self._folders: dict[str, _Folder] = {}
        self._items: dict[str, _Item] = {}
        self._sync_states: dict[str, _SyncState] = {}
        self._failures: list[_Failure] = []
        # ThreadingHTTPServer serves each connection in its own thread: the handler keeps
        # there what the connection established (NTLM)
        self._connection = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for dist, name, tag, cls, parent in WELL_KNOWN_FOLDERS:
            self._new_folder(name, tag, cls, self._folder_by_dist(parent) if parent else None,
                             dist)

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The EWS endpoint (``service_endpoint``)."""
        assert self._server is not None, "fake not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/EWS/Exchange.asmx"

    # ------------------------------------------------------------------ test API: folders
    def add_folder(self, name: str, parent: str = "calendar",
                   folder_class: str = "IPF.Appointment") -> str:
        """Create a sub-folder (a calendar by default) as Outlook would; returns its FolderId."""
        with self._lock:
            tag = "CalendarFolder" if folder_class == "IPF.Appointment" else "Folder"
            return self._new_folder(name, tag, folder_class,
                                    self._folders[self.folder_id(parent)]).id

    def folder_id(self, name: str) -> str:
        """The FolderId of a distinguished folder ("calendar") or a folder by display name."""
        with self._lock:
            if name in self._folders:
                return name
            for f in self._folders.values():
                if f.distinguished == name:
                    return f.id
            for f in self._folders.values():
                if f.name.lower() == name.lower():
                    return f.id
            raise KeyError(name)

    def folders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"id": f.id, "name": f.name, "parent": f.parent, "class": f.folder_class,
                     "distinguished": f.distinguished} for f in self._folders.values()]

    # ------------------------------------------------------------------ test API: items
    def add_item(self, folder: str = "calendar", *,
                 extended: dict[tuple[str, str], str] | None = None, **fields: Any) -> str:
        """Create a calendar item as another client (Outlook) would; returns its ItemId."""
        with self._lock:
            elem = _el("t:CalendarItem")
            for name, value in fields.items():
                elem.append(self._field_elem(name, value))
            for (set_id, name), value in (extended or {}).items():
                elem.append(self._ext_elem(set_id, name, value))
            return self._create(elem, self.folder_id(folder), self._default_ctx()).id

    def modify(self, item_id: str, original_start: datetime | None = None, *,
               extended: dict[tuple[str, str], str | None] | None = None, **fields: Any) -> str:
        """Change fields as another client would (``None`` deletes); on ``original_start`` the
        occurrence becomes (or stays) an exception. Returns the new ChangeKey."""
        with self._lock:
            target = self._target_by_id(item_id, original_start)
            ops: list[tuple[str, Any, etree._Element | None]] = []
            for name, value in fields.items():
                elem = None if value is None else self._field_elem(name, value)
                ops.append(("field", name, elem))
            for (set_id, name), value in (extended or {}).items():
                ext = self._ext_elem(set_id, name, value or "")
                key = ext_key(ext[0])
                ops.append(("ext", key, None if value is None else ext))
            return self._apply_update(target, ops, self._default_ctx())

    def delete(self, item_id: str, original_start: datetime | None = None) -> None:
        """Delete an item, a whole series, or one occurrence, as another client would."""
        with self._lock:
            self._delete_target(self._target_by_id(item_id, original_start))

    def item(self, item_id: str) -> dict[str, Any] | None:
        """The stored item (or the occurrence an occurrence id names), decoded; None if gone."""
        with self._lock:
            try:
                target = self._target_by_id(item_id)
            except EwsError:
                return None
            return self._describe(target)

    def items(self, folder: str | None = None) -> list[dict[str, Any]]:
        """Stored items (singles and recurring masters), decoded, in creation order."""
        with self._lock:
            fid = self.folder_id(folder) if folder else None
            return [self._describe(_Target(i)) for i in self._items.values()
                    if fid is None or i.folder == fid]

    def occurrence_id(self, master_id: str, original_start: datetime) -> str:
        """The ItemId Exchange gives the occurrence of ``master_id`` at ``original_start``."""
        return self._occ_id(master_id, original_start.astimezone(UTC))

    def occurrences(self, master_id: str, start: datetime, end: datetime) -> list[datetime]:
        """Original starts of the (not deleted) occurrences of a series within [start, end)."""
        with self._lock:
            item = self._items[master_id]
            return [o for o in self._pattern_starts(item, until=end)
                    if o >= start - self._duration(item) and o not in item.deleted]

    # ------------------------------------------------------------------ test API: faults, log
    def fail_next(self, count: int = 1, kind: str = "busy", *, back_off_ms: int = 50) -> None:
        """Answer the next ``count`` requests with a fault: ``"busy"`` (ErrorServerBusy, a SOAP
        Fault with BackOffMilliseconds), ``"401"`` (as for a wrong password) or ``"500"`` (IIS's
        "Server Error in '/EWS' Application" page)."""
        if kind not in ("busy", "401", "500"):
            raise ValueError(kind)
        with self._lock:
            self._failures.extend(_Failure(kind, back_off_ms) for _ in range(count))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def set_password(self, password: str) -> None:
        """Change the account's password: clients still using the old one get 401."""
        with self._lock:
            self.password = password

    def expire_sync_states(self) -> None:
        """Every SyncState issued so far answers ErrorInvalidSyncStateData from now on."""
        with self._lock:
            self._sync_states.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.request_log.clear()
            self.request_count = 0
            self.injected_errors = 0

    # ------------------------------------------------------------------ HTTP entry
    def _admit(self, headers: dict[str, str]) -> tuple[LoggedRequest, dict[str, str] | None]:
        """Count and log a request, then authenticate it (caller holds the lock): its log
        entry, and the 401's headers when refused."""
        self.request_count += 1
        entry = LoggedRequest(service="?")
        self.request_log.append(entry)
        refusal = self._authenticate(headers.get("authorization", ""))
        if refusal is not None:
            entry.status = 401
        return entry, refusal

    def _handle_http(self, headers: dict[str, str], body: bytes
                     ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            entry, refusal = self._admit(headers)
            if refusal is not None:
                return 401, refusal, b""
            try:
                root = etree.fromstring(body)
                soap_body = root.find(f"{{{SOAPNS}}}Body")
                request = soap_body[0] if soap_body is not None and len(soap_body) else None
            except etree.XMLSyntaxError:
                request = None
            if request is None:
                entry.status = 400
                return 400, {"Content-Type": "text/plain"}, b"Bad SOAP request"
            entry.service = _local(request)
            entry.attrs = dict(request.attrib)
            if self._failures:
                failure = self._failures.pop(0)
                self.injected_errors += 1
                entry.status = 401 if failure.kind == "401" else 500
                entry.errors.append(failure.kind)
                return self._failure_reply(failure)
            ctx = self._context(root)
            handler = getattr(self, f"_svc_{entry.service}", None)
            if handler is None:
                entry.status = 500
                return 500, _XML, self._fault("ErrorInvalidOperation",
                                              f"{entry.service} is not supported by the fake")
            messages = handler(request, ctx, entry)
            entry.errors.extend(m.findtext(_m("ResponseCode")) or "" for m in messages
                                if m.get("ResponseClass") != "Success")
            return 200, _XML, self._envelope(entry.service, messages, ctx)

    # ------------------------------------------------------------------ SOAP autodiscover
    def _handle_autodiscover(self, headers: dict[str, str], body: bytes
                             ) -> tuple[int, dict[str, str], bytes]:
        """GetUserSettings at /autodiscover/autodiscover.svc (what exchangelib's autodiscover
        asks), behind the same authentication as EWS: this mailbox's settings, InvalidUser
        for any other."""
        with self._lock:
            entry, refusal = self._admit(headers)
            if refusal is not None:
                return 401, refusal, b""
            try:
                request = etree.fromstring(body).find(
                    f"{{{SOAPNS}}}Body/{{{ANS}}}GetUserSettingsRequestMessage/{{{ANS}}}Request")
            except etree.XMLSyntaxError:
                request = None
            if request is None:
                entry.status = 400
                return 400, {"Content-Type": "text/plain"}, b"Bad SOAP request"
            entry.service = "GetUserSettings"
            users = [m.text or "" for m in request.iter(f"{{{ANS}}}Mailbox")]
            wanted = [s.text or "" for s in request.iter(f"{{{ANS}}}Setting")]
            return 200, _XML, self._user_settings(users, wanted)

    def _known_settings(self) -> dict[str, str]:
        return {"UserDisplayName": self.email.split("@")[0], "AutoDiscoverSMTPAddress": self.email,
                "InternalEwsUrl": self.url, "ExternalEwsUrl": self.url,
                "EwsSupportedSchemas": "Exchange2007, Exchange2007_SP1, Exchange2010, "
                                       "Exchange2010_SP1, Exchange2010_SP2, Exchange2013, "
                                       "Exchange2013_SP1, Exchange2016"}

    def _user_settings(self, users: list[str], wanted: list[str]) -> bytes:
        """The documented GetUserSettingsResponseMessage: a setting this server lacks is a
        UserSettingError (SettingIsNotAvailable), as Exchange answers."""
        def a(name: str, text: str | None = None, children: Iterable[etree._Element] = (),
              attrs: dict[str, str] | None = None) -> etree._Element:
            elem = etree.Element(f"{{{ANS}}}{name}", attrib=attrs or {})
            elem.text = text
            elem.extend(children)
            return elem

        known = self._known_settings()
        responses = []
        for user in users:
            if user.lower() != self.email.lower():
                responses.append(a("UserResponse", children=[
                    a("ErrorCode", "InvalidUser"),
                    a("ErrorMessage", f"The e-mail address cannot be found: {user}"),
                    a("UserSettingErrors"), a("UserSettings")]))
                continue
            settings = [a("UserSetting", attrs={f"{{{XSI}}}type": "StringSetting"}, children=[
                a("Name", name), a("Value", known[name])]) for name in wanted if name in known]
            errors = [a("UserSettingError", children=[
                a("ErrorCode", "SettingIsNotAvailable"),
                a("ErrorMessage", "User setting is not available."), a("SettingName", name)])
                for name in wanted if name not in known]
            responses.append(a("UserResponse", children=[
                a("ErrorCode", "NoError"), a("ErrorMessage", "No error."),
                a("UserSettingErrors", children=errors), a("UserSettings", children=settings)]))
        env = etree.Element(f"{{{SOAPNS}}}Envelope", nsmap={"s": SOAPNS, "a": WSA, "i": XSI})
        header = etree.SubElement(env, f"{{{SOAPNS}}}Header")
        action = etree.SubElement(header, f"{{{WSA}}}Action")
        action.text = f"{ANS}/Autodiscover/GetUserSettingsResponse"
        body = etree.SubElement(env, f"{{{SOAPNS}}}Body")
        body.append(a("GetUserSettingsResponseMessage", children=[a("Response", children=[
            a("ErrorCode", "NoError"), a("ErrorMessage"),
            a("UserResponses", children=responses)])]))
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    # ------------------------------------------------------------------ authentication
    def _challenge(self) -> dict[str, str]:
        return {"WWW-Authenticate": "NTLM" if self.auth == "ntlm" else 'Basic realm="127.0.0.1"'}

    def _authenticate(self, header: str) -> dict[str, str] | None:
        """None when the request may go on, else the 401's headers."""
        if self.auth == "ntlm":
            conn = getattr(self._connection, "state", None) or _Connection()
            return self._ntlm_step(header, conn)
        return None if self._basic_authorized(header) else self._challenge()

    def _basic_authorized(self, header: str) -> bool:
        if not header.lower().startswith("basic "):
            return False
        try:
            user, _, pwd = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user.split("\\")[-1] in (self.username, self.email) and pwd == self.password

    def _ntlm_step(self, header: str, conn: _Connection) -> dict[str, str] | None:
        """One leg of the NTLM handshake of ``conn``: a Negotiate is answered with a
        Challenge, an Authenticate authenticates the connection or is refused."""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "ntlm" or not token.strip():
            if not header and conn.user is not None:
                return None  # the connection is authenticated already
            conn.acceptor = conn.user = None
            return self._challenge()
        if conn.acceptor is None or conn.acceptor.complete:
            conn.acceptor, conn.user = None, None
        try:
            with _ntlm_users(self._ntlm_lines()):
                if conn.acceptor is None:
                    conn.acceptor = spnego.server(protocol="ntlm",
                                                  options=spnego.NegotiateOptions.use_ntlm)
                answer = conn.acceptor.step(base64.b64decode(token))
        except (SpnegoError, ValueError):
            conn.acceptor = None
            return self._challenge()
        if answer:
            return {"WWW-Authenticate": f"NTLM {base64.b64encode(answer).decode()}"}
        conn.user = conn.acceptor.client_principal
        return None

    def _ntlm_lines(self) -> list[str]:
        """The account in pyspnego's user file format: as DOMAIN\\user (or user) and as its
        e-mail address (UPN)."""
        if ":" in self.password:
            raise ValueError("an NTLM password of the fake may not hold ':'")
        domain, _, user = self.username.rpartition("\\")
        return [f"{domain}:{user}:{self.password}", f":{self.email}:{self.password}"]

    def _failure_reply(self, failure: _Failure) -> tuple[int, dict[str, str], bytes]:
        if failure.kind == "401":
            return 401, self._challenge(), b""
        if failure.kind == "500":
            page = b"<html><body><h1>Server Error in '/EWS' Application.</h1></body></html>"
            return 500, {"Content-Type": "text/html"}, page
        return 500, _XML, self._fault("ErrorServerBusy", back_off_ms=failure.back_off_ms)

    def _context(self, root: etree._Element) -> _Ctx:
        header = root.find(f"{{{SOAPNS}}}Header")
        version, tz = "Exchange2016", windows_zone(self.time_zone)
        if header is not None:
            rsv = header.find(_t("RequestServerVersion"))
            if rsv is not None:
                version = rsv.get("Version", version)
            tzd = header.find(f"{_t('TimeZoneContext')}/{_t('TimeZoneDefinition')}")
            if tzd is not None:
                tz = windows_zone(tzd.get("Id"))
        return _Ctx(version, tz)

    def _default_ctx(self) -> _Ctx:
        return _Ctx("Exchange2016", windows_zone(self.time_zone))

    def _version_header(self, ctx: _Ctx) -> etree._Element:
        major, minor, major_build, minor_build = self.build
        return _el("t:ServerVersionInfo", attrs={
            "MajorVersion": str(major), "MinorVersion": str(minor),
            "MajorBuildNumber": str(major_build), "MinorBuildNumber": str(minor_build),
            "Version": ctx.api_version})

    def _envelope(self, service: str, messages: list[etree._Element], ctx: _Ctx) -> bytes:
        env = etree.Element(f"{{{SOAPNS}}}Envelope", nsmap=NSMAP)
        header = etree.SubElement(env, f"{{{SOAPNS}}}Header")
        header.append(self._version_header(ctx))
        body = etree.SubElement(env, f"{{{SOAPNS}}}Body")
        body.append(_el(f"m:{service}Response", children=[_el("m:ResponseMessages",
                                                               children=messages)]))
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    def _fault(self, code: str, text: str | None = None, back_off_ms: int | None = None) -> bytes:
        text = text or MESSAGES.get(code, code)
        env = etree.Element(f"{{{SOAPNS}}}Envelope", nsmap=NSMAP)
        header = etree.SubElement(env, f"{{{SOAPNS}}}Header")
        header.append(self._version_header(self._default_ctx()))
        fault = etree.SubElement(etree.SubElement(env, f"{{{SOAPNS}}}Body"), f"{{{SOAPNS}}}Fault")
        etree.SubElement(fault, "faultcode").text = f"t:{code}"
        etree.SubElement(fault, "faultstring").text = text
        detail = etree.SubElement(fault, "detail")
        etree.SubElement(detail, f"{{{ENS}}}ResponseCode", nsmap={"e": ENS}).text = code
        etree.SubElement(detail, f"{{{ENS}}}Message", nsmap={"e": ENS}).text = text
        if back_off_ms is not None:
            detail.append(_el("t:MessageXml", children=[
                _el("t:Value", str(back_off_ms), {"Name": "BackOffMilliseconds"})]))
        return etree.tostring(env, xml_declaration=True, encoding="utf-8")

    @staticmethod
    def _message(service: str, children: Iterable[etree._Element] = (),
                 error: EwsError | None = None) -> etree._Element:
        msg = _el(f"m:{service}ResponseMessage",
                  attrs={"ResponseClass": "Error" if error else "Success"})
        if error:
            msg.append(_el("m:MessageText", error.text))
            msg.append(_el("m:ResponseCode", error.code))
            msg.append(_el("m:DescriptiveLinkKey", "0"))
        else:
            msg.append(_el("m:ResponseCode", "NoError"))
        for child in children:
            msg.append(child)
        return msg

    # ------------------------------------------------------------------ folders
    def _new_folder(self, name: str, tag: str, folder_class: str | None, parent: _Folder | None,
                    distinguished: str | None = None) -> _Folder:
        folder = _Folder(self._new_id("F"), self._new_changekey(), name, tag, folder_class,
                         parent.id if parent else None, distinguished)
        self._folders[folder.id] = folder
        return folder

    def _folder_by_dist(self, dist: str) -> _Folder:
        return next(f for f in self._folders.values() if f.distinguished == dist)

    def _resolve_folder(self, elem: etree._Element) -> _Folder:
        """A FolderId or DistinguishedFolderId element -> the folder."""
        if _local(elem) == "DistinguishedFolderId":
            mailbox = elem.findtext(f"{_t('Mailbox')}/{_t('EmailAddress')}")
            if mailbox and mailbox.lower() != self.email.lower():
                raise EwsError("ErrorNonExistentMailbox",
                               f"The SMTP address has no mailbox associated with it: {mailbox}")
            try:
                return self._folder_by_dist(elem.get("Id", ""))
            except StopIteration:
                raise EwsError("ErrorFolderNotFound") from None
        folder = self._folders.get(elem.get("Id", ""))
        if folder is None:
            raise EwsError("ErrorFolderNotFound")
        return folder

    def _folder_elem(self, folder: _Folder) -> etree._Element:
        children = [f for f in self._folders.values() if f.parent == folder.id]
        elem = _el(f"t:{folder.tag}", children=[
            _el("t:FolderId", attrs={"Id": folder.id, "ChangeKey": folder.changekey})])
        if folder.parent:
            parent = self._folders[folder.parent]
            elem.append(_el("t:ParentFolderId", attrs={"Id": parent.id,
                                                         "ChangeKey": parent.changekey}))
        if folder.folder_class:
            elem.append(_el("t:FolderClass", folder.folder_class))
        elem.append(_el("t:DisplayName", folder.name))
        count = sum(1 for i in self._items.values() if i.folder == folder.id)
        elem.append(_el("t:TotalCount", str(count)))
        elem.append(_el("t:ChildFolderCount", str(len(children))))
        if folder.tag == "Folder":
            elem.append(_el("t:UnreadCount", "0"))
        if folder.distinguished and folder.distinguished != "root":
            elem.append(_el("t:DistinguishedFolderId", folder.distinguished))
        return elem

    def _svc_GetFolder(self, req: etree._Element, ctx: _Ctx,
                       entry: LoggedRequest) -> list[etree._Element]:
        out = []
        ids = list(req.find(_m("FolderIds")))
        entry.count = len(ids)
        for fid in ids:
            try:
                folder = self._resolve_folder(fid)
                out.append(self._message("GetFolder", [_el("m:Folders", children=[
                    self._folder_elem(folder)])]))
            except EwsError as err:
                out.append(self._message("GetFolder", error=err))
        return out

    def _svc_FindFolder(self, req: etree._Element, ctx: _Ctx,
                        entry: LoggedRequest) -> list[etree._Element]:
        deep = req.get("Traversal") == "Deep"
        view = req.find(_m("IndexedPageFolderView"))
        restriction = req.find(_m("Restriction"))
        out = []
        for pid in req.find(_m("ParentFolderIds")):
            try:
                parent = self._resolve_folder(pid)
            except EwsError as err:
                out.append(self._message("FindFolder", error=err))
                continue
            found = list(self._descendants(parent.id, deep))
            if restriction is not None and len(restriction):
                found = [f for f in found
                         if self._matches(restriction[0], lambda u, f=f: self._folder_value(f, u))]
            page, attrs = self._page(found, view)
            out.append(self._message("FindFolder", [_el("m:RootFolder", attrs=attrs, children=[
                _el("t:Folders", children=[self._folder_elem(f) for f in page])])]))
        return out

    def _descendants(self, parent_id: str, deep: bool) -> Iterator[_Folder]:
        for f in list(self._folders.values()):
            if f.parent == parent_id:
                yield f
                if deep:
                    yield from self._descendants(f.id, deep)

    @staticmethod
    def _folder_value(folder: _Folder, uri: etree._Element) -> list[str]:
        name = (uri.get("FieldURI") or "").split(":")[-1]
        value = {"DisplayName": folder.name, "FolderClass": folder.folder_class}.get(name)
        return [] if value is None else [value]

    @staticmethod
    def _page(found: list[Any], view: etree._Element | None
              ) -> tuple[list[Any], dict[str, str]]:
        offset = int(view.get("Offset", "0")) if view is not None else 0
        size = int(view.get("MaxEntriesReturned", "0") or 0) if view is not None else 0
        if view is not None and view.get("BasePoint") == "End":
            offset = max(len(found) - offset - (size or len(found)), 0)
        page = found[offset:offset + size] if size else found[offset:]
        end = offset + len(page)
        last = end >= len(found)
        attrs = {"TotalItemsInView": str(len(found)), "IncludesLastItemInRange": _bool(last)}
        if not last:
            attrs["IndexedPagingOffset"] = str(end)
        return page, attrs

    # ------------------------------------------------------------------ ids and keys
    def _new_id(self, kind: str) -> str:
        return "AAMk" + kind + base64.b64encode(secrets.token_bytes(33)).decode()

    def _new_changekey(self) -> str:
        return "DwAAABYAAAA" + base64.b64encode(
            next(self._seq).to_bytes(4, "big") + secrets.token_bytes(8)).decode()

    @staticmethod
    def _occ_id(master_id: str, original_start: datetime) -> str:
        raw = f"{master_id}|{_fmt(original_start)}".encode()
        return "AAMkOcc" + base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def _split_occ_id(item_id: str) -> tuple[str, datetime] | None:
        if not item_id.startswith("AAMkOcc"):
            return None
        try:
            master, _, stamp = base64.urlsafe_b64decode(item_id[7:]).decode().partition("|")
            return master, _parse_dt(stamp)
        except (ValueError, EwsError):
            return None

    def _target_by_id(self, item_id: str, original_start: datetime | None = None) -> _Target:
        occ = self._split_occ_id(item_id)
        if occ:
            item_id, original_start = occ
        item = self._items.get(item_id)
        if item is None:
            raise EwsError("ErrorItemNotFound")
        if original_start is None:
            return _Target(item)
        original_start = original_start.astimezone(UTC)
        if "Recurrence" not in item.fields:
            raise EwsError("ErrorItemNotFound")
        if original_start in item.deleted:
            raise EwsError("ErrorCalendarOccurrenceIsDeletedFromRecurrence")
        if original_start not in self._pattern_starts(item, until=original_start + timedelta(
                seconds=1)):
            raise EwsError("ErrorItemNotFound")
        return _Target(item, original_start)

    def _resolve_item_id(self, elem: etree._Element) -> tuple[_Target, str | None]:
        """An ItemId / OccurrenceItemId / RecurringMasterItemId -> (target, the ChangeKey to
        check). The ChangeKey of an OccurrenceItemId is the master's as the client last saw it,
        so it is not checked (an exception made since changes the master's ChangeKey)."""
        kind = _local(elem)
        if kind == "OccurrenceItemId":
            item = self._items.get(elem.get("RecurringMasterId", ""))
            if item is None or "Recurrence" not in item.fields:
                raise EwsError("ErrorItemNotFound")
            index = int(elem.get("InstanceIndex", "0"))
            starts = self._pattern_starts(item, count=index)
            if index < 1 or len(starts) < index:
                raise EwsError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange")
            start = starts[index - 1]
            if start in item.deleted:
                raise EwsError("ErrorCalendarOccurrenceIsDeletedFromRecurrence")
            return _Target(item, start), None
        if kind == "RecurringMasterItemId":
            target = self._target_by_id(elem.get("OccurrenceId", ""))
            return _Target(target.item), elem.get("ChangeKey")
        return self._target_by_id(elem.get("Id", "")), elem.get("ChangeKey")

    @staticmethod
    def _changekey_of(target: _Target) -> str:
        if target.original_start is not None:
            exc = target.item.exceptions.get(target.original_start)
            if exc is not None:
                return exc.changekey
        return target.item.changekey

    # ------------------------------------------------------------------ field helpers
    def _field_elem(self, name: str, value: Any) -> etree._Element:
        """A t: element for a field given as a Python value (test API)."""
        if name in ("StartTimeZone", "EndTimeZone"):
            return _el(f"t:{name}", attrs={"Id": str(value)})
        if name == "Categories":
            return _el("t:Categories", children=[_el("t:String", str(v)) for v in value])
        if name == "Body":
            return _el("t:Body", str(value), {"BodyType": "Text"})
        if name == "Recurrence":
            rec = _el("t:Recurrence")
            for part, values in value.items():
                rec.append(_el(f"t:{part}", children=[
                    _el(f"t:{k}", v.isoformat() if isinstance(v, date) else str(v))
                    for k, v in values.items()]))
            return rec
        if isinstance(value, bool):
            return _el(f"t:{name}", _bool(value))
        if isinstance(value, datetime):
            return _el(f"t:{name}", _fmt(value))
        return _el(f"t:{name}", str(value))

    @staticmethod
    def _ext_elem(set_id: str, name: str, value: str) -> etree._Element:
        attrs = {"PropertyName": name, "PropertyType": "String"}
        if set_id in DISTINGUISHED_SETS:
            attrs["DistinguishedPropertySetId"] = set_id
        else:
            attrs["PropertySetId"] = set_id
        return _el("t:ExtendedProperty", children=[_el("t:ExtendedFieldURI", attrs=attrs),
                                                   _el("t:Value", value)])

    def _normalize_field(self, elem: etree._Element, ctx: _Ctx) -> etree._Element:
        """A stored copy of a client's field element (times to UTC, tz ids checked)."""
        elem = copy.deepcopy(elem)
        name = _local(elem)
        if name in ("Start", "End"):
            elem.text = _fmt(_parse_dt(elem.text, ctx.tz))
        elif name in BOOL_FIELDS:
            # exchangelib writes xs:boolean as 1/0 but reads only true/false, as Exchange answers.
            elem.text = _bool((elem.text or "").strip().lower() in ("1", "true"))
        elif name == "Recurrence":
            self._parse_recurrence(elem)  # validates
        return elem

    def _parse_recurrence(self, rec: etree._Element) -> tuple[etree._Element, etree._Element]:
        pattern = next((c for c in rec if _local(c) in PATTERNS), None)
        boundary = next((c for c in rec if _local(c) in RANGES), None)
        if pattern is None or boundary is None or boundary.findtext(_t("StartDate")) is None:
            raise EwsError("ErrorInvalidRecurrence")
        return pattern, boundary

    # ------------------------------------------------------------------ recurrence
    def _zone_of(self, item: _Item) -> ZoneInfo:
        tz_elem = item.fields.get("StartTimeZone")
        return windows_zone(tz_elem.get("Id") if tz_elem is not None else self.time_zone)

    @staticmethod
    def _start(item: _Item) -> datetime:
        return _parse_dt(item.fields["Start"].text)

    def _duration(self, item: _Item) -> timedelta:
        return _parse_dt(item.fields["End"].text) - self._start(item)

    def _pattern_starts(self, item: _Item, *, until: datetime | None = None,
                        count: int | None = None) -> list[datetime]:
        """Original starts (UTC) of the series' occurrences, deleted ones included."""
        pattern, boundary = self._parse_recurrence(item.fields["Recurrence"])
        tz = self._zone_of(item)
        local_start = self._start(item).astimezone(tz)
        first_day = _parse_date(boundary.findtext(_t("StartDate")) or "")
        dtstart = datetime.combine(first_day, local_start.time().replace(tzinfo=None))
        kind = _local(pattern)

        def text(name: str, default: str = "") -> str:
            return (pattern.findtext(_t(name)) or default).strip()

        kwargs: dict[str, Any] = {"dtstart": dtstart, "interval": int(text("Interval", "1"))}
        freq = rrule.DAILY
        if kind == "WeeklyRecurrence":
            freq = rrule.WEEKLY
            kwargs["byweekday"] = [WEEKDAYS[d] for d in text("DaysOfWeek").split()]
            kwargs["wkst"] = WEEKDAYS.get(text("FirstDayOfWeek", "Monday"), rrule.MO)
        elif kind in ("AbsoluteMonthlyRecurrence", "AbsoluteYearlyRecurrence"):
            freq = rrule.MONTHLY if kind.endswith("MonthlyRecurrence") else rrule.YEARLY
            day = int(text("DayOfMonth"))
            # Exchange uses the last day of shorter months for days 29-31.
            kwargs["bymonthday"] = [day, -1] if day >= 29 else [day]
            if day >= 29:
                kwargs["bysetpos"] = 1
            if freq == rrule.YEARLY:
                kwargs["bymonth"] = MONTHS[text("Month")]
                kwargs.pop("interval")
        elif kind in ("RelativeMonthlyRecurrence", "RelativeYearlyRecurrence"):
            freq = rrule.MONTHLY if kind.startswith("RelativeMonthly") else rrule.YEARLY
            nth = WEEK_INDEX[text("DayOfWeekIndex")]
            day_name = text("DaysOfWeek")
            if day_name in GROUP_DAYS:
                kwargs["byweekday"] = GROUP_DAYS[day_name]
                kwargs["bysetpos"] = nth
            else:
                kwargs["byweekday"] = WEEKDAYS[day_name](nth)
            if freq == rrule.YEARLY:
                kwargs["bymonth"] = MONTHS[text("Month")]
                kwargs.pop("interval")
        range_kind = _local(boundary)
        if range_kind == "NumberedRecurrence":
            kwargs["count"] = int(boundary.findtext(_t("NumberOfOccurrences")) or "1")
        elif range_kind == "EndDateRecurrence":
            end_day = _parse_date(boundary.findtext(_t("EndDate")) or "")
            kwargs["until"] = datetime.combine(end_day, time(23, 59, 59))
        horizon = dtstart + timedelta(days=self.horizon_days)
        out: list[datetime] = []
        for occ in rrule.rrule(freq, **kwargs):
            if occ > horizon:
                break
            start = occ.replace(tzinfo=tz).astimezone(UTC)
            if until is not None and start >= until:
                break
            out.append(start)
            if count is not None and len(out) >= count:
                break
        return out

    # ------------------------------------------------------------------ rendering
    def _full_fields(self, target: _Target) -> tuple[dict[str, etree._Element],
                                                     dict[tuple[str, str, str], etree._Element]]:
        """Every field of an item or occurrence view, computed fields included."""
        item = target.item
        fields = dict(item.fields)
        extended = dict(item.extended)
        folder = self._folders[item.folder]
        computed: dict[str, etree._Element] = {
            "ParentFolderId": _el("t:ParentFolderId", attrs={"Id": folder.id,
                                                              "ChangeKey": folder.changekey}),
            "ItemClass": _el("t:ItemClass", "IPM.Appointment"),
            "DateTimeCreated": _el("t:DateTimeCreated", _fmt(item.created)),
        }
        recurring = "Recurrence" in fields
        if target.original_start is None:
            computed["CalendarItemType"] = _el("t:CalendarItemType",
                                               "RecurringMaster" if recurring else "Single")
            computed["IsRecurring"] = _el("t:IsRecurring", "false")
            if recurring:
                computed.update(self._occurrence_lists(item))
        else:
            exc = item.exceptions.get(target.original_start)
            for name in ("Recurrence", "ModifiedOccurrences", "DeletedOccurrences"):
                fields.pop(name, None)
            start = target.original_start
            fields["Start"] = _el("t:Start", _fmt(start))
            fields["End"] = _el("t:End", _fmt(start + self._duration(item)))
            if exc is not None:
                for name, value in exc.fields.items():
                    if value is None:
                        fields.pop(name, None)
                    else:
                        fields[name] = value
                for key, ext in exc.extended.items():
                    if ext is None:
                        extended.pop(key, None)
                    else:
                        extended[key] = ext
            computed["CalendarItemType"] = _el("t:CalendarItemType",
                                               "Exception" if exc else "Occurrence")
            computed["IsRecurring"] = _el("t:IsRecurring", "true")
            computed["OriginalStart"] = _el("t:OriginalStart", _fmt(start))
            computed["RecurrenceId"] = _el("t:RecurrenceId", _fmt(start))
        fields.update(computed)
        return fields, extended

    def _occurrence_lists(self, item: _Item) -> dict[str, etree._Element]:
        out: dict[str, etree._Element] = {}
        if item.exceptions:
            occs = []
            for original, exc in sorted(item.exceptions.items()):
                fields, _ = self._full_fields(_Target(item, original))
                occs.append(_el("t:Occurrence", children=[
                    _el("t:ItemId", attrs={"Id": self._occ_id(item.id, original),
                                           "ChangeKey": exc.changekey}),
                    copy.deepcopy(fields["Start"]), copy.deepcopy(fields["End"]),
                    _el("t:OriginalStart", _fmt(original))]))
            out["ModifiedOccurrences"] = _el("t:ModifiedOccurrences", children=occs)
        if item.deleted:
            out["DeletedOccurrences"] = _el("t:DeletedOccurrences", children=[
                _el("t:DeletedOccurrence", children=[_el("t:Start", _fmt(d))])
                for d in sorted(item.deleted)])
        return out

    def _render(self, target: _Target, shape: etree._Element | None) -> etree._Element:
        """A t:CalendarItem for a response, honouring the ItemShape (BaseShape +
        AdditionalProperties); extended properties only when asked for."""
        base = shape.findtext(_t("BaseShape")) if shape is not None else "AllProperties"
        fields, extended = self._full_fields(target)
        item_id = (self._occ_id(target.item.id, target.original_start)
                   if target.original_start is not None else target.item.id)
        elem = _el("t:CalendarItem", children=[
            _el("t:ItemId", attrs={"Id": item_id, "ChangeKey": self._changekey_of(target)})])
        wanted: list[str] = []
        wanted_ext: list[tuple[str, str, str]] = []
        if base in ("Default", "AllProperties"):
            wanted.extend(fields)
        extra = shape.find(_t("AdditionalProperties")) if shape is not None else None
        for uri in extra if extra is not None else ():
            if _local(uri) == "ExtendedFieldURI":
                wanted_ext.append(ext_key(uri))
            elif _local(uri) == "FieldURI":
                wanted.append((uri.get("FieldURI") or "").split(":")[-1])
        for name in dict.fromkeys(wanted):
            if name in fields and name != "ItemId":
                elem.append(copy.deepcopy(fields[name]))
        for key in dict.fromkeys(wanted_ext):
            if key in extended:
                elem.append(copy.deepcopy(extended[key]))
        return elem

    def _describe(self, target: _Target) -> dict[str, Any]:
        fields, extended = self._full_fields(target)
        out: dict[str, Any] = {
            "id": (self._occ_id(target.item.id, target.original_start)
                   if target.original_start else target.item.id),
            "changekey": self._changekey_of(target),
            "folder": self._folders[target.item.folder].name,
            "type": fields["CalendarItemType"].text,
        }
        for name, elem in fields.items():
            if name in ("ParentFolderId", "CalendarItemType", "ModifiedOccurrences",
                        "DeletedOccurrences"):
                continue
            out[name] = self._decode(elem)
        out["extended"] = {key[1]: ext.findtext(_t("Value")) for key, ext in extended.items()}
        if target.original_start is None:
            out["exceptions"] = {o: self._describe(_Target(target.item, o))
                                 for o in sorted(target.item.exceptions)}
            out["deleted_occurrences"] = sorted(target.item.deleted)
        return out

    @staticmethod
    def _decode(elem: etree._Element) -> Any:
        name = _local(elem)
        if name in DATETIME_FIELDS:
            return _parse_dt(elem.text)
        if name in BOOL_FIELDS:
            return (elem.text or "").strip() == "true"
        if name in INT_FIELDS:
            return int(elem.text or "0")
        if name in ("StartTimeZone", "EndTimeZone", "MeetingTimeZone"):
            return elem.get("Id")
        if name == "Categories":
            return [s.text for s in elem]
        if name == "Recurrence":
            return {_local(part): {_local(c): c.text for c in part} for part in elem}
        if len(elem):
            return etree.tostring(elem, encoding="unicode")
        return elem.text or ""

    # ------------------------------------------------------------------ write paths
    def _create(self, elem: etree._Element, folder_id: str, ctx: _Ctx) -> _Item:
        if _local(elem) != "CalendarItem":
            raise EwsError("ErrorInvalidItemForOperationCreateItem",
                           f"The fake stores calendar items only, not {_local(elem)}.")
        now = datetime.now(UTC)
        item = _Item(self._new_id("I"), self._new_changekey(), folder_id, now, next(self._seq))
        for child in elem:
            name = _local(child)
            if name == "ExtendedProperty":
                uri = child.find(_t("ExtendedFieldURI"))
                item.extended[ext_key(uri)] = copy.deepcopy(child)
            elif name in READ_ONLY_FIELDS:
                raise EwsError("ErrorInvalidPropertySet", f"{name} is read-only.")
            else:
                item.fields[name] = self._normalize_field(child, ctx)
        if "Start" not in item.fields or "End" not in item.fields:
            raise EwsError("ErrorMissingInformation", "Start and End are required.")
        self._check_times(item.fields)
        for name, value in DEFAULT_FIELDS.items():
            item.fields.setdefault(name, _el(f"t:{name}", value))
        for name in ("StartTimeZone", "EndTimeZone"):
            item.fields.setdefault(name, _el(f"t:{name}", attrs={"Id": self.time_zone}))
        item.fields.setdefault("UID", _el("t:UID", "040000008200E00074C5B7101A82E008"
                                          + uuid.uuid4().hex.upper()))
        item.fields["LastModifiedTime"] = _el("t:LastModifiedTime", _fmt(now))
        self._items[item.id] = item
        return item

    @staticmethod
    def _check_times(fields: dict[str, etree._Element | None]) -> None:
        start, end = fields.get("Start"), fields.get("End")
        if start is not None and end is not None and _parse_dt(end.text) < _parse_dt(start.text):
            raise EwsError("ErrorCalendarEndDateIsEarlierThanStartDate")

    def _touch(self, item: _Item) -> str:
        item.changekey = self._new_changekey()
        item.seq = next(self._seq)
        item.fields["LastModifiedTime"] = _el("t:LastModifiedTime", _fmt(datetime.now(UTC)))
        return item.changekey

    def _apply_update(self, target: _Target,
                      ops: list[tuple[str, Any, etree._Element | None]], ctx: _Ctx) -> str:
        """Apply set/delete operations to an item or an occurrence; returns the new ChangeKey.
        ``ops``: ("field", local name, element or None) / ("ext", key, element or None)."""
        item = target.item
        if target.original_start is not None:
            exc = item.exceptions.get(target.original_start)
            fields: dict[str, Any] = dict(exc.fields) if exc else {}
            extended: dict[Any, Any] = dict(exc.extended) if exc else {}
        else:
            fields, extended = dict(item.fields), dict(item.extended)
        for kind, key, elem in ops:
            if kind == "ext":
                if elem is None:
                    if target.original_start is not None:
                        extended[key] = None
                    else:
                        extended.pop(key, None)
                else:
                    extended[key] = copy.deepcopy(elem)
                continue
            if key in READ_ONLY_FIELDS or (target.original_start is not None
                                           and key in ("Recurrence", "UID")):
                raise EwsError("ErrorInvalidPropertySet", f"{key} cannot be set here.")
            if elem is None:
                if key in ("Start", "End", "UID"):
                    raise EwsError("ErrorInvalidPropertyDelete", f"{key} cannot be deleted.")
                if target.original_start is not None:
                    fields[key] = None
                else:
                    fields.pop(key, None)
            else:
                fields[key] = self._normalize_field(elem, ctx)
        if target.original_start is not None:
            merged, _ = self._full_fields(target)
            for name in ("Start", "End"):
                if fields.get(name) is not None:
                    merged[name] = fields[name]
            self._check_times(merged)
            new = _Exception(self._new_changekey(), fields, extended)
            item.exceptions[target.original_start] = new
            self._touch(item)
            return new.changekey
        self._check_times(fields)
        # Setting the pattern, or moving the master's times, drops every exception and
        # deleted occurrence, as Outlook warns ("exceptions ... will be lost").
        reset = any(kind == "field" and key == "Recurrence" for kind, key, _ in ops)
        if "Recurrence" in item.fields and any(
                etree.tostring(fields[name]) != etree.tostring(item.fields[name])
                for name in ("Start", "End")):
            reset = True
        if reset or ("Recurrence" in fields) != ("Recurrence" in item.fields):
            item.exceptions.clear()
            item.deleted.clear()
        item.fields, item.extended = fields, extended
        return self._touch(item)

    def _delete_target(self, target: _Target) -> None:
        item = target.item
        if target.original_start is None:
            del self._items[item.id]
            return
        item.exceptions.pop(target.original_start, None)
        item.deleted.add(target.original_start)
        self._touch(item)

    # ------------------------------------------------------------------ item services
    def _svc_CreateItem(self, req: etree._Element, ctx: _Ctx,
                        entry: LoggedRequest) -> list[etree._Element]:
        saved = req.find(_m("SavedItemFolderId"))
        items = list(req.find(_m("Items")))
        entry.count = len(items)
        try:
            folder = (self._resolve_folder(saved[0]) if saved is not None
                      else self._folder_by_dist("calendar"))
        except EwsError as err:
            return [self._message("CreateItem", error=err) for _ in items]
        out = []
        for elem in items:
            try:
                item = self._create(elem, folder.id, ctx)
                out.append(self._message("CreateItem", [_el("m:Items", children=[
                    _el("t:CalendarItem", children=[_el("t:ItemId", attrs={
                        "Id": item.id, "ChangeKey": item.changekey})])])]))
            except EwsError as err:
                out.append(self._message("CreateItem", [_el("m:Items")], error=err))
        return out

    def _svc_GetItem(self, req: etree._Element, ctx: _Ctx,
                     entry: LoggedRequest) -> list[etree._Element]:
        shape = req.find(_m("ItemShape"))
        ids = list(req.find(_m("ItemIds")))
        entry.count = len(ids)
        out = []
        for id_elem in ids:
            try:
                target, _ = self._resolve_item_id(id_elem)
                out.append(self._message("GetItem", [_el("m:Items", children=[
                    self._render(target, shape)])]))
            except EwsError as err:
                out.append(self._message("GetItem", [_el("m:Items")], error=err))
        return out

    def _svc_UpdateItem(self, req: etree._Element, ctx: _Ctx,
                        entry: LoggedRequest) -> list[etree._Element]:
        resolution = req.get("ConflictResolution", "AutoResolve")
        changes = list(req.find(_m("ItemChanges")))
        entry.count = len(changes)
        out = []
        for change in changes:
            try:
                id_elem = next(c for c in change if _local(c).endswith("Id"))
                target, changekey = self._resolve_item_id(id_elem)
                if (changekey and changekey != self._changekey_of(target)
                        and resolution != "AlwaysOverwrite"):
                    raise EwsError("ErrorIrresolvableConflict")
                ops = self._update_ops(change.find(_t("Updates")))
                new_key = self._apply_update(target, ops, ctx)
                item_id = (self._occ_id(target.item.id, target.original_start)
                           if target.original_start is not None else target.item.id)
                out.append(self._message("UpdateItem", [
                    _el("m:Items", children=[_el("t:CalendarItem", children=[
                        _el("t:ItemId", attrs={"Id": item_id, "ChangeKey": new_key})])]),
                    _el("m:ConflictResults", children=[_el("t:Count", "0")])]))
            except EwsError as err:
                out.append(self._message("UpdateItem", [_el("m:Items")], error=err))
        return out

    @staticmethod
    def _update_ops(updates: etree._Element | None
                    ) -> list[tuple[str, Any, etree._Element | None]]:
        ops: list[tuple[str, Any, etree._Element | None]] = []
        for upd in updates if updates is not None else ():
            uri = upd[0]
            kind = _local(uri)
            value = None
            if _local(upd) in ("SetItemField", "AppendToItemField"):
                holder = upd[1]
                if not len(holder):
                    raise EwsError("ErrorInvalidPropertySet", "No value to set.")
                value = holder[0]
            if kind == "ExtendedFieldURI":
                ops.append(("ext", ext_key(uri), value))
            elif kind == "FieldURI":
                name = (uri.get("FieldURI") or "").split(":")[-1]
                if value is not None and _local(value) != name:
                    raise EwsError("ErrorInvalidPropertySet",
                                   f"{_local(value)} does not match {name}.")
                ops.append(("field", name, value))
            else:
                raise EwsError("ErrorInvalidPropertySet", f"{kind} is not supported.")
        return ops

    def _svc_DeleteItem(self, req: etree._Element, ctx: _Ctx,
                        entry: LoggedRequest) -> list[etree._Element]:
        ids = list(req.find(_m("ItemIds")))
        entry.count = len(ids)
        out = []
        for id_elem in ids:
            try:
                target, changekey = self._resolve_item_id(id_elem)
                if (self.delete_checks_changekey and changekey
                        and changekey != self._changekey_of(target)):
                    raise EwsError("ErrorIrresolvableConflict")
                self._delete_target(target)
                out.append(self._message("DeleteItem"))
            except EwsError as err:
                out.append(self._message("DeleteItem", error=err))
        return out

    # ------------------------------------------------------------------ queries
    def _matches(self, cond: etree._Element, value_of: Any) -> bool:
        """Evaluate a restriction; ``value_of(uri element)`` lists the field's text values."""
        op = _local(cond)
        if op == "And":
            return all(self._matches(c, value_of) for c in cond)
        if op == "Or":
            return any(self._matches(c, value_of) for c in cond)
        if op == "Not":
            return not self._matches(cond[0], value_of)
        if op == "Exists":
            return bool(value_of(cond[0]))
        values = value_of(cond[0])
        if op == "Contains":
            const = cond.find(_t("Constant"))
            needle = const.get("Value", "") if const is not None else ""
            mode = cond.get("ContainmentMode", "Substring")
            fold = cond.get("ContainmentComparison", "Exact") != "Exact"
            for v in values:
                hay, pin = (v.lower(), needle.lower()) if fold else (v, needle)
                if ((mode == "FullString" and hay == pin) or (mode == "Prefixed" and
                                                               hay.startswith(pin))
                        or (mode not in ("FullString", "Prefixed") and pin in hay)):
                    return True
            return False
        holder = cond.find(_t("FieldURIOrConstant"))
        const = holder.find(_t("Constant")) if holder is not None else None
        if const is None:
            raise EwsError("ErrorUnsupportedPathForQuery", "Only constants are supported.")
        other = const.get("Value", "")
        for v in values:
            a, b = self._comparable(v, other)
            if {"IsEqualTo": a == b, "IsNotEqualTo": a != b, "IsGreaterThan": a > b,
                    "IsGreaterThanOrEqualTo": a >= b, "IsLessThan": a < b,
                    "IsLessThanOrEqualTo": a <= b}.get(op, False):
                return True
        return op == "IsNotEqualTo" and not values

    @staticmethod
    def _comparable(a: str, b: str) -> tuple[Any, Any]:
        """Dates compare as instants; strings as the store does, ignoring case."""
        try:
            return _parse_dt(a), _parse_dt(b)
        except EwsError:
            return a.casefold(), b.casefold()

    def _item_value(self, target: _Target, uri: etree._Element) -> list[str]:
        fields, extended = self._full_fields(target)
        if _local(uri) == "ExtendedFieldURI":
            ext = extended.get(ext_key(uri))
            if ext is None:
                return []
            values = ext.find(_t("Values"))
            return [v.text or "" for v in values] if values is not None else [
                ext.findtext(_t("Value")) or ""]
        name = (uri.get("FieldURI") or "").split(":")[-1]
        if name == "ItemId":
            return [target.item.id]
        elem = fields.get(name)
        if elem is None:
            return []
        if name == "Categories":
            return [s.text or "" for s in elem]
        return [elem.text or ""]

    def _window(self, item: _Item, lo: datetime, hi: datetime) -> list[_Target]:
        """The views of an item that overlap [lo, hi): itself, or its occurrences."""
        if "Recurrence" not in item.fields:
            start, end = self._start(item), _parse_dt(item.fields["End"].text)
            return [_Target(item)] if self._overlaps(start, end, lo, hi) else []
        out = []
        for original in self._pattern_starts(item, until=hi + timedelta(days=366)):
            if original in item.deleted:
                continue
            target = _Target(item, original)
            fields, _ = self._full_fields(target)
            start, end = _parse_dt(fields["Start"].text), _parse_dt(fields["End"].text)
            if self._overlaps(start, end, lo, hi):
                out.append(target)
        return out

    @staticmethod
    def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
        return start < hi and (end > lo or (start == end and start >= lo))

    def _svc_FindItem(self, req: etree._Element, ctx: _Ctx,
                      entry: LoggedRequest) -> list[etree._Element]:
        shape = req.find(_m("ItemShape"))
        restriction = req.find(_m("Restriction"))
        calendar_view = req.find(_m("CalendarView"))
        out = []
        for pid in req.find(_m("ParentFolderIds")):
            try:
                folder = self._resolve_folder(pid)
            except EwsError as err:
                out.append(self._message("FindItem", error=err))
                continue
            items = [i for i in self._items.values() if i.folder == folder.id]
            if calendar_view is not None:
                lo = _parse_dt(calendar_view.get("StartDate"), ctx.tz)
                hi = _parse_dt(calendar_view.get("EndDate"), ctx.tz)
                targets = [t for i in items for t in self._window(i, lo, hi)]
            else:
                targets = [_Target(i) for i in items]
            if restriction is not None and len(restriction):
                targets = [t for t in targets if self._matches(
                    restriction[0], lambda u, t=t: self._item_value(t, u))]
            targets.sort(key=lambda t: (_parse_dt(self._full_fields(t)[0]["Start"].text),
                                        t.item.seq if t.original_start else 0))
            if calendar_view is not None:
                limit = int(calendar_view.get("MaxEntriesReturned", "0") or 0)
                page = targets[:limit] if limit else targets
                attrs = {"TotalItemsInView": str(len(targets)),
                         "IncludesLastItemInRange": _bool(len(page) == len(targets))}
            else:
                page, attrs = self._page(targets, req.find(_m("IndexedPageItemView")))
            entry.count += len(page)
            out.append(self._message("FindItem", [_el("m:RootFolder", attrs=attrs, children=[
                _el("t:Items", children=[self._render(t, shape) for t in page])])]))
        return out

    def _svc_SyncFolderItems(self, req: etree._Element, ctx: _Ctx,
                             entry: LoggedRequest) -> list[etree._Element]:
        shape = req.find(_m("ItemShape"))
        try:
            folder = self._resolve_folder(req.find(_m("SyncFolderId"))[0])
            token = (req.findtext(_m("SyncState")) or "").strip()
            if token:
                state = self._sync_states.get(token)
                if state is None or state.folder != folder.id:
                    raise EwsError("ErrorInvalidSyncStateData")
                known = dict(state.known)
            else:
                known = {}
        except EwsError as err:
            # exchangelib reads SyncState and IncludesLastItemInRange before the ResponseCode.
            return [self._message("SyncFolderItems", [
                _el("m:SyncState", ""), _el("m:IncludesLastItemInRange", "true")], error=err)]
        limit = int(req.findtext(_m("MaxChangesReturned")) or "512")
        ignored = req.find(_m("Ignore"))
        ignore = {e.get("Id") for e in ignored} if ignored is not None else set()
        current = {i.id: i for i in self._items.values() if i.folder == folder.id}
        changes: list[tuple[int, str, str, _Item | None]] = []
        for item_id, item in current.items():
            if item_id not in known:
                changes.append((item.seq, "Create", item_id, item))
            elif item.seq > known[item_id]:
                changes.append((item.seq, "Update", item_id, item))
        for item_id in known:
            if item_id not in current:
                changes.append((0, "Delete", item_id, None))
        changes.sort(key=lambda c: (c[0], c[2]))
        batch, rest = changes[:limit], changes[limit:]
        elems = []
        for _, kind, item_id, item in batch:
            if item is None:
                known.pop(item_id, None)
                elems.append(_el("t:Delete", children=[_el("t:ItemId", attrs={"Id": item_id})]))
                continue
            known[item_id] = item.seq
            if item_id not in ignore:
                elems.append(_el(f"t:{kind}", children=[self._render(_Target(item), shape)]))
        new_token = base64.b64encode(b"H4sIAAAAAAAE" + secrets.token_bytes(24)).decode()
        self._sync_states[new_token] = _SyncState(folder.id, known)
        entry.count = len(elems)
        return [self._message("SyncFolderItems", [
            _el("m:SyncState", new_token), _el("m:IncludesLastItemInRange", _bool(not rest)),
            _el("m:Changes", children=elems)])]


_XML = {"Content-Type": "text/xml; charset=utf-8"}


class _Handler(BaseHTTPRequestHandler):
    """One per connection, in its own thread: what the connection establishes lives as long."""

    fake: FakeEws
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.fake._connection.state = _Connection()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.split("?")[0].lower() == AUTODISCOVER_PATH:
            status, extra, payload = self.fake._handle_autodiscover(headers, body)
        else:
            status, extra, payload = self.fake._handle_http(headers, body)
        self.send_response(status)
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


FakeEws.handler = _Handler  # defined after the class that serves it
FakeEws.thread_name = "fake-ews"
