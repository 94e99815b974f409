"""A loopback fake of Microsoft Graph v1.0 calendars and of the Microsoft identity platform.

It keeps its own state and follows the documented behaviour listed in DESIGN.md ("Facts the
fakes must respect") and in Microsoft's Graph/identity documentation, so that the real msal and
a plain ``requests`` client can talk to it. Both the identity endpoints and Graph are served
over HTTPS by one server, with a throwaway self-signed certificate for 127.0.0.1::

    with FakeGraph() as fake:
        app = msal.ConfidentialClientApplication(
            fake.client_id, client_credential=fake.client_secret,
            authority=f"{fake.authority_url}/{fake.tenant}", instance_discovery=False,
            validate_authority=False, verify=fake.ca_file)
        token = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])["access_token"]
        requests.get(fake.api_url + f"users/{fake.mailbox}/calendars",
                     headers={"Authorization": f"Bearer {token}"}, verify=fake.ca_file)

Pointing the clients at the fake (checked with msal 1.39 and requests 2.34):

* msal: ``authority=f"{fake.authority_url}/{tenant}"`` (tenant = ``fake.tenant`` or
  ``fake.tenant_id``; ``organizations``/``common`` also work for the device flow),
  ``instance_discovery=False``, ``validate_authority=False``. TLS trust: msal puts its
  ``verify=`` on a requests Session, and requests lets ``REQUESTS_CA_BUNDLE`` /
  ``CURL_CA_BUNDLE`` (set in CI to the system bundle) override ``Session.verify``; so set
  ``REQUESTS_CA_BUNDLE=fake.ca_file`` (what tests/test_fake_graph.py does), or hand msal an
  ``http_client`` Session with ``trust_env=False`` and ``verify=fake.ca_file``; a per-request
  ``verify=`` (plain requests) always wins. On construction msal GETs
  ``/{tenant}/v2.0/.well-known/openid-configuration`` (one identity request per application
  object; msal keeps it 24 h in ``http_cache``, a dict the caller may persist); it then POSTs to
  the ``token_endpoint`` and ``device_authorization_endpoint`` found there, whose tenant is the
  tenant's GUID. msal caches HTTP 400 token answers for 60 s (same request data; not device
  code polls) and answers
  throttled (429/5xx) token requests from its cache for Retry-After seconds.
* Scopes: client credentials take ``https://graph.microsoft.com/.default`` only (anything else
  answers ``invalid_scope`` AADSTS1002012); the device flow takes delegated scopes such as
  ``https://graph.microsoft.com/Calendars.ReadWrite`` (msal adds openid/profile/offline_access).
* Graph: ``fake.api_url`` is ``https://127.0.0.1:PORT/v1.0/``; send ``Authorization: Bearer``
  and ``verify=fake.ca_file``. As Graph does, start/end come back in UTC unless the request
  carries ``Prefer: outlook.timezone="..."``, and bodies come back as HTML unless it carries
  ``Prefer: outlook.body-content-type="text"``; list pages hold 10 items unless ``$top`` (event
  lists) or ``Prefer: odata.maxpagesize=N`` (calendarView and its delta) asks otherwise.

Test API: ``authority_url``, ``api_url``, ``batch_url``, ``base_url``, ``ca_file``, ``tenant``,
``tenant_id``, ``mailbox``, ``client_id``/``client_secret`` (the admin-consented app),
``public_client_id`` (the device-flow app), ``user`` (the device-flow user's address);
state: ``add_calendar()``, ``calendars()``, ``default_calendar_id()``, ``add_event()`` (as
Outlook would, not logged), ``event(id)`` (singles, masters, occurrences), ``events()``,
``instances()``, ``patch_event()``, ``delete_event()``, ``extended_properties(id)``,
``invitations`` (every create/update/delete that made Graph mail attendees); log:
``request_log`` (LoggedRequest), ``request_count`` (Graph HTTP requests, a ``$batch`` counts
once), ``token_request_count`` (POSTs to /token and /devicecode), ``discovery_request_count``,
``identity_request_count`` (both), ``injected_errors``, ``reset_log()``; identity:
``approve_device_code()``, ``deny_device_code()``, ``expire_device_codes()``,
``issue_access_token()``, ``expire_access_tokens()``, ``revoke(refresh_token=None)``,
``revoke_consent(client_id)``, ``disable_app(client_id)``; faults: ``fail_next(n, status,
retry_after=, code=, after_apply=)``, ``fail_randomly(rate, statuses, seed=)``,
``clear_failures()``, ``expire_delta_tokens()``.

Documented simplifications: ids are opaque strings but not Exchange's (an occurrence id is
``{masterId}_{originalStartUTC}``); an HTML body is a simple ``<html><body>`` wrapping of the
text; series expansion uses the start time zone as ``recurrenceTimeZone``; changing a series'
start, end or recurrence drops its exceptions and cancellations (as Outlook does); a delta round
snapshots its whole result when its first page is served; series without an end are expanded
only inside the asked window; ``/users/{id}/events`` lists the default calendar (as documented)
while ``/users/{id}/events/{eventId}`` reaches any calendar of the mailbox; attendees never
answer; the whole ``$batch`` envelope is never throttled (its parts are). Stricter than Entra
ID: a refresh token is spent once used (msal stores the new one, so a token cache persisted
before a refresh and not saved after it fails the next run with ``invalid_grant``).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import html
import ipaddress
import itertools
import json
import os
import random
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

from tests.fakes.loopback import Failure, FaultInjection, JsonHandler, LoopbackServer, Reply

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_DEFAULT_SCOPE = f"{GRAPH_RESOURCE}/.default"
MAX_BATCH = 20
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
RESERVED_SCOPES = {"openid", "profile", "offline_access", "email"}
DT_FORMAT = "%Y-%m-%dT%H:%M:%S.0000000"
NULL_TIME = "0001-01-01T00:00:00Z"
STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
    412: "Precondition Failed", 424: "Failed Dependency", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}
FAILURE_CODES = {429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
                 503: ("ServiceUnavailable", "The service is temporarily unavailable."),
                 500: ("InternalServerError", "An internal server error occurred."),
                 504: ("UnknownError", "Gateway timeout.")}
ENUMS = {
    "importance": {"low", "normal", "high"},
    "sensitivity": {"normal", "personal", "private", "confidential"},
    "showAs": {"free", "tentative", "busy", "oof", "workingElsewhere", "unknown"},
}
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
PATTERN_TYPES = {"daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly",
                 "relativeYearly"}
RANGE_TYPES = {"endDate", "noEnd", "numbered"}
WRITABLE = {
    "subject", "body", "start", "end", "isAllDay", "location", "locations", "categories",
    "importance", "sensitivity", "isReminderOn", "reminderMinutesBeforeStart", "showAs",
    "attendees", "isOnlineMeeting", "onlineMeetingProvider", "recurrence", "responseRequested",
    "allowNewTimeProposals", "hideAttendees", "transactionId", "singleValueExtendedProperties",
}
OCCURRENCE_FORBIDDEN = {"recurrence", "transactionId"}
READ_ONLY = {
    "id", "createdDateTime", "lastModifiedDateTime", "changeKey", "iCalUId", "type",
    "seriesMasterId", "originalStart", "originalStartTimeZone", "originalEndTimeZone",
    "webLink", "bodyPreview", "organizer", "isOrganizer", "isCancelled", "isDraft",
    "hasAttachments", "responseStatus", "onlineMeeting", "onlineMeetingUrl",
    "cancelledOccurrences", "calendar", "instances",
}
PROP_ID_RE = re.compile(
    r"^(String|Integer|Boolean|SystemTime|Double|Binary|Long|Short|Currency|CLSID)\s+"
    r"\{([0-9a-fA-F-]{36})\}\s+(Name\s+\S+|Id\s+0x[0-9a-fA-F]+)$")
try:  # exchangelib (a project dependency) ships the CLDR Windows -> IANA table
    from exchangelib.winzone import MS_TIMEZONE_TO_IANA_MAP as _WINDOWS_ZONES
except ImportError:  # pragma: no cover - the fallback covers the zones tests use
    _WINDOWS_ZONES = {"Romance Standard Time": "Europe/Paris",
                      "W. Europe Standard Time": "Europe/Berlin",
                      "GMT Standard Time": "Europe/London",
                      "Eastern Standard Time": "America/New_York"}


class GraphError(Exception):
    """An error answered in Graph's JSON error format."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return {"error": {"code": self.code, "message": self.message, "innerError": {
            "date": now, "request-id": str(uuid.uuid4()),
            "client-request-id": str(uuid.uuid4())}}}


def _bad(message: str, code: str = "ErrorInvalidRequest") -> GraphError:
    return GraphError(400, code, message)


def _not_found() -> GraphError:
    return GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")


@dataclass
class LoggedRequest:
    """A request as the fake saw it; ``kind`` is graph, batch, token or discovery."""

    method: str
    path: str
    query: dict[str, list[str]]
    kind: str = "graph"
    status: int = 0
    in_batch: bool = False


@dataclass
class Invitation:
    """Graph mailed attendees: ``action`` is create, update or cancel."""

    event_id: str
    action: str
    attendees: list[str]


@dataclass
class _Overlay:
    """A modified occurrence (an exception) of a series."""

    data: dict[str, Any]
    change: int
    modified: datetime


@dataclass
class _Event:
    """A stored single event or series master."""

    id: str
    mailbox: str
    calendar_id: str
    data: dict[str, Any]
    props: dict[str, str]
    created: datetime
    modified: datetime
    change: int
    ical_uid: str
    transaction_id: str | None = None
    exceptions: dict[str, _Overlay] = field(default_factory=dict)
    cancelled: dict[str, int] = field(default_factory=dict)


@dataclass
class _DeltaState:
    mailbox: str
    calendar_id: str
    lo: datetime
    hi: datetime
    page_size: int
    counter: int
    seen: dict[str, int]


@dataclass
class _Page:
    items: list[dict[str, Any]]
    state: _DeltaState | None
    base: str
    page_size: int


@dataclass
class _Prefs:
    time_zone: str | None = None
    body_text: bool = False
    max_page: int | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway self-signed CA-capable certificate for 127.0.0.1/localhost: (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gestan-bridge fake Graph")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fake-graph-ca.pem", directory / "fake-graph-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_path, key_path


def zone(name: str) -> ZoneInfo:
    """A Graph time zone name (Windows or IANA, as Graph accepts both) as a ZoneInfo."""
    if name in ("UTC", "Etc/UTC", "Coordinated Universal Time"):
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(_WINDOWS_ZONES.get(name, name))
    except Exception as exc:  # noqa: BLE001 - any lookup failure is a bad request
        raise GraphError(400, "TimeZoneNotSupportedException",
                         "A valid TimeZone value must be specified. The following TimeZone "
                         f"value is not supported: '{name}'.") from exc


def _parse_wall(value: Any, tz_name: str) -> datetime:
    """dateTime of a dateTimeTimeZone as a naive wall time in ``tz_name``."""
    if not isinstance(value, str):
        raise _bad("dateTime must be a string.", "RequestBodyRead")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise _bad(f"Cannot convert the literal '{value}' to DateTime.", "RequestBodyRead") \
            from exc
    if dt.tzinfo is not None:
        dt = dt.astimezone(zone(tz_name)).replace(tzinfo=None)
    return dt.replace(microsecond=0)


def _parse_window(query: dict[str, list[str]]) -> tuple[datetime, datetime]:
    """startDateTime/endDateTime; without an offset they are UTC (as documented)."""
    keys = {k.lower(): v[0] for k, v in query.items()}
    if "startdatetime" not in keys or "enddatetime" not in keys:
        raise _bad("This request requires a time window specified by the query string "
                   "parameters StartDateTime and EndDateTime.", "ErrorInvalidParameter")
    out = []
    for raw in (keys["startdatetime"], keys["enddatetime"]):
        try:
            dt = datetime.fromisoformat(raw.replace(" ", "+"))
        except ValueError as exc:
            raise _bad(f"Invalid date/time: {raw}", "ErrorInvalidParameter") from exc
        out.append(dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC))
    return out[0], out[1]


def _split_top(text: str, sep: str = " and ") -> list[str]:
    """Split an OData expression on ``sep`` outside parentheses and quotes."""
    parts, depth, quoted, start, i = [], 0, False, 0, 0
    lower = text.lower()
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        elif not quoted and depth == 0 and lower.startswith(sep, i):
            parts.append(text[start:i].strip())
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def _literal(raw: str) -> Any:
    raw = raw.strip()
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1].replace("''", "'")
    if raw in ("true", "false"):
        return raw == "true"
    raise _bad(f"Invalid filter literal: {raw}", "BadRequest")


def _html_of(text: str) -> str:
    content = html.escape(text).replace("\r\n", "\n").replace("\n", "<br>\r\n")
    return ("<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; "
            f"charset=utf-8\">\r\n</head>\r\n<body>\r\n{content}\r\n</body>\r\n</html>\r\n")


def _text_of(markup: str) -> str:
    body = re.search(r"<body[^>]*>(.*)</body>", markup, re.S | re.I)
    inner = body.group(1) if body else markup
    inner = re.sub(r"<br\s*/?>\r?\n?", "\n", inner, flags=re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", inner)).strip("\r\n")


class FakeGraph(FaultInjection, LoopbackServer):
    """Loopback Microsoft Graph v1.0 (calendars) + identity platform, in a background thread."""

    def __init__(self, *, tenant: str = "contoso.onmicrosoft.com",
                 mailbox: str = "alice@contoso.com", user: str | None = None,
                 clock: Callable[[], datetime] = _now, token_lifetime: int = 3599,
                 device_code_lifetime: int = 900, device_interval: int = 5,
                 shuffle_batch: bool = True) -> None:
        self.tenant = tenant
        self.tenant_id = str(uuid.uuid4())
        self.mailbox = mailbox
        self.user = user or mailbox
        self.clock = clock
        self.token_lifetime = token_lifetime
        self.device_code_lifetime = device_code_lifetime
        self.device_interval = device_interval
        self.shuffle_batch = shuffle_batch
        self.client_id = str(uuid.uuid4())
        self.client_secret = "fake~" + secrets.token_urlsafe(30)
        self.public_client_id = str(uuid.uuid4())
        self.user_oid = str(uuid.uuid4())
        self.request_log: list[LoggedRequest] = []
        self.request_count = 0
        self.token_request_count = 0
        self.discovery_request_count = 0
        self.invitations: list[Invitation] = []
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._change = 0
        self._rng = random.Random(0)
        self._apps: dict[str, dict[str, Any]] = {
            self.client_id: {"secret": self.client_secret, "consented": True, "enabled": True,
                             "name": "gestan-bridge"},
            self.public_client_id: {"secret": None, "consented": True, "enabled": True,
                                    "name": "gestan-bridge (public)"}}
        self._access: dict[str, dict[str, Any]] = {}
        self._refresh: dict[str, dict[str, Any]] = {}
        self._devices: dict[str, dict[str, Any]] = {}
        self._mailboxes: dict[str, dict[str, dict[str, Any]]] = {}
        self._events: dict[str, _Event] = {}
        self._tombstones: dict[str, tuple[str, str, int]] = {}
        self._transactions: dict[tuple[str, str], str] = {}
        self._delta_tokens: dict[str, _DeltaState] = {}
        self._pages: dict[str, _Page] = {}
        self._reset_faults()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._tmp: Path | None = None
        self.ca_file = ""
        self.add_calendar("Calendar", default=True)
        if self.user.lower() != self.mailbox.lower():
            self.add_calendar("Calendar", mailbox=self.user, default=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeGraph:
        """Make a throwaway certificate, then serve over TLS (LoopbackServer.start)."""
        self._tmp = Path(tempfile.mkdtemp(prefix="fake-graph-"))
        self._cert = make_certificate(self._tmp)
        self.ca_file = str(self._cert[0])
        return super().start()

    def _secure(self, server: ThreadingHTTPServer) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self._cert)
        # Handshake lazily in the handler thread, not in the accepting thread.
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "fake not started"
        return f"https://127.0.0.1:{self._server.server_address[1]}/"

    @property
    def authority_url(self) -> str:
        """Base of the identity platform; msal's authority is ``f"{authority_url}/{tenant}"``."""
        return self.base_url.rstrip("/")

    @property
    def api_url(self) -> str:
        return self.base_url + "v1.0/"

    @property
    def batch_url(self) -> str:
        return self.api_url + "$batch"

    @property
    def identity_request_count(self) -> int:
        return self.token_request_count + self.discovery_request_count

    # ------------------------------------------------------------------ test hooks: state
    def add_calendar(self, name: str, *, mailbox: str | None = None,
                     default: bool = False) -> str:
        """Create a calendar in a mailbox (made on first use); returns its id."""
        with self._lock:
            box = self._mailboxes.setdefault((mailbox or self.mailbox).lower(), {})
            cal_id = "AAMkCal" + secrets.token_hex(20)
            box[cal_id] = {
                "id": cal_id, "name": name, "color": "auto", "hexColor": "",
                "isDefaultCalendar": default or not box, "changeKey": _b64url(
                    secrets.token_bytes(12)), "canShare": True, "canViewPrivateItems": True,
                "canEdit": True, "isRemovable": not (default or not box),
                "isTallyingResponses": True, "allowedOnlineMeetingProviders": ["teamsForBusiness"],
                "defaultOnlineMeetingProvider": "teamsForBusiness",
                "owner": {"name": (mailbox or self.mailbox).split("@")[0],
                          "address": mailbox or self.mailbox}}
            return cal_id

    def calendars(self, mailbox: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._box(mailbox or self.mailbox).values()))

    def default_calendar_id(self, mailbox: str | None = None) -> str:
        with self._lock:
            return self._default_cal(self._box(mailbox or self.mailbox))

    def add_event(self, body: dict[str, Any], *, calendar_id: str | None = None,
                  mailbox: str | None = None) -> dict[str, Any]:
        """Create an event as another client (Outlook) would: not logged, not counted."""
        with self._lock:
            box_name = (mailbox or self.mailbox).lower()
            cal = calendar_id or self._default_cal(self._box(box_name))
            ev = self._create(box_name, cal, copy.deepcopy(body))
            return self._render(ev, None, _Prefs(), expand=None)

    def event(self, event_id: str) -> dict[str, Any] | None:
        """An event (single, master, occurrence or exception) as Graph renders it, in UTC,
        with every extended property expanded; None when absent or cancelled."""
        with self._lock:
            try:
                ev, key = self._resolve(event_id)
            except GraphError:
                return None
            return self._render(ev, key, _Prefs(), expand=["*"])

    def events(self, calendar_id: str | None = None, mailbox: str | None = None
               ) -> list[dict[str, Any]]:
        """Stored singles and series masters of a calendar (default one unless named)."""
        with self._lock:
            box_name = (mailbox or self.mailbox).lower()
            cal = calendar_id or self._default_cal(self._box(box_name))
            return [self._render(e, None, _Prefs(), expand=["*"]) for e in self._events.values()
                    if e.mailbox == box_name and e.calendar_id == cal]

    def instances(self, master_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Occurrences and exceptions of a series overlapping [start, end) (aware datetimes)."""
        with self._lock:
            ev = self._events.get(master_id)
            if ev is None:
                return []
            return [self._render(ev, k, _Prefs(), expand=None)
                    for k in self._instance_keys(ev, start, end)]

    def extended_properties(self, event_id: str) -> dict[str, str]:
        with self._lock:
            ev, _ = self._resolve(event_id)
            return dict(ev.props)

    def patch_event(self, event_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an event as Outlook would (an occurrence id makes an exception)."""
        with self._lock:
            ev, key = self._resolve(event_id)
            self._update(ev, key, copy.deepcopy(changes))
            return self._render(ev, key, _Prefs(), expand=None)

    def delete_event(self, event_id: str) -> None:
        """Delete as Outlook would (an occurrence id cancels that occurrence)."""
        with self._lock:
            ev, key = self._resolve(event_id)
            self._delete(ev, key)

    # ------------------------------------------------------------------ test hooks: identity
    def approve_device_code(self, user_code: str | None = None) -> None:
        """The user signs in and consents (every pending code, or the one named)."""
        self._set_device_status(user_code, "approved")

    def deny_device_code(self, user_code: str | None = None) -> None:
        """The user declines: polling answers ``authorization_declined`` (AADSTS70000)."""
        self._set_device_status(user_code, "declined")

    def expire_device_codes(self) -> None:
        """Every device code answers ``expired_token`` (AADSTS70020) from now on."""
        with self._lock:
            for info in self._devices.values():
                info["expires"] = self.clock() - timedelta(seconds=1)

    def issue_access_token(self, *, client_id: str | None = None) -> str:
        """A valid app-only access token, issued without the token endpoint."""
        with self._lock:
            return self._new_access_token(client_id or self.client_id, None, None)

    def expire_access_tokens(self) -> None:
        """Every access token answers 401 from now on (msal must refresh and the caller retry)."""
        with self._lock:
            for info in self._access.values():
                info["expires"] = self.clock() - timedelta(seconds=1)

    def revoke(self, refresh_token: str | None = None) -> None:
        """Revoke one refresh token, or all of them (the user reset their password): refresh
        answers ``invalid_grant`` AADSTS50173 and their access tokens answer 401 (as
        continuous access evaluation would)."""
        with self._lock:
            for rt, info in self._refresh.items():
                if refresh_token is None or rt == refresh_token:
                    info["revoked"] = "AADSTS50173"
            for info in self._access.values():
                if info["rt"] is not None and (refresh_token is None
                                               or info["rt"] == refresh_token):
                    info["revoked"] = True

    def revoke_consent(self, client_id: str | None = None) -> None:
        """The admin removes the app's consent: refresh answers ``invalid_grant`` AADSTS65001;
        client credentials still get tokens but they carry no roles, so Graph answers 403
        ``ErrorAccessDenied`` (as with an app-only token without Calendars permissions)."""
        with self._lock:
            for cid in [client_id] if client_id else list(self._apps):
                self._apps[cid]["consented"] = False
            for info in self._refresh.values():
                if client_id is None or info["client_id"] == client_id:
                    info["revoked"] = "AADSTS65001"

    def disable_app(self, client_id: str | None = None) -> None:
        """The app registration is disabled: every grant answers ``unauthorized_client``
        (AADSTS7000112) and its access tokens answer 401."""
        with self._lock:
            cid = client_id or self.client_id
            self._apps[cid]["enabled"] = False
            for info in self._access.values():
                if info["client_id"] == cid:
                    info["revoked"] = True

    # ------------------------------------------------------------------ test hooks: faults
    def fail_next(self, count: int = 1, status: int = 429, *, retry_after: int | None = 1,
                  code: str | None = None, after_apply: bool = False) -> None:
        """Answer the next ``count`` Graph operations ($batch parts count one each) with an
        error (429 ApplicationThrottled, 503 ServiceUnavailable, ... with Retry-After).
        ``after_apply`` performs the operation first, like an answer lost after the commit."""
        self._queue_failures(count, status, code, retry_after, after_apply)


    def expire_delta_tokens(self) -> None:
        """Every deltaLink and nextLink issued so far answers 410 ``syncStateNotFound``."""
        with self._lock:
            self._delta_tokens.clear()
            self._pages.clear()

    def reset_log(self) -> None:
        with self._lock:
            self.request_log.clear()
            self.request_count = 0
            self.token_request_count = 0
            self.discovery_request_count = 0
            self.injected_errors = 0
            self.invitations.clear()

    # ------------------------------------------------------------------ HTTP entry
    def _handle_http(self, method: str, raw_path: str, headers: dict[str, str],
                     body: bytes) -> Reply:
        parsed = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        path = parsed.path
        if not path.startswith("/v1.0/"):
            return self._identity(method, path, query, body)
        with self._lock:
            self.request_count += 1
        if path == "/v1.0/$batch":
            entry = LoggedRequest(method, path, query, kind="batch")
            with self._lock:
                self.request_log.append(entry)
                try:
                    if method != "POST":
                        raise GraphError(405, "BadRequest", "Only POST is allowed on $batch.")
                    self._check_auth(headers)
                    reply = self._batch(headers, body)
                except GraphError as err:
                    reply = self._error_reply(err)
            entry.status = reply.status
            return reply
        return self._operation(method, raw_path, headers, body, in_batch=False)

    def _error_reply(self, err: GraphError) -> Reply:
        reply = Reply(err.status, err.body(), dict(err.headers))
        if err.status == 401:
            reply.headers["WWW-Authenticate"] = (
                f'Bearer realm="", authorization_uri="{self.authority_url}/common/oauth2/'
                f'authorize", client_id="00000003-0000-0000-c000-000000000000"')
        return reply

    def _operation(self, method: str, raw_path: str, headers: dict[str, str], body: bytes,
                   *, in_batch: bool) -> Reply:
        parsed = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        entry = LoggedRequest(method, parsed.path, query, in_batch=in_batch)
        with self._lock:
            self.request_log.append(entry)
            try:
                principal = self._check_auth(headers)
                failure = self._take_failure()
                if failure is not None and not failure.after_apply:
                    raise self._failure_error(failure)
                reply = self._route(method, parsed.path, query, headers, body, principal)
                if failure is not None:
                    raise self._failure_error(failure)
            except GraphError as err:
                reply = self._error_reply(err)
            entry.status = reply.status
            return reply

    def _failure_error(self, failure: Failure) -> GraphError:
        self.injected_errors += 1
        code, message = FAILURE_CODES.get(failure.status, ("UnknownError", "Error"))
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        return GraphError(failure.status, failure.code or code, message, headers)

    def _check_auth(self, headers: dict[str, str]) -> dict[str, Any]:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        info = self._access.get(token)
        if info is None:
            raise GraphError(401, "InvalidAuthenticationToken",
                             "CompactToken parsing failed with error code: 80049217")
        if info["expires"] <= self.clock() or info.get("revoked"):
            raise GraphError(401, "InvalidAuthenticationToken",
                             "Lifetime validation failed, the token is expired.")
        if not self._apps[info["client_id"]]["consented"] and info["user"] is None:
            raise GraphError(403, "ErrorAccessDenied",
                             "Access is denied. Check credentials and try again.")
        return info

    # ------------------------------------------------------------------ identity platform
    def _identity(self, method: str, path: str, query: dict[str, list[str]],
                  body: bytes) -> Reply:
        seg = [s for s in path.split("/") if s]
        kind = "discovery" if method == "GET" else "token"
        entry = LoggedRequest(method, path, query, kind=kind)
        with self._lock:
            self.request_log.append(entry)
            if kind == "discovery":
                self.discovery_request_count += 1
            else:
                self.token_request_count += 1
            form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            if not seg or not self._known_tenant(seg[0]):
                reply = self._aad_error(400, "invalid_tenant", 90002,
                                        f"Tenant '{seg[0] if seg else ''}' not found.")
            elif seg[1:] == ["v2.0", ".well-known", "openid-configuration"] and method == "GET":
                reply = Reply(200, self._openid_configuration(seg[0]))
            elif seg[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
                reply = self._token(seg[0], form)
            elif seg[1:] == ["oauth2", "v2.0", "devicecode"] and method == "POST":
                reply = self._devicecode(form)
            else:
                reply = Reply(404, {"error": "not_found"})
            entry.status = reply.status
            return reply

    def _known_tenant(self, name: str) -> bool:
        return name.lower() in {self.tenant.lower(), self.tenant_id, "organizations", "common"}

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        realm = tenant if tenant in ("organizations", "common") else self.tenant_id
        base = f"{self.authority_url}/{realm}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.authority_url}/{self.tenant_id}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True, "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid"],
            "tenant_region_scope": "EU", "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net", "msgraph_host": "graph.microsoft.com",
        }

    def _aad_error(self, status: int, error: str, code: int, text: str,
                   **extra: Any) -> Reply:
        now = self.clock()
        trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
        description = (f"AADSTS{code}: {text} Trace ID: {trace} Correlation ID: {corr} "
                       f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%SZ')}")
        return Reply(status, {"error": error, "error_description": description,
                              "error_codes": [code], "timestamp": now.strftime(
                                  "%Y-%m-%d %H:%M:%SZ"), "trace_id": trace,
                              "correlation_id": corr,
                              "error_uri": f"{self.authority_url}/error?code={code}", **extra})

    def _check_client(self, form: dict[str, str], *, confidential: bool) -> Reply | None:
        cid = form.get("client_id", "")
        app = self._apps.get(cid)
        if app is None:
            return self._aad_error(400, "unauthorized_client", 700016,
                                   f"Application with identifier '{cid}' was not found in the "
                                   f"directory '{self.tenant}'.")
        if not app["enabled"]:
            return self._aad_error(400, "unauthorized_client", 7000112,
                                   f"Application '{cid}'({app['name']}) is disabled.")
        if confidential or app["secret"] is not None:
            if "client_secret" not in form:
                return self._aad_error(401, "invalid_client", 7000218,
                                       "The request body must contain the following parameter: "
                                       "'client_assertion' or 'client_secret'.")
            if form["client_secret"] != app["secret"]:
                return self._aad_error(
                    401, "invalid_client", 7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the "
                    "request is the client secret value, not the client secret ID, for a "
                    f"secret added to app '{cid}'.")
        return None

    def _token(self, tenant: str, form: dict[str, str]) -> Reply:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            if tenant in ("common", "organizations"):
                return self._aad_error(400, "invalid_request", 1002012,
                                       "Use a tenant-specific endpoint for client credentials.")
            error = self._check_client(form, confidential=True)
            if error:
                return error
            scopes = form.get("scope", "").split()
            if scopes != [GRAPH_DEFAULT_SCOPE]:
                return self._aad_error(
                    400, "invalid_scope", 1002012,
                    f"The provided value for scope {' '.join(scopes)} is not valid. Client "
                    "credential flows must have a scope value with /.default suffixed to the "
                    "resource identifier (application ID URI).")
            token = self._new_access_token(form["client_id"], None, None)
            return Reply(200, {"token_type": "Bearer", "expires_in": self.token_lifetime,
                               "ext_expires_in": self.token_lifetime, "access_token": token})
        if grant == DEVICE_GRANT:
            error = self._check_client(form, confidential=False)
            if error:
                return error
            info = self._devices.get(form.get("device_code", ""))
            if info is None:
                return self._aad_error(400, "bad_verification_code", 70019,
                                       "Verification code was not recognized.")
            if info["expires"] <= self.clock():
                return self._aad_error(400, "expired_token", 70020,
                                       "The provided value for the input parameter "
                                       "'device_code' is not valid. This device code has "
                                       "expired.")
            if info["status"] == "pending":
                return self._aad_error(400, "authorization_pending", 70016,
                                       "OAuth 2.0 device flow error. Authorization is pending. "
                                       "Continue polling.")
            if info["status"] == "declined":
                return self._aad_error(400, "authorization_declined", 70000,
                                       "The user declined the authorization request.")
            if info["status"] == "redeemed":
                return self._aad_error(400, "invalid_grant", 54005,
                                       "The device code was already redeemed.")
            info["status"] = "redeemed"
            return self._user_tokens(info["client_id"], info["scopes"], form)
        if grant == "refresh_token":
            error = self._check_client(form, confidential=False)
            if error:
                return error
            rt = form.get("refresh_token", "")
            info = self._refresh.get(rt)
            if info is None or info["client_id"] != form["client_id"]:
                return self._aad_error(400, "invalid_grant", 9002313,
                                       "Invalid request. Request is malformed or invalid.")
            if info["revoked"] == "AADSTS65001":
                return self._aad_error(
                    400, "invalid_grant", 65001,
                    f"The user or administrator has not consented to use the application with "
                    f"ID '{info['client_id']}'. Send an interactive authorization request for "
                    "this user and resource.", suberror="consent_required")
            if info["revoked"]:
                return self._aad_error(
                    400, "invalid_grant", 50173,
                    "The provided grant has expired due to it being revoked, a fresh auth "
                    "token is needed. The user might have changed or reset their password.",
                    suberror="bad_token")
            info["revoked"] = "AADSTS50173"  # refresh tokens rotate: the old one is spent
            scopes = [s for s in form.get("scope", "").split() if s not in RESERVED_SCOPES]
            return self._user_tokens(info["client_id"], scopes or info["scopes"], form)
        return self._aad_error(400, "unsupported_grant_type", 70003,
                               f"The app requested an unsupported grant type '{grant}'.")

    def _devicecode(self, form: dict[str, str]) -> Reply:
        error = self._check_client(form, confidential=False)
        if error:
            return error
        scopes = [s for s in form.get("scope", "").split() if s not in RESERVED_SCOPES]
        if not scopes:
            return self._aad_error(400, "invalid_scope", 70011, "The provided request must "
                                   "include a 'scope' input parameter.")
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        device_code = "DAQABIQEAAAD" + secrets.token_urlsafe(48)
        self._devices[device_code] = {
            "user_code": user_code, "client_id": form["client_id"], "scopes": scopes,
            "status": "pending",
            "expires": self.clock() + timedelta(seconds=self.device_code_lifetime)}
        uri = "https://microsoft.com/devicelogin"
        return Reply(200, {
            "user_code": user_code, "device_code": device_code, "verification_uri": uri,
            "expires_in": self.device_code_lifetime, "interval": self.device_interval,
            "message": f"To sign in, use a web browser to open the page {uri} and enter the "
                       f"code {user_code} to authenticate."})

    def _set_device_status(self, user_code: str | None, status: str) -> None:
        with self._lock:
            for info in self._devices.values():
                if info["status"] == "pending" and user_code in (None, info["user_code"]):
                    info["status"] = status

    def _user_tokens(self, client_id: str, scopes: list[str], form: dict[str, str]) -> Reply:
        rt = "1.AQ" + secrets.token_urlsafe(60)
        self._refresh[rt] = {"client_id": client_id, "scopes": scopes, "revoked": False}
        now = int(self.clock().timestamp())
        claims = {"aud": client_id, "iss": f"{self.authority_url}/{self.tenant_id}/v2.0",
                  "iat": now, "nbf": now, "exp": now + 3600, "name": self.user.split("@")[0],
                  "oid": self.user_oid, "preferred_username": self.user, "sub": _b64url(
                      self.user_oid.encode()), "tid": self.tenant_id, "ver": "2.0"}
        id_token = ".".join([_b64url(json.dumps({"typ": "JWT", "alg": "RS256"}).encode()),
                             _b64url(json.dumps(claims).encode()), _b64url(b"fake-signature")])
        out = {"token_type": "Bearer", "scope": " ".join(scopes),
               "expires_in": self.token_lifetime, "ext_expires_in": self.token_lifetime,
               "access_token": self._new_access_token(client_id, rt, self.user),
               "refresh_token": rt, "id_token": id_token}
        if form.get("client_info") == "1":
            out["client_info"] = _b64url(json.dumps(
                {"uid": self.user_oid, "utid": self.tenant_id}).encode())
        return Reply(200, out)

    def _new_access_token(self, client_id: str, rt: str | None, user: str | None) -> str:
        token = "eyJ0eXAiOiJKV1Qi.fake." + secrets.token_urlsafe(32)
        self._access[token] = {"client_id": client_id, "rt": rt, "user": user,
                               "expires": self.clock() + timedelta(seconds=self.token_lifetime)}
        return token

    # ------------------------------------------------------------------ $batch
    def _batch(self, headers: dict[str, str], body: bytes) -> Reply:
        try:
            payload = json.loads(body or b"{}")
        except ValueError as exc:
            raise _bad("Invalid batch payload format.", "BadRequest") from exc
        requests_ = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(requests_, list) or not requests_:
            raise _bad("Invalid batch payload format.", "BadRequest")
        if len(requests_) > MAX_BATCH:
            raise _bad(f"The number of requests in the batch ({len(requests_)}) exceeds the "
                       f"limit of {MAX_BATCH}.", "BadRequest")
        ids = [str(r.get("id", "")) if isinstance(r, dict) else "" for r in requests_]
        if "" in ids or len(set(ids)) != len(ids):
            raise _bad("Each batch request needs a unique id.", "BadRequest")
        for r in requests_:
            if not r.get("method") or not r.get("url"):
                raise _bad("Each batch request needs a method and a url.", "BadRequest")
            for dep in r.get("dependsOn") or []:
                if dep not in ids[:ids.index(str(r["id"]))]:
                    raise _bad(f"dependsOn '{dep}' does not name an earlier request.",
                               "BadRequest")
        statuses: dict[str, int] = {}
        responses = []
        for r in requests_:
            rid = str(r["id"])
            failed = [d for d in r.get("dependsOn") or [] if statuses.get(d, 500) >= 400]
            if failed:
                reply = Reply(424, GraphError(424, "BadRequest",
                                              "Failed dependency.").body())
            else:
                reply = self._batch_part(r, headers)
            statuses[rid] = reply.status
            part_headers = dict(reply.headers)
            if reply.body is not None:
                part_headers.setdefault("Content-Type", "application/json")
            item: dict[str, Any] = {"id": rid, "status": reply.status, "headers": part_headers}
            if reply.body is not None:
                item["body"] = reply.body
            responses.append(item)
        if self.shuffle_batch and not any(r.get("dependsOn") for r in requests_):
            self._rng.shuffle(responses)  # order is not guaranteed: match answers by id
        return Reply(200, {"responses": responses})

    def _batch_part(self, r: dict[str, Any], outer: dict[str, str]) -> Reply:
        url = str(r["url"])
        if url.lower().startswith(("http://", "https://")):
            return Reply(400, _bad("Batch request URLs must be relative.", "BadRequest").body())
        headers = {k.lower(): str(v) for k, v in (r.get("headers") or {}).items()}
        headers["authorization"] = outer.get("authorization", "")
        body = b""
        if r.get("body") is not None:
            if "content-type" not in headers:
                return Reply(400, _bad("Content-Type header must be specified for a request "
                                       "with a body.", "BadRequest").body())
            raw = r["body"]
            body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
        return self._operation(str(r["method"]).upper(), "/v1.0/" + url.lstrip("/"), headers,
                               body, in_batch=True)

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes, principal: dict[str, Any]) -> Reply:
        seg = [urllib.parse.unquote(s) for s in path[len("/v1.0/"):].strip("/").split("/")]
        if seg[0] == "me":
            if principal["user"] is None:
                raise _bad("/me request is only valid with delegated authentication flow.",
                           "BadRequest")
            seg = ["users", principal["user"], *seg[1:]]
        if seg[0] != "users" or len(seg) < 3:
            raise _bad(f"Resource not found for the segment '{seg[0]}'.", "BadRequest")
        box_name = seg[1].lower()
        if principal["user"] is not None and box_name != principal["user"].lower():
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                             "and try again.")
        box = self._box(box_name)
        prefs = self._prefs(headers)
        data: dict[str, Any] = {}
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise _bad("Unable to read JSON request payload.", "BadRequest") from exc
            if not isinstance(data, dict):
                raise _bad("The request body must be a JSON object.", "BadRequest")
        rest = seg[2:]
        cal: str | None = None
        if rest[0] == "calendars" and len(rest) == 1 and method == "GET":
            return Reply(200, self._calendar_list(box_name, box, query, path))
        if rest[0] == "calendars" and len(rest) >= 2:
            if rest[1] not in box:
                raise _not_found()
            cal, rest = rest[1], ["calendar", *rest[2:]]
        elif rest[0] == "calendar":
            cal = self._default_cal(box)
        if rest == ["calendar"] and method == "GET":
            return Reply(200, self._calendar_json(box[cal or ""]))
        if rest[0] == "calendar":
            rest = rest[1:]
        if rest[:1] == ["calendarView"]:
            window_cal = cal or self._default_cal(box)
            if rest == ["calendarView"] and method == "GET":
                return Reply(200, self._calendar_view(box_name, window_cal, query, path, prefs))
            if rest == ["calendarView", "delta"] and method == "GET":
                return self._delta(box_name, window_cal, query, path, prefs)
        if rest == ["events"]:
            target = cal or self._default_cal(box)
            if method == "GET":
                return Reply(200, self._list_events(box_name, target, query, path, prefs))
            if method == "POST":
                ev = self._create(box_name, target, data)
                rendered = self._render(ev, None, prefs, expand=None)
                return Reply(201, rendered, {"ETag": rendered["@odata.etag"],
                                             "Location": f"{self.api_url}users/{box_name}/"
                                                         f"events/{ev.id}"})
        if len(rest) >= 2 and rest[0] == "events":
            ev, key = self._resolve(rest[1], box_name)
            if cal is not None and ev.calendar_id != cal:
                raise _not_found()
            if rest[2:] == ["instances"] and method == "GET":
                return Reply(200, self._instances(ev, key, query, path, prefs))
            if len(rest) == 2:
                return self._event_op(method, ev, key, headers, data, query, prefs)
        raise _bad(f"Unsupported request: {method} {path}", "BadRequest")

    def _prefs(self, headers: dict[str, str]) -> _Prefs:
        prefs = _Prefs()
        for raw in headers.get("prefer", "").split(","):
            name, _, value = raw.strip().partition("=")
            value = value.strip().strip('"')
            if name.lower() == "outlook.timezone" and value:
                zone(value)
                prefs.time_zone = value
            elif name.lower() == "outlook.body-content-type":
                prefs.body_text = value.lower() == "text"
            elif name.lower() == "odata.maxpagesize" and value.isdigit():
                prefs.max_page = max(1, int(value))
        return prefs

    def _box(self, name: str) -> dict[str, dict[str, Any]]:
        box = self._mailboxes.get(name.lower())
        if box is None:
            raise GraphError(404, "ErrorInvalidUser",
                             f"The requested user '{name}' is invalid.")
        return box

    @staticmethod
    def _default_cal(box: dict[str, dict[str, Any]]) -> str:
        return next(c for c, info in box.items() if info["isDefaultCalendar"])

    @staticmethod
    def _calendar_json(info: dict[str, Any]) -> dict[str, Any]:
        return dict(copy.deepcopy(info))

    def _calendar_list(self, box_name: str, box: dict[str, dict[str, Any]],
                       query: dict[str, list[str]], path: str) -> dict[str, Any]:
        top, skip = self._top_skip(query)
        entries = [self._calendar_json(c) for c in box.values()]
        out: dict[str, Any] = {
            "@odata.context": f"{self.api_url}$metadata#users('{box_name}')/calendars",
            "value": entries[skip:skip + top]}
        if skip + top < len(entries):
            out["@odata.nextLink"] = self._link(path, {"$top": top, "$skip": skip + top})
        return out

    def _top_skip(self, query: dict[str, list[str]]) -> tuple[int, int]:
        try:
            top = int(query.get("$top", ["10"])[0])
            skip = int(query.get("$skip", ["0"])[0])
        except ValueError as exc:
            raise _bad("Invalid $top or $skip.", "BadRequest") from exc
        if top < 1 or top > 1000 or skip < 0:
            raise _bad("$top must be between 1 and 1000.", "BadRequest")
        return top, skip

    def _link(self, path: str, params: dict[str, Any]) -> str:
        return (self.base_url.rstrip("/") + path + "?"
                + urllib.parse.urlencode({k: str(v) for k, v in params.items()}, safe="$"))

    # ------------------------------------------------------------------ events: reads
    def _resolve(self, event_id: str, box_name: str | None = None) -> tuple[_Event, str | None]:
        """(stored event, occurrence key or None) for an event or occurrence id."""
        master_id, _, key = event_id.partition("_")
        ev = self._events.get(master_id)
        if ev is None or (box_name is not None and ev.mailbox != box_name):
            raise _not_found()
        if not key:
            return ev, None
        if not ev.data.get("recurrence") or key in ev.cancelled:
            raise _not_found()
        try:
            original = datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError as exc:
            raise _not_found() from exc
        if original not in self._occurrence_starts(ev, original, original + timedelta(
                seconds=1)):
            raise _not_found()
        return ev, key

    def _event_op(self, method: str, ev: _Event, key: str | None, headers: dict[str, str],
                  data: dict[str, Any], query: dict[str, list[str]], prefs: _Prefs) -> Reply:
        if method == "GET":
            rendered = self._render(ev, key, prefs, expand=self._expand(query))
            return Reply(200, self._select(rendered, query), {"ETag": rendered["@odata.etag"]})
        if method not in ("PATCH", "DELETE"):
            raise GraphError(405, "ErrorInvalidRequest", f"{method} is not allowed here.")
        if_match = headers.get("if-match")
        if if_match and if_match != "*" and if_match != self._etag(ev, key):
            raise GraphError(412, "ErrorIrresolvableConflict",
                             "The send or update operation could not be performed because the "
                             "change key passed in the request does not match the current "
                             "change key for the item.")
        if method == "PATCH":
            self._update(ev, key, data)
            rendered = self._render(ev, key, prefs, expand=None)
            return Reply(200, rendered, {"ETag": rendered["@odata.etag"]})
        self._delete(ev, key)
        return Reply(204)

    @staticmethod
    def _expand(query: dict[str, list[str]]) -> list[str] | None:
        raw = query.get("$expand", [""])[0]
        if not raw:
            return None
        if not raw.startswith("singleValueExtendedProperties"):
            raise _bad(f"Unsupported $expand: {raw}", "BadRequest")
        ids = [i.replace("''", "'") for i in re.findall(r"id eq '((?:[^']|'')*)'", raw)]
        return ids or ["*"]

    @staticmethod
    def _select(rendered: dict[str, Any], query: dict[str, list[str]]) -> dict[str, Any]:
        raw = query.get("$select", [""])[0]
        if not raw:
            return rendered
        keep = {s.strip() for s in raw.split(",")} | {"id", "@odata.etag",
                                                     "singleValueExtendedProperties"}
        return {k: v for k, v in rendered.items() if k in keep}

    def _list_events(self, box_name: str, cal: str, query: dict[str, list[str]], path: str,
                     prefs: _Prefs) -> dict[str, Any]:
        top, skip = self._top_skip(query)
        match = self._filter(query.get("$filter", [""])[0])
        expand = self._expand(query)
        items = [self._render(e, None, prefs, expand=expand) for e in self._events.values()
                 if e.mailbox == box_name and e.calendar_id == cal and match(self._facts(e))]
        out: dict[str, Any] = {
            "@odata.context": f"{self.api_url}$metadata#users('{box_name}')/events",
            "value": [self._select(i, query) for i in items[skip:skip + top]]}
        if skip + top < len(items):
            params = {k: v[0] for k, v in query.items()}
            params.update({"$top": top, "$skip": skip + top})
            out["@odata.nextLink"] = self._link(path, params)
        return out

    @staticmethod
    def _facts(ev: _Event) -> dict[str, Any]:
        """What $filter can test, without rendering the whole event."""
        return {"id": ev.id, "subject": ev.data.get("subject", ""), "iCalUId": ev.ical_uid,
                "transactionId": ev.transaction_id,
                "type": "seriesMaster" if ev.data.get("recurrence") else "singleInstance",
                "isAllDay": bool(ev.data.get("isAllDay")),
                "singleValueExtendedProperties": [{"id": k, "value": v}
                                                  for k, v in ev.props.items()]}

    def _filter(self, expr: str) -> Callable[[dict[str, Any]], bool]:
        """A predicate for the $filter forms a sync needs (extended property Any, eq)."""
        if not expr.strip():
            return lambda ev: True
        checks: list[Callable[[dict[str, Any]], bool]] = []
        for clause in _split_top(expr.strip()):
            m = re.fullmatch(r"singleValueExtendedProperties/any\((\w+):\s*(.*)\)", clause,
                             re.I | re.S)
            if m:
                var, inner = m.group(1), m.group(2)
                conds = []
                for cond in _split_top(inner):
                    c = re.fullmatch(rf"{var}/(id|value)\s+eq\s+('.*')", cond.strip(), re.S)
                    if not c:
                        raise _bad(f"Invalid filter clause: {cond}", "ErrorInvalidUrlQueryFilter")
                    conds.append((c.group(1), _literal(c.group(2))))

                def any_prop(ev: dict[str, Any], conds: list[tuple[str, Any]] = conds) -> bool:
                    for prop in ev.get("singleValueExtendedProperties", []):
                        if all((prop["id"].lower() == v.lower()) if k == "id" else
                               prop["value"] == v for k, v in conds):
                            return True
                    return False

                checks.append(any_prop)
                continue
            m = re.fullmatch(r"(\w+)\s+eq\s+(.+)", clause.strip(), re.S)
            if not m:
                raise _bad(f"Invalid filter clause: {clause}", "ErrorInvalidUrlQueryFilter")
            name, value = m.group(1), _literal(m.group(2))
            checks.append(lambda ev, n=name, v=value: ev.get(n) == v)
        return lambda ev: all(c(ev) for c in checks)

    def _instances(self, ev: _Event, key: str | None, query: dict[str, list[str]],
                   path: str, prefs: _Prefs) -> dict[str, Any]:
        lo, hi = _parse_window(query)
        if key is not None or not ev.data.get("recurrence"):
            raise _bad("The event is not a series master.", "ErrorInvalidRequest")
        items = [self._render(ev, k, prefs, expand=None)
                 for k in self._instance_keys(ev, lo, hi)]
        return {"@odata.context": f"{self.api_url}$metadata#users('{ev.mailbox}')/events",
                "value": items}

    def _view_items(self, box_name: str, cal: str, lo: datetime, hi: datetime
                    ) -> list[tuple[_Event, str | None]]:
        """Singles, occurrences and exceptions overlapping [lo, hi), sorted by start."""
        found: list[tuple[datetime, _Event, str | None]] = []
        for ev in self._events.values():
            if ev.mailbox != box_name or ev.calendar_id != cal:
                continue
            if ev.data.get("recurrence"):
                for k in self._instance_keys(ev, lo, hi):
                    found.append((self._span(ev, k)[0], ev, k))
            else:
                s, e = self._span(ev, None)
                if s < hi and (e > lo or (s == e and s >= lo)):
                    found.append((s, ev, None))
        found.sort(key=lambda t: (t[0], t[1].id, t[2] or ""))
        return [(ev, k) for _, ev, k in found]

    def _calendar_view(self, box_name: str, cal: str, query: dict[str, list[str]], path: str,
                       prefs: _Prefs) -> dict[str, Any]:
        if "$skiptoken" in query:
            return self._next_page(query["$skiptoken"][0], delta=False)
        lo, hi = _parse_window(query)
        items = [self._render(ev, k, prefs, expand=None)
                 for ev, k in self._view_items(box_name, cal, lo, hi)]
        size = prefs.max_page or int(query.get("$top", ["10"])[0])
        return self._serve(_Page(items, None, path, size))

    def _delta(self, box_name: str, cal: str, query: dict[str, list[str]], path: str,
               prefs: _Prefs) -> Reply:
        if "$skiptoken" in query:
            return Reply(200, self._next_page(query["$skiptoken"][0], delta=True))
        size = prefs.max_page or 10
        if "$deltatoken" in query:
            old = self._delta_tokens.get(query["$deltatoken"][0])
            if old is None or old.mailbox != box_name or old.calendar_id != cal:
                raise GraphError(410, "syncStateNotFound",
                                 "The sync state generation is not found. The delta token is "
                                 "expired and data must be synchronized again.")
            lo, hi, size = old.lo, old.hi, prefs.max_page or old.page_size
        else:
            old = None
            for bad in ("$filter", "$expand", "$orderby", "$search", "$select"):
                if bad in query:
                    raise _bad(f"{bad} is not supported on calendarView delta.", "BadRequest")
            lo, hi = _parse_window(query)
        current = self._view_items(box_name, cal, lo, hi)
        seen = {self._item_id(ev, k): self._version(ev, k) for ev, k in current}
        if old is None:
            items = [self._render(ev, k, prefs, expand=None) for ev, k in current]
        else:
            items = [self._render(ev, k, prefs, expand=None) for ev, k in current
                     if old.seen.get(self._item_id(ev, k)) != self._version(ev, k)]
            gone = [i for i in old.seen if i not in seen]
            # Documented: changes to events outside the window also come as @removed.
            known = {i.partition("_")[0] for i in itertools.chain(seen, old.seen)}
            outside = [e.id for e in self._events.values()
                       if e.change > old.counter and e.mailbox == box_name
                       and e.calendar_id == cal and e.id not in known]
            outside += [i for i, (b, c, n) in self._tombstones.items()
                        if b == box_name and c == cal and n > old.counter
                        and i not in old.seen and i not in seen]
            items += [{"@odata.type": "#microsoft.graph.event", "id": i,
                       "@removed": {"reason": "deleted"}} for i in dict.fromkeys(gone + outside)]
        state = _DeltaState(box_name, cal, lo, hi, size, self._change, seen)
        return Reply(200, self._serve(_Page(items, state, path, size)))

    def _serve(self, page: _Page) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.context": f"{self.api_url}$metadata#Collection(event)",
                               "value": page.items[:page.page_size]}
        if len(page.items) > page.page_size:
            token = secrets.token_urlsafe(24)
            self._pages[token] = _Page(page.items[page.page_size:], page.state, page.base,
                                       page.page_size)
            out["@odata.nextLink"] = self._link(page.base, {"$skiptoken": token})
        elif page.state is not None:
            token = secrets.token_urlsafe(24)
            self._delta_tokens[token] = page.state
            out["@odata.deltaLink"] = self._link(page.base, {"$deltatoken": token})
        return out

    def _next_page(self, token: str, *, delta: bool) -> dict[str, Any]:
        page = self._pages.pop(token, None)
        if page is None:
            if delta:
                raise GraphError(410, "syncStateNotFound",
                                 "The sync state generation is not found. The delta token is "
                                 "expired and data must be synchronized again.")
            raise _bad("Invalid $skiptoken.", "BadRequest")
        return self._serve(page)

    # ------------------------------------------------------------------ events: writes
    def _next_change(self) -> int:
        self._change = next(self._counter)
        return self._change

    def _stamp(self) -> datetime:
        return self.clock().replace(microsecond=0)

    def _clean(self, data: dict[str, Any], *, occurrence: bool
               ) -> tuple[dict[str, Any], dict[str, str] | None]:
        """Validate a create/PATCH body: (writable fields, extended properties or None)."""
        out: dict[str, Any] = {}
        props: dict[str, str] | None = None
        for key, value in data.items():
            if key.startswith("@odata") or key in READ_ONLY:
                continue
            if key not in WRITABLE:
                raise _bad(f"The property '{key}' does not exist on type "
                           "'microsoft.graph.event'. Make sure to only use property names that "
                           "are defined by the type or mark the type as open type.",
                           "RequestBodyRead")
            if occurrence and key in OCCURRENCE_FORBIDDEN:
                raise _bad(f"'{key}' cannot be set on an occurrence of a series.")
            if key in ENUMS and value not in ENUMS[key]:
                raise _bad(f"Cannot convert the literal '{value}' to the expected type "
                           f"'microsoft.graph.{key}'.", "RequestBodyRead")
            if key == "singleValueExtendedProperties":
                props = {}
                for prop in value or []:
                    m = PROP_ID_RE.match(str(prop.get("id", "")))
                    if not m or not isinstance(prop.get("value"), str):
                        raise _bad(f"Invalid extended property: {prop!r}",
                                   "ErrorInvalidExtendedPropertyValue")
                    props[f"{m.group(1)} {{{m.group(2).lower()}}} {m.group(3)}"] = prop["value"]
                continue
            if key in ("start", "end"):
                if not isinstance(value, dict) or "dateTime" not in value:
                    raise _bad(f"'{key}' needs dateTime and timeZone.", "RequestBodyRead")
                tz_name = value.get("timeZone") or "UTC"
                wall = _parse_wall(value["dateTime"], tz_name)
                zone(tz_name)
                value = {"dateTime": wall.strftime(DT_FORMAT), "timeZone": tz_name}
            elif key == "body":
                kind = str((value or {}).get("contentType", "text")).lower()
                if kind not in ("text", "html"):
                    raise _bad(f"Cannot convert the literal '{kind}' to bodyType.",
                               "RequestBodyRead")
                value = {"contentType": kind, "content": str((value or {}).get("content", ""))}
            elif key == "recurrence" and value is not None:
                value = self._clean_recurrence(value)
            elif key in ("isAllDay", "isReminderOn", "isOnlineMeeting", "responseRequested",
                         "allowNewTimeProposals", "hideAttendees") and not isinstance(value, bool):
                raise _bad(f"'{key}' must be a boolean.", "RequestBodyRead")
            elif key == "categories" and not (isinstance(value, list)
                                              and all(isinstance(c, str) for c in value)):
                raise _bad("'categories' must be a list of strings.", "RequestBodyRead")
            elif key == "attendees":
                value = [{"type": a.get("type", "required"),
                          "status": {"response": "none", "time": NULL_TIME},
                          "emailAddress": dict(a.get("emailAddress") or {})}
                         for a in value or []]
            elif key == "location" and value is not None:
                value = {"displayName": "", "locationType": "default",
                         "uniqueIdType": "unknown", **value}
            out[key] = copy.deepcopy(value)
        return out, props

    @staticmethod
    def _clean_recurrence(value: dict[str, Any]) -> dict[str, Any]:
        pattern = dict(value.get("pattern") or {})
        rng = dict(value.get("range") or {})
        if pattern.get("type") not in PATTERN_TYPES:
            raise _bad(f"Invalid recurrence pattern type: {pattern.get('type')!r}")
        if rng.get("type") not in RANGE_TYPES or not rng.get("startDate"):
            raise _bad("A recurrence range needs a type and a startDate.")
        days = [d.lower() for d in pattern.get("daysOfWeek") or []]
        if any(d not in WEEKDAYS for d in days):
            raise _bad(f"Invalid daysOfWeek: {days}")
        ptype = pattern["type"]
        if ptype in ("weekly", "relativeMonthly", "relativeYearly") and not days:
            raise _bad(f"A {ptype} pattern needs daysOfWeek.")
        if ptype in ("absoluteMonthly", "absoluteYearly") and not pattern.get("dayOfMonth"):
            raise _bad(f"A {ptype} pattern needs dayOfMonth.")
        if ptype in ("absoluteYearly", "relativeYearly") and not pattern.get("month"):
            raise _bad(f"A {ptype} pattern needs month.")
        if rng["type"] == "endDate" and not rng.get("endDate"):
            raise _bad("An endDate range needs endDate.")
        if rng["type"] == "numbered" and int(rng.get("numberOfOccurrences") or 0) < 1:
            raise _bad("A numbered range needs numberOfOccurrences.")
        try:
            date.fromisoformat(rng["startDate"])
            if rng.get("endDate") and rng["type"] == "endDate":
                date.fromisoformat(rng["endDate"])
        except ValueError as exc:
            raise _bad(f"Invalid recurrence range dates: {exc}") from exc
        index = pattern.get("index") or "first"
        if index not in INDEXES:
            raise _bad(f"Invalid index: {index}")
        return {
            "pattern": {"type": ptype, "interval": int(pattern.get("interval") or 1),
                        "month": int(pattern.get("month") or 0),
                        "dayOfMonth": int(pattern.get("dayOfMonth") or 0), "daysOfWeek": days,
                        "firstDayOfWeek": (pattern.get("firstDayOfWeek") or "sunday").lower(),
                        "index": index},
            "range": {"type": rng["type"], "startDate": rng["startDate"],
                      "endDate": rng.get("endDate") if rng["type"] == "endDate"
                      else "0001-01-01",
                      "recurrenceTimeZone": rng.get("recurrenceTimeZone") or "",
                      "numberOfOccurrences": int(rng.get("numberOfOccurrences") or 0)
                      if rng["type"] == "numbered" else 0}}

    def _check_times(self, data: dict[str, Any]) -> None:
        if "start" not in data or "end" not in data:
            raise _bad("An event needs start and end.", "ErrorInvalidRequest")
        s_tz, e_tz = data["start"]["timeZone"], data["end"]["timeZone"]
        s_wall = datetime.fromisoformat(data["start"]["dateTime"])
        e_wall = datetime.fromisoformat(data["end"]["dateTime"])
        s = s_wall.replace(tzinfo=zone(s_tz))
        e = e_wall.replace(tzinfo=zone(e_tz))
        if e < s:
            raise _bad("The end time must be after the start time.", "ErrorInvalidRequest")
        if data.get("isAllDay") and (s_wall.time() != time(0) or e_wall.time() != time(0)
                                     or e_wall <= s_wall):
            raise _bad("Your request can't be completed. If the event is an all-day "
                           "event, start and end must be at midnight and span whole days.",
                           "ErrorInvalidRequest")

    def _create(self, box_name: str, cal: str, body: dict[str, Any]) -> _Event:
        if cal not in self._box(box_name):
            raise _not_found()
        tid = body.get("transactionId")
        if tid is not None:
            known = self._transactions.get((box_name, str(tid)))
            if known is not None and known in self._events:
                return self._events[known]
        data, props = self._clean(body, occurrence=False)
        data.pop("transactionId", None)
        self._check_times(data)
        now = self._stamp()
        ev = _Event(id="AAMkAGI2" + secrets.token_hex(24) + "AAA=", mailbox=box_name,
                    calendar_id=cal, data=data, props=props or {}, created=now, modified=now,
                    change=self._next_change(),
                    ical_uid="040000008200E00074C5B7101A82E008" + secrets.token_hex(28).upper(),
                    transaction_id=str(tid) if tid is not None else None)
        self._events[ev.id] = ev
        if tid is not None:
            self._transactions[(box_name, str(tid))] = ev.id
        self._invite(ev.id, "create", data)
        return ev

    def _update(self, ev: _Event, key: str | None, body: dict[str, Any]) -> None:
        data, props = self._clean(body, occurrence=key is not None)
        now = self._stamp()
        if key is None:
            merged = {**ev.data, **data}
            for k in [k for k, v in merged.items() if v is None]:
                del merged[k]
            self._check_times(merged)
            if any(k in data and data[k] != ev.data.get(k)
                   for k in ("start", "end", "recurrence", "isAllDay")):
                ev.exceptions.clear()  # as Outlook: a new pattern/time drops modified and
                ev.cancelled.clear()   # deleted occurrences
            ev.data = merged
            if props is not None:
                ev.props.update(props)
            ev.modified, ev.change = now, self._next_change()
            self._invite(ev.id, "update", ev.data)
            return
        overlay = ev.exceptions.get(key)
        base = overlay.data if overlay else {}
        merged = {**self._occurrence_data(ev, key), **base, **data}
        self._check_times(merged)
        if props is not None:
            ev.props.update(props)
        ev.exceptions[key] = _Overlay({**base, **data}, self._next_change(), now)
        self._invite(f"{ev.id}_{key}", "update", merged)

    def _delete(self, ev: _Event, key: str | None) -> None:
        if key is None:
            del self._events[ev.id]
            self._tombstones[ev.id] = (ev.mailbox, ev.calendar_id, self._next_change())
            self._invite(ev.id, "cancel", ev.data)
            return
        ev.exceptions.pop(key, None)
        ev.cancelled[key] = self._next_change()
        ev.modified = self._stamp()
        self._invite(f"{ev.id}_{key}", "cancel", ev.data)

    def _invite(self, event_id: str, action: str, data: dict[str, Any]) -> None:
        """Graph mails attendees whenever an event that has some is created/updated/deleted."""
        people = [str((a.get("emailAddress") or {}).get("address", ""))
                  for a in data.get("attendees") or []]
        if people:
            self.invitations.append(Invitation(event_id, action, people))

    # ------------------------------------------------------------------ series
    def _occurrence_starts(self, ev: _Event, lo: datetime, hi: datetime) -> list[datetime]:
        """UTC original starts of a series whose occurrences overlap [lo, hi) (unmodified)."""
        rec = ev.data["recurrence"]
        pattern, rng = rec["pattern"], rec["range"]
        tz = zone(ev.data["start"]["timeZone"])
        s_wall = datetime.fromisoformat(ev.data["start"]["dateTime"])
        length = self._span(ev, None)[1] - self._span(ev, None)[0]
        start_day = date.fromisoformat(rng["startDate"])
        dtstart = datetime.combine(start_day, s_wall.time())
        freq = {"daily": rrule.DAILY, "weekly": rrule.WEEKLY}.get(
            pattern["type"], rrule.MONTHLY if "Monthly" in pattern["type"] else rrule.YEARLY)
        kwargs: dict[str, Any] = {"dtstart": dtstart, "interval": pattern["interval"],
                                  "wkst": WEEKDAYS.index(pattern["firstDayOfWeek"])}
        days = [WEEKDAYS.index(d) for d in pattern["daysOfWeek"]]
        if pattern["type"] == "weekly":
            kwargs["byweekday"] = days
        elif pattern["type"].startswith("absolute"):
            kwargs["bymonthday"] = pattern["dayOfMonth"]
        elif pattern["type"].startswith("relative"):
            kwargs["byweekday"] = days
            kwargs["bysetpos"] = INDEXES[pattern["index"]]
        if pattern["type"].endswith("Yearly"):
            kwargs["bymonth"] = pattern["month"]
        if rng["type"] == "endDate":
            kwargs["until"] = datetime.combine(date.fromisoformat(rng["endDate"]), time(23, 59))
        elif rng["type"] == "numbered":
            kwargs["count"] = rng["numberOfOccurrences"]
        rule = rrule.rrule(freq, **kwargs)
        if ev.data.get("isAllDay"):
            tz = ZoneInfo("UTC")
        a = (lo - length).astimezone(tz).replace(tzinfo=None) - timedelta(days=1)
        b = hi.astimezone(tz).replace(tzinfo=None) + timedelta(days=1)
        out = []
        for wall in rule.between(a, b, inc=True)[:5000]:
            start = wall.replace(tzinfo=tz).astimezone(UTC)
            if start < hi and start + length > lo or (length == timedelta(0) and lo <= start < hi):
                out.append(start)
        return out

    def _instance_keys(self, ev: _Event, lo: datetime, hi: datetime) -> list[str]:
        """Occurrence keys (unmodified, and exceptions by their actual times) in [lo, hi)."""
        keys = []
        for start in self._occurrence_starts(ev, lo, hi):
            key = start.strftime("%Y%m%dT%H%M%SZ")
            if key not in ev.cancelled and key not in ev.exceptions:
                keys.append(key)
        for key in ev.exceptions:
            s, e = self._span(ev, key)
            if s < hi and (e > lo or (s == e and s >= lo)):
                keys.append(key)
        keys.sort(key=lambda k: self._span(ev, k)[0])
        return keys

    def _occurrence_data(self, ev: _Event, key: str) -> dict[str, Any]:
        """The master's fields with start/end moved to one occurrence."""
        data = {k: v for k, v in ev.data.items() if k != "recurrence"}
        original = datetime.strptime(key, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        s_tz, e_tz = ev.data["start"]["timeZone"], ev.data["end"]["timeZone"]
        s_wall = datetime.fromisoformat(ev.data["start"]["dateTime"])
        e_wall = datetime.fromisoformat(ev.data["end"]["dateTime"])
        if ev.data.get("isAllDay"):
            local = original.replace(tzinfo=None)
        else:
            local = original.astimezone(zone(s_tz)).replace(tzinfo=None)
        data["start"] = {"dateTime": local.strftime(DT_FORMAT), "timeZone": s_tz}
        data["end"] = {"dateTime": (local + (e_wall - s_wall)).strftime(DT_FORMAT),
                       "timeZone": e_tz}
        return data

    def _fields(self, ev: _Event, key: str | None) -> dict[str, Any]:
        if key is None:
            return ev.data
        overlay = ev.exceptions.get(key)
        return {**self._occurrence_data(ev, key), **(overlay.data if overlay else {})}

    def _span(self, ev: _Event, key: str | None) -> tuple[datetime, datetime]:
        data = self._fields(ev, key)
        out = []
        for which in ("start", "end"):
            wall = datetime.fromisoformat(data[which]["dateTime"])
            tz = ZoneInfo("UTC") if data.get("isAllDay") else zone(data[which]["timeZone"])
            out.append(wall.replace(tzinfo=tz).astimezone(UTC))
        return out[0], out[1]

    def _item_id(self, ev: _Event, key: str | None) -> str:
        return ev.id if key is None else f"{ev.id}_{key}"

    def _version(self, ev: _Event, key: str | None) -> int:
        overlay = ev.exceptions.get(key) if key else None
        return max(ev.change, overlay.change) if overlay else ev.change

    def _etag(self, ev: _Event, key: str | None) -> str:
        return f'W/"{self._change_key(ev, key)}"'

    def _change_key(self, ev: _Event, key: str | None) -> str:
        raw = f"{ev.id}:{self._version(ev, key)}".encode()
        return "DwAAABYAAAA" + _b64url(raw[-24:]) + str(self._version(ev, key))

    # ------------------------------------------------------------------ rendering
    def _render(self, ev: _Event, key: str | None, prefs: _Prefs,
                expand: list[str] | None) -> dict[str, Any]:
        """An event, occurrence or exception as Graph v1.0 answers it."""
        data = self._fields(ev, key)
        overlay = ev.exceptions.get(key) if key else None
        modified = overlay.modified if overlay else ev.modified
        if key is None:
            kind = "seriesMaster" if data.get("recurrence") else "singleInstance"
        else:
            kind = "exception" if overlay else "occurrence"
        body = data.get("body") or {"contentType": "text", "content": ""}
        text = body["content"] if body["contentType"] == "text" else _text_of(body["content"])
        if prefs.body_text:
            out_body = {"contentType": "text", "content": text}
        else:
            out_body = {"contentType": "html", "content": body["content"]
                        if body["contentType"] == "html" else _html_of(body["content"])}
        online = bool(data.get("isOnlineMeeting"))
        item_id = self._item_id(ev, key)
        out: dict[str, Any] = {
            "@odata.etag": self._etag(ev, key),
            "id": item_id,
            "createdDateTime": ev.created.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "lastModifiedDateTime": modified.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "changeKey": self._change_key(ev, key),
            "categories": list(data.get("categories") or []),
            "transactionId": ev.transaction_id if key is None else None,
            "originalStartTimeZone": data["start"]["timeZone"],
            "originalEndTimeZone": data["end"]["timeZone"],
            "iCalUId": ev.ical_uid if key is None else ev.ical_uid + key.encode().hex().upper(),
            "reminderMinutesBeforeStart": data.get("reminderMinutesBeforeStart", 15),
            "isReminderOn": data.get("isReminderOn", True),
            "hasAttachments": False,
            "subject": data.get("subject", ""),
            "bodyPreview": text[:255],
            "importance": data.get("importance", "normal"),
            "sensitivity": data.get("sensitivity", "normal"),
            "isAllDay": bool(data.get("isAllDay")),
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": data.get("responseRequested", True),
            "seriesMasterId": ev.id if key else None,
            "showAs": data.get("showAs", "busy"),
            "type": kind,
            "webLink": f"https://outlook.office365.com/owa/?itemid={urllib.parse.quote(item_id)}"
                       "&exvsurl=1&path=/calendar/item",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": online,
            "onlineMeetingProvider": data.get("onlineMeetingProvider",
                                              "teamsForBusiness" if online else "unknown"),
            "allowNewTimeProposals": data.get("allowNewTimeProposals", True),
            "isDraft": False,
            "hideAttendees": data.get("hideAttendees", False),
            "responseStatus": {"response": "organizer", "time": NULL_TIME},
            "body": out_body,
            "start": self._out_time(data, "start", prefs),
            "end": self._out_time(data, "end", prefs),
            "location": copy.deepcopy(data.get("location") or {
                "displayName": "", "locationType": "default", "uniqueIdType": "unknown"}),
            "locations": copy.deepcopy(data.get("locations") or (
                [data["location"]] if (data.get("location") or {}).get("displayName") else [])),
            "recurrence": copy.deepcopy(data.get("recurrence")) if key is None else None,
            "attendees": copy.deepcopy(data.get("attendees") or []),
            "organizer": {"emailAddress": {"name": ev.mailbox.split("@")[0],
                                           "address": ev.mailbox}},
            "onlineMeeting": {"joinUrl": "https://teams.microsoft.com/l/meetup-join/"
                                         + ev.id[-16:]} if online else None,
        }
        if out["recurrence"] and not out["recurrence"]["range"]["recurrenceTimeZone"]:
            out["recurrence"]["range"]["recurrenceTimeZone"] = data["start"]["timeZone"]
        if key is not None:
            out["originalStart"] = datetime.strptime(key, "%Y%m%dT%H%M%SZ").strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        elif data.get("recurrence"):
            local_tz = zone(data["start"]["timeZone"])
            days = [datetime.strptime(k, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                    .astimezone(local_tz).date().isoformat() for k in sorted(ev.cancelled)]
            out["cancelledOccurrences"] = [f"OID.{ev.id}.{day}" for day in days]
        if expand:
            out["singleValueExtendedProperties"] = [
                {"id": pid, "value": value} for pid, value in ev.props.items()
                if "*" in expand or pid.lower() in {e.lower() for e in expand}]
        return out

    @staticmethod
    def _out_time(data: dict[str, Any], which: str, prefs: _Prefs) -> dict[str, str]:
        wall = datetime.fromisoformat(data[which]["dateTime"])
        target = prefs.time_zone or "UTC"
        if data.get("isAllDay"):  # all-day times float: midnight stays midnight
            return {"dateTime": wall.strftime(DT_FORMAT), "timeZone": target}
        moved = wall.replace(tzinfo=zone(data[which]["timeZone"])).astimezone(zone(target))
        return {"dateTime": moved.replace(tzinfo=None).strftime(DT_FORMAT), "timeZone": target}


class _Handler(JsonHandler):
    """Graph's answers (OData JSON, a request-id on each, errors as Graph writes them)."""

    content_type = ("application/json;odata.metadata=minimal;odata.streaming=true;"
                    "IEEE754Compatible=false;charset=utf-8")
    status_text = STATUS_TEXT

    def error_reply(self, exc: Exception) -> Reply:
        return Reply(500, GraphError(500, "InternalServerError", f"fake error: {exc!r}")
                     .body())

    def extra_headers(self) -> dict[str, str]:
        return {"request-id": str(uuid.uuid4())}

    def handle(self) -> None:
        """Finish the TLS handshake here (the listening socket defers it)."""
        try:
            self.connection.do_handshake()  # type: ignore[attr-defined]
        except (ssl.SSLError, OSError):
            return
        super().handle()


FakeGraph.handler = _Handler  # defined after the class that serves it
FakeGraph.thread_name = "fake-graph"
FakeGraph.default_retry_after = 1  # Graph's throttling answers always say when


@contextlib.contextmanager
def ca_bundle(path: str) -> Iterator[None]:
    """REQUESTS_CA_BUNDLE names ``path`` inside the block only (restored after)."""
    saved = {name: os.environ.get(name) for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    os.environ["REQUESTS_CA_BUNDLE"] = path
    os.environ.pop("CURL_CA_BUNDLE", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
