"""A loopback fake of the Google Calendar API v3 (and its OAuth token endpoint) for tests.

It keeps its own state and follows the documented behaviour listed in DESIGN.md ("Facts the
fakes must respect"), so that the real google-api-python-client and google-auth can talk to it::

    with FakeGoogleCalendar() as fake:
        creds = Credentials(None, refresh_token=fake.refresh_token, token_uri=fake.token_uri,
                            client_id=fake.client_id, client_secret=fake.client_secret)
        service = build("calendar", "v3", credentials=creds, static_discovery=True,
                        client_options={"api_endpoint": fake.api_url})
        batch = BatchHttpRequest(callback=cb, batch_uri=fake.batch_url)

Pointing the client at the fake (checked with google-api-python-client 2.202):

* ``client_options={"api_endpoint": fake.api_url}`` replaces the whole base URL, so
  ``api_url`` includes the service path (``http://127.0.0.1:PORT/calendar/v3/``).
* ``service.new_batch_http_request()`` ignores ``api_endpoint``: it builds its URI from the
  discovery document's ``rootUrl`` (``https://www.googleapis.com/batch/calendar/v3``). Use
  ``googleapiclient.http.BatchHttpRequest(callback=..., batch_uri=fake.batch_url)`` instead
  (``fake.batch_url`` is ``base_url + "batch/calendar/v3"``), or build the service with
  ``build_from_document`` from the static document with ``rootUrl`` set to ``fake.base_url``.
* If-Match: set ``request.headers["If-Match"] = etag`` on the HttpRequest before ``execute()``.
* ``execute(num_retries=n)`` sleeps ``random() * 2**k`` seconds between tries; tests set
  ``request._sleep = lambda s: None`` to keep fast. The client ignores Retry-After.

Test API: ``base_url``, ``api_url``, ``batch_url``, ``token_uri``, ``auth_uri``;
``client_id``/``client_secret``/``refresh_token`` (a granted refresh token), ``client_config()``,
``credentials()``, ``build_service()``, ``new_batch()``; state: ``add_calendar()``,
``delete_calendar()``, ``events(cal)`` (stored, incl. cancelled and exceptions),
``event(cal, id)``, and ``insert_event``/``patch_event``/``delete_event`` acting as another
client (not logged);
``request_log`` (LoggedRequest: method, path, query, status, in_batch), ``request_count`` (HTTP
requests to the API, a batch counts once), ``token_request_count``, ``injected_errors``,
``reset_log()``; faults: ``fail_next(n, status, reason, retry_after=, after_apply=)``,
``fail_randomly(rate, statuses, seed=)``, ``clear_failures()``, ``expire_sync_tokens()``,
``expire_access_tokens()``, ``revoke(refresh_token)``, ``grant_refresh_token()``. Failures
count per API operation (each batch part is one); an ``after_apply`` failure is dropped if the
operation itself fails. ``/o/oauth2/auth`` consents at once (302 to ``redirect_uri`` with a
code) and ``/token`` accepts ``authorization_code`` and ``refresh_token`` grants.

Documented simplifications: sync tokens cover the whole calendar (a listing made with
timeMin/timeMax still yields a token whose increments are not windowed); page tokens snapshot the
listing when the first page is served; cancelled events in listings carry only ``kind``,
``etag``, ``id``, ``status``, ``updated`` (and ``recurringEventId``/``originalStartTime``), as
Google only guarantees the id; series without an end are expanded up to ``horizon_days``
(default 730) after now when no ``timeMax`` is given; an incremental ``singleEvents`` listing
returns every instance of a changed series, and a deleted series as its cancelled master.
"""

from __future__ import annotations

import copy
import email
import itertools
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import Message
from http.server import ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

from tests.fakes.loopback import Failure, FaultInjection, JsonHandler, LoopbackServer, Reply

SCOPE = "https://www.googleapis.com/auth/calendar"
MAX_BATCH = 50
EVENT_ID_RE = re.compile(r"^[a-v0-9]{5,1024}$")
SYNC_FORBIDDEN = (
    "timeMin", "timeMax", "updatedMin", "orderBy", "q", "iCalUID",
    "privateExtendedProperty", "sharedExtendedProperty",
)
READ_ONLY = {
    "kind", "etag", "id", "created", "updated", "htmlLink", "iCalUID", "creator",
    "organizer", "recurringEventId", "originalStartTime",
}
STATUS_TEXT = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
}
# status -> (default reason, domain, message, google status)
ERROR_DEFAULTS: dict[int, tuple[str, str, str, str]] = {
    400: ("invalid", "global", "Bad Request", "INVALID_ARGUMENT"),
    401: ("authError", "global", "Invalid Credentials", "UNAUTHENTICATED"),
    403: ("rateLimitExceeded", "usageLimits", "Rate Limit Exceeded", "PERMISSION_DENIED"),
    404: ("notFound", "global", "Not Found", "NOT_FOUND"),
    409: ("duplicate", "global", "The requested identifier already exists.", "ALREADY_EXISTS"),
    410: ("deleted", "global", "Resource has been deleted", "NOT_FOUND"),
    412: ("conditionNotMet", "global", "Precondition Failed", "FAILED_PRECONDITION"),
    429: ("rateLimitExceeded", "usageLimits", "Rate Limit Exceeded", "RESOURCE_EXHAUSTED"),
    500: ("backendError", "global", "Backend Error", "INTERNAL"),
    503: ("backendError", "global", "Backend Error", "UNAVAILABLE"),
}
REASON_MESSAGES = {
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "quotaExceeded": "Calendar usage limits exceeded.",
    "fullSyncRequired": "Sync token is no longer valid, a full sync is required.",
}


class ApiError(Exception):
    """An error answered in Google's JSON error format."""

    def __init__(self, status: int, reason: str | None = None, message: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        default_reason, domain, default_message, google_status = ERROR_DEFAULTS.get(
            status, ("unknown", "global", "Error", "UNKNOWN"))
        self.status = status
        self.reason = reason or default_reason
        self.domain = "usageLimits" if "Limit" in self.reason or "quota" in self.reason else domain
        self.message = message or REASON_MESSAGES.get(self.reason, default_message)
        self.google_status = google_status
        self.headers = headers or {}
        super().__init__(f"{status} {self.reason}: {self.message}")

    def body(self) -> dict[str, Any]:
        err = {"domain": self.domain, "reason": self.reason, "message": self.message}
        return {"error": {"code": self.status, "message": self.message, "errors": [err],
                          "status": self.google_status}}


@dataclass
class LoggedRequest:
    """A request as the fake saw it; ``in_batch`` marks a part of a batch request."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int = 0
    in_batch: bool = False


@dataclass
class _Page:
    calendar_id: str
    items: list[dict[str, Any]]
    sync_counter: int
    meta: dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


def _fmt_utc(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _parse_rfc3339(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ApiError(400, "invalid", f"Invalid value: {value!r}") from exc
    if dt.tzinfo is None:
        raise ApiError(400, "invalid", f"Missing time zone offset in {value!r}")
    return dt


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except Exception as exc:  # noqa: BLE001 - any lookup failure is a bad request
        raise ApiError(400, "invalid", f"Invalid time zone definition: {name}") from exc


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch semantics: nested objects merge, arrays and scalars replace, null removes."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class FakeGoogleCalendar(FaultInjection, LoopbackServer):
    """Loopback Google Calendar v3 + OAuth token endpoint, run in a background thread.

    Stored event dicts are never mutated in place (changes store a new dict), so listings may
    share them safely.
    """

    def __init__(self, *, account: str = "alice@example.com", time_zone: str = "Europe/Paris",
                 clock: Callable[[], datetime] = _now, horizon_days: int = 730,
                 token_lifetime: int = 3599) -> None:
        self.account = account
        self.clock = clock
        self.horizon_days = horizon_days
        self.token_lifetime = token_lifetime
        self.client_id = "fake-client-id.apps.googleusercontent.com"
        self.client_secret = "fake-client-secret"
        self.refresh_token = "fake-refresh-token"
        self.request_log: list[LoggedRequest] = []
        self.request_count = 0  # HTTP requests to the API (a batch counts once)
        self.token_request_count = 0
        self._lock = threading.RLock()
        self._counter = itertools.count(1)
        self._change = 0
        self._last_updated: datetime | None = None
        self._calendars: dict[str, dict[str, Any]] = {}
        self._events: dict[str, dict[str, dict[str, Any]]] = {}
        self._changed: dict[tuple[str, str], int] = {}
        self._sync_tokens: dict[str, tuple[str, int]] = {}
        self._pages: dict[str, _Page] = {}
        self._refresh_tokens: dict[str, dict[str, Any]] = {
            self.refresh_token: {"revoked": False, "scope": SCOPE}}
        self._access_tokens: dict[str, tuple[str | None, datetime]] = {}
        self._codes: dict[str, str] = {}
        self._reset_faults()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.add_calendar(account, calendar_id=account, time_zone=time_zone, primary=True)

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        assert self._server is not None, "fake not started"
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api_url(self) -> str:
        return self.base_url + "calendar/v3/"

    @property
    def batch_url(self) -> str:
        return self.base_url + "batch/calendar/v3"

    @property
    def token_uri(self) -> str:
        return self.base_url + "token"

    @property
    def auth_uri(self) -> str:
        return self.base_url + "o/oauth2/auth"

    # ------------------------------------------------------------------ client helpers
    def client_config(self) -> dict[str, Any]:
        """An installed-app client secrets dict (for google-auth-oauthlib) aimed at the fake."""
        return {"installed": {
            "client_id": self.client_id, "client_secret": self.client_secret,
            "auth_uri": self.auth_uri, "token_uri": self.token_uri,
            "redirect_uris": ["http://localhost"]}}

    def credentials(self, refresh_token: str | None = None, token: str | None = None) -> Any:
        """google.oauth2.credentials.Credentials aimed at the fake's token endpoint."""
        from google.oauth2.credentials import Credentials

        return Credentials(token, refresh_token=refresh_token or self.refresh_token,
                           token_uri=self.token_uri, client_id=self.client_id,
                           client_secret=self.client_secret, scopes=[SCOPE])

    def build_service(self, credentials: Any = None) -> Any:
        """A real googleapiclient Calendar v3 service aimed at the fake."""
        from googleapiclient.discovery import build

        return build("calendar", "v3", credentials=credentials or self.credentials(),
                     static_discovery=True, cache_discovery=False,
                     client_options={"api_endpoint": self.api_url})

    def new_batch(self, callback: Callable[..., None] | None = None) -> Any:
        """A googleapiclient BatchHttpRequest posting to the fake's batch endpoint."""
        from googleapiclient.http import BatchHttpRequest

        return BatchHttpRequest(callback=callback, batch_uri=self.batch_url)

    # ------------------------------------------------------------------ test hooks
    def add_calendar(self, summary: str, *, calendar_id: str | None = None,
                     time_zone: str = "Europe/Paris", primary: bool = False) -> str:
        """Create a calendar in the account's list; returns its id."""
        with self._lock:
            cal_id = calendar_id or f"c{secrets.token_hex(12)}@group.calendar.google.com"
            self._calendars[cal_id] = {
                "kind": "calendar#calendarListEntry", "etag": f'"{next(self._counter)}"',
                "id": cal_id, "summary": summary, "timeZone": time_zone,
                "accessRole": "owner", "selected": True, "defaultReminders": [],
                **({"primary": True} if primary else {})}
            self._events[cal_id] = {}
            return cal_id

    def delete_calendar(self, calendar_id: str) -> None:
        """The owner deletes a calendar (and its events) in Google."""
        with self._lock:
            cal = self._cal_id(calendar_id)
            del self._calendars[cal], self._events[cal]

    def grant_refresh_token(self, refresh_token: str, scope: str = SCOPE) -> None:
        with self._lock:
            self._refresh_tokens[refresh_token] = {"revoked": False, "scope": scope}

    def revoke(self, refresh_token: str | None = None) -> None:
        """Revoke a refresh token (and its access tokens): refresh answers invalid_grant."""
        rt = refresh_token or self.refresh_token
        with self._lock:
            self._refresh_tokens.setdefault(rt, {"scope": SCOPE})["revoked"] = True
            for tok, (origin, _) in list(self._access_tokens.items()):
                if origin == rt:
                    del self._access_tokens[tok]

    def issue_access_token(self) -> str:
        """A valid access token, issued without the token endpoint."""
        with self._lock:
            return self._new_access_token(None)

    def expire_access_tokens(self) -> None:
        """Every access token answers 401 from now on (clients refresh and retry)."""
        with self._lock:
            self._access_tokens.clear()

    def expire_sync_tokens(self) -> None:
        """Every sync token (and page token) issued so far answers 410 fullSyncRequired."""
        with self._lock:
            self._sync_tokens.clear()
            self._pages.clear()

    def fail_next(self, count: int = 1, status: int = 429, reason: str | None = None, *,
                  retry_after: int | None = None, after_apply: bool = False) -> None:
        """Answer the next ``count`` API operations (batch parts count one each) with an error.

        ``reason`` defaults from the status (403 -> rateLimitExceeded; also
        userRateLimitExceeded, quotaExceeded). ``after_apply`` performs the operation and then
        answers the error, like a response lost after the server committed it.
        """
        self._queue_failures(count, status, reason, retry_after, after_apply)


    def reset_log(self) -> None:
        with self._lock:
            self.request_log.clear()
            self.request_count = 0
            self.token_request_count = 0

    def calendars(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(list(self._calendars.values()))

    def events(self, calendar_id: str = "primary", include_cancelled: bool = True
               ) -> list[dict[str, Any]]:
        """Stored events (masters, exceptions, cancelled ones) as full copies."""
        with self._lock:
            cal = self._cal_id(calendar_id)
            return [copy.deepcopy(e) for e in self._events[cal].values()
                    if include_cancelled or e.get("status") != "cancelled"]

    def event(self, calendar_id: str, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._events[self._cal_id(calendar_id)].get(event_id)
            return copy.deepcopy(found)

    def insert_event(self, calendar_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Insert as another client would (no HTTP, not logged)."""
        with self._lock:
            return self._insert(self._cal_id(calendar_id), copy.deepcopy(body))

    def patch_event(self, calendar_id: str, event_id: str, changes: dict[str, Any]
                    ) -> dict[str, Any]:
        with self._lock:
            return self._modify(self._cal_id(calendar_id), event_id, changes, patch=True)

    def delete_event(self, calendar_id: str, event_id: str) -> None:
        with self._lock:
            self._delete(self._cal_id(calendar_id), event_id)

    # ------------------------------------------------------------------ HTTP entry
    def _handle_http(self, method: str, raw_path: str, headers: dict[str, str],
                     body: bytes) -> Reply:
        parsed = urllib.parse.urlsplit(raw_path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        path = parsed.path
        if path == "/token" and method == "POST":
            with self._lock:
                self.token_request_count += 1
                reply = self._token(urllib.parse.parse_qs(body.decode()))
                self.request_log.append(LoggedRequest(method, path, query, reply.status))
            return reply
        if path == "/o/oauth2/auth" and method == "GET":
            return self._authorize(query)
        with self._lock:
            self.request_count += 1
        if path in ("/batch/calendar/v3", "/batch") and method == "POST":
            entry = LoggedRequest(method, path, query)
            with self._lock:
                self.request_log.append(entry)
            reply = self._batch(headers, body)
            entry.status = reply.status
            return reply
        return self._operation(method, path, query, headers, body, in_batch=False)

    def _operation(self, method: str, path: str, query: dict[str, list[str]],
                   headers: dict[str, str], body: bytes, *, in_batch: bool) -> Reply:
        entry = LoggedRequest(method, path, query, in_batch=in_batch)
        with self._lock:
            self.request_log.append(entry)
            try:
                self._check_auth(headers)
                failure = self._take_failure()
                if failure is not None and not failure.after_apply:
                    raise self._failure_error(failure)
                reply = self._route(method, path, query, headers, body)
                if failure is not None:
                    raise self._failure_error(failure)
            except ApiError as err:
                reply = Reply(err.status, err.body(), dict(err.headers))
                if err.status == 401:
                    reply.headers["WWW-Authenticate"] = 'Bearer realm="https://accounts.google.com/"'
            entry.status = reply.status
            return reply

    def _failure_error(self, failure: Failure) -> ApiError:
        self.injected_errors += 1
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else {}
        return ApiError(failure.status, failure.code, headers=headers)

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        known = self._access_tokens.get(token)
        if known is None or known[1] <= self.clock():
            raise ApiError(401, "authError", "Invalid Credentials")

    # ------------------------------------------------------------------ OAuth
    def _new_access_token(self, refresh_token: str | None) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        expiry = self.clock() + timedelta(seconds=self.token_lifetime)
        self._access_tokens[token] = (refresh_token, expiry)
        return token

    def _token(self, form: dict[str, list[str]]) -> Reply:
        def one(name: str) -> str:
            return form.get(name, [""])[0]

        if one("client_id") != self.client_id or one("client_secret") != self.client_secret:
            return Reply(401, {"error": "invalid_client",
                               "error_description": "The OAuth client was not found."})
        grant = one("grant_type")
        if grant == "authorization_code":
            scope = self._codes.pop(one("code"), None)
            if scope is None:
                return Reply(400, {"error": "invalid_grant",
                                   "error_description": "Malformed auth code."})
            rt = "1//fake-" + secrets.token_urlsafe(24)
            self._refresh_tokens[rt] = {"revoked": False, "scope": scope}
            return Reply(200, {"access_token": self._new_access_token(rt), "refresh_token": rt,
                               "expires_in": self.token_lifetime, "scope": scope,
                               "token_type": "Bearer"})
        if grant != "refresh_token":
            return Reply(400, {"error": "unsupported_grant_type",
                               "error_description": f"Invalid grant_type: {grant}"})
        rt = one("refresh_token")
        info = self._refresh_tokens.get(rt)
        if info is None or info["revoked"]:
            return Reply(400, {"error": "invalid_grant",
                               "error_description": "Token has been expired or revoked."})
        return Reply(200, {"access_token": self._new_access_token(rt),
                           "expires_in": self.token_lifetime,
                           "scope": one("scope") or info["scope"], "token_type": "Bearer"})

    def _authorize(self, query: dict[str, list[str]]) -> Reply:
        """Consent screen that consents at once: 302 to redirect_uri with a code."""
        def one(name: str) -> str:
            return query.get(name, [""])[0]

        if one("client_id") != self.client_id or not one("redirect_uri"):
            return Reply(400, {"error": "invalid_request"})
        code = "4/fake-" + secrets.token_urlsafe(16)
        with self._lock:
            self._codes[code] = one("scope") or SCOPE
        params = {"code": code, "scope": one("scope") or SCOPE}
        if one("state"):
            params["state"] = one("state")
        location = one("redirect_uri") + "?" + urllib.parse.urlencode(params)
        return Reply(302, b"", {"Location": location})

    # ------------------------------------------------------------------ batch
    def _batch(self, headers: dict[str, str], body: bytes) -> Reply:
        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/mixed"):
            return Reply(400, ApiError(400, "invalid", "Batch must be multipart/mixed").body())
        msg = email.message_from_string(f"Content-Type: {ctype}\r\n\r\n" + body.decode())
        parts = msg.get_payload() if msg.is_multipart() else []
        if not isinstance(parts, list) or not parts or len(parts) > MAX_BATCH:
            err = ApiError(400, "invalid", f"A batch holds 1 to {MAX_BATCH} requests")
            return Reply(400, err.body())
        boundary = "batch_" + secrets.token_hex(12)
        out: list[str] = []
        for part in parts:
            assert isinstance(part, Message)
            cid = (part.get("Content-ID") or "").strip()
            reply = self._batch_part(str(part.get_payload()), headers)
            out.append(f"--{boundary}\r\nContent-Type: application/http\r\n")
            if cid:
                inner = cid[1:-1] if cid.startswith("<") and cid.endswith(">") else cid
                out.append(f"Content-ID: <response-{inner}>\r\n")
            payload = reply.payload().decode()
            lines = [f"HTTP/1.1 {reply.status} {STATUS_TEXT.get(reply.status, 'Status')}"]
            if reply.status != 204:
                lines.append("Content-Type: application/json; charset=UTF-8")
            lines += [f"{k}: {v}" for k, v in reply.headers.items()]
            lines.append(f"Content-Length: {len(payload.encode())}")
            out.append("\r\n" + "\r\n".join(lines) + "\r\n\r\n" + payload + "\r\n")
        out.append(f"--{boundary}--\r\n")
        return Reply(200, "".join(out).encode(),
                     {"Content-Type": f"multipart/mixed; boundary={boundary}"})

    def _batch_part(self, raw: str, outer_headers: dict[str, str]) -> Reply:
        status_line, _, rest = raw.lstrip("\r\n").partition("\n")
        bits = status_line.strip().split(" ")
        if len(bits) < 2:
            return Reply(400, ApiError(400, "invalid", "Malformed batch part").body())
        inner = email.message_from_string(rest)
        headers = {k.lower(): v for k, v in inner.items()}
        if "authorization" not in headers and "authorization" in outer_headers:
            headers["authorization"] = outer_headers["authorization"]
        payload = inner.get_payload()
        body = payload.encode() if isinstance(payload, str) else b""
        parsed = urllib.parse.urlsplit(bits[1])
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        return self._operation(bits[0].upper(), parsed.path, query, headers, body, in_batch=True)

    # ------------------------------------------------------------------ routing
    def _route(self, method: str, path: str, query: dict[str, list[str]],
               headers: dict[str, str], body: bytes) -> Reply:
        prefix = "/calendar/v3/"
        if not path.startswith(prefix):
            raise ApiError(404, "notFound", f"No such endpoint: {path}")
        seg = [urllib.parse.unquote(s) for s in path[len(prefix):].strip("/").split("/")]
        data: dict[str, Any] = {}
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError as exc:
                raise ApiError(400, "parseError", "Parse Error") from exc
        if seg[:3] == ["users", "me", "calendarList"] and method == "GET":
            if len(seg) == 3:
                return Reply(200, self._calendar_list(query))
            if len(seg) == 4:
                return Reply(200, copy.deepcopy(self._calendars[self._cal_id(seg[3])]))
        if seg[0] == "calendars" and len(seg) >= 2:
            cal = self._cal_id(seg[1])
            if len(seg) == 2 and method == "GET":
                c = self._calendars[cal]
                return Reply(200, {"kind": "calendar#calendar", "etag": c["etag"], "id": cal,
                                   "summary": c["summary"], "timeZone": c["timeZone"]})
            if len(seg) == 3 and seg[2] == "events":
                if method == "GET":
                    return Reply(200, self._list(cal, query))
                if method == "POST":
                    return Reply(200, self._insert(cal, data))
            if len(seg) == 4 and seg[2] == "events":
                return self._event_op(method, cal, seg[3], headers, data)
            if len(seg) == 5 and seg[2] == "events" and seg[4] == "instances" and method == "GET":
                return Reply(200, self._instances(cal, seg[3], query))
        raise ApiError(404, "notFound", f"No such endpoint: {method} {path}")

    def _event_op(self, method: str, cal: str, eid: str, headers: dict[str, str],
                  data: dict[str, Any]) -> Reply:
        current = self._lookup(cal, eid)
        if_match = headers.get("if-match")
        if if_match and method in ("PUT", "PATCH", "DELETE") and if_match != "*" and (
                current is None or current["etag"] != if_match):
            raise ApiError(412, "conditionNotMet", "Precondition Failed")
        if method == "GET":
            if current is None:
                raise ApiError(404, "notFound", "Not Found")
            return Reply(200, current)
        if method in ("PUT", "PATCH"):
            return Reply(200, self._modify(cal, eid, data, patch=method == "PATCH"))
        if method == "DELETE":
            self._delete(cal, eid)
            return Reply(204)
        raise ApiError(405, "methodNotAllowed", f"{method} not allowed")

    def _cal_id(self, cal_id: str) -> str:
        if cal_id == "primary":
            return self.account
        if cal_id not in self._calendars:
            raise ApiError(404, "notFound", "Not Found")
        return cal_id

    # ------------------------------------------------------------------ calendars
    def _calendar_list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        size = min(int(query.get("maxResults", ["100"])[0]), 250)
        start = 0
        if "pageToken" in query:
            token = query["pageToken"][0]
            if not token.startswith("cl-"):
                raise ApiError(400, "invalid", "Invalid page token")
            start = int(token[3:])
        entries = list(self._calendars.values())
        out: dict[str, Any] = {"kind": "calendar#calendarList", "etag": f'"{self._change}"',
                               "items": copy.deepcopy(entries[start:start + size])}
        if start + size < len(entries):
            out["nextPageToken"] = f"cl-{start + size}"
        return out

    # ------------------------------------------------------------------ events: writes
    def _touch(self, cal: str, ev: dict[str, Any]) -> None:
        """Give an event a new etag and updated time, and record the change."""
        self._change = next(self._counter)
        now = self.clock()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # ms, as rendered
        if self._last_updated is not None and now <= self._last_updated:
            now = self._last_updated + timedelta(milliseconds=1)
        self._last_updated = now
        ev["etag"] = f'"{3_400_000_000_000_000 + self._change}"'
        ev["updated"] = _fmt_utc(now)
        self._events[cal][ev["id"]] = ev
        self._changed[(cal, ev["id"])] = self._change

    def _validate(self, cal: str, ev: dict[str, Any]) -> None:
        for side in ("start", "end"):
            t = ev.get(side)
            if not isinstance(t, dict) or not (t.get("dateTime") or t.get("date")):
                raise ApiError(400, "required", f"Missing {side} time.")
            if t.get("timeZone"):
                _zone(t["timeZone"])
            if t.get("dateTime"):
                dt = datetime.fromisoformat(t["dateTime"])
                if dt.tzinfo is None and not t.get("timeZone"):
                    raise ApiError(400, "invalid", f"Missing time zone definition for {side} time.")
                if ev.get("recurrence") and not t.get("timeZone"):
                    raise ApiError(400, "invalid",
                                   f"Missing time zone definition for {side} time.")
        if bool(ev["start"].get("date")) != bool(ev["end"].get("date")):
            raise ApiError(400, "invalid", "Start and end must both be dates or date-times.")
        start, end = self._bounds(cal, ev)
        if end < start:
            raise ApiError(400, "timeRangeEmpty", "The specified time range is empty.")
        if ev.get("recurrence"):
            self._ruleset(cal, ev)  # raises 400 on a bad rule

    def _insert(self, cal: str, data: dict[str, Any]) -> dict[str, Any]:
        eid = data.get("id")
        if eid is not None:
            if not isinstance(eid, str) or not EVENT_ID_RE.match(eid):
                raise ApiError(400, "invalid", "Invalid resource id value.")
            if eid in self._events[cal]:
                raise ApiError(409, "duplicate", "The requested identifier already exists.")
        else:
            eid = secrets.token_hex(13)  # hex digits are base32hex too
        ev = {k: copy.deepcopy(v) for k, v in data.items() if k not in READ_ONLY}
        now = _fmt_utc(self.clock())
        ev.update({
            "kind": "calendar#event", "id": eid, "status": data.get("status", "confirmed"),
            "htmlLink": f"{self._html_base()}calendar/event?eid={eid}", "created": now,
            "creator": {"email": self.account, "self": True},
            "organizer": {"email": cal, "self": True},
            "iCalUID": data.get("iCalUID") or f"{eid}@google.com",
            "sequence": int(data.get("sequence", 0)),
        })
        ev.setdefault("reminders", {"useDefault": True})
        ev.setdefault("eventType", "default")
        self._validate(cal, ev)
        self._touch(cal, ev)
        return copy.deepcopy(ev)

    def _html_base(self) -> str:
        return self.base_url if self._server is not None else "http://127.0.0.1/"

    def _modify(self, cal: str, eid: str, data: dict[str, Any], *, patch: bool
                ) -> dict[str, Any]:
        current = self._lookup(cal, eid)
        if current is None:
            raise ApiError(404, "notFound", "Not Found")
        fixed = {k: current[k] for k in READ_ONLY if k in current}
        if patch:
            ev = copy.deepcopy(current)
            _merge(ev, {k: v for k, v in data.items() if k not in READ_ONLY})
        else:
            ev = {k: copy.deepcopy(v) for k, v in data.items() if k not in READ_ONLY}
            ev.setdefault("status", "confirmed")
            ev.setdefault("sequence", current.get("sequence", 0))
            if "recurringEventId" in current:
                ev.pop("recurrence", None)
        ev.update(fixed)
        if "recurringEventId" in ev:
            ev.pop("recurrence", None)
        if ev.get("status") == "cancelled" and "recurringEventId" not in ev:
            raise ApiError(400, "invalid", "Use events.delete to cancel an event.")
        self._validate(cal, ev)
        bumped = current.get("sequence", 0) + any(
            ev.get(k) != current.get(k) for k in ("start", "end", "recurrence"))
        ev["sequence"] = max(int(ev.get("sequence", 0)), bumped)
        self._touch(cal, ev)
        return copy.deepcopy(ev)

    def _delete(self, cal: str, eid: str) -> None:
        current = self._lookup(cal, eid)
        if current is None:
            raise ApiError(404, "notFound", "Not Found")
        if current.get("status") == "cancelled":
            raise ApiError(410, "deleted", "Resource has been deleted")
        current["status"] = "cancelled"
        self._touch(cal, current)
        if current.get("recurrence"):
            prefix = eid + "_"
            for other in list(self._events[cal].values()):
                if other.get("recurringEventId") == eid and other["id"].startswith(prefix) \
                        and other.get("status") != "cancelled":
                    self._touch(cal, dict(other, status="cancelled"))

    # ------------------------------------------------------------------ events: reads
    def _lookup(self, cal: str, eid: str) -> dict[str, Any] | None:
        """A stored event, or a generated instance of a series, as a copy."""
        stored = self._events[cal].get(eid)
        if stored is not None:
            return copy.deepcopy(stored)
        master_id, sep, stamp = eid.rpartition("_")
        master = self._events[cal].get(master_id) if sep else None
        if master is None or not master.get("recurrence") or master.get("status") == "cancelled":
            return None
        occ = self._parse_stamp(cal, master, stamp)
        if occ is None:
            return None
        for found in self._occurrences(cal, master, occ - timedelta(seconds=1),
                                       occ + timedelta(seconds=1)):
            if self._instance_id(master, found) == eid:
                return self._instance(master, found)
        return None

    def _parse_stamp(self, cal: str, master: dict[str, Any], stamp: str) -> datetime | None:
        try:
            if master["start"].get("date"):
                day = datetime.strptime(stamp, "%Y%m%d")
                return day.replace(tzinfo=_zone(self._calendars[cal]["timeZone"]))
            return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None

    def _bounds(self, cal: str, ev: dict[str, Any]) -> tuple[datetime, datetime]:
        """Aware start and end instants of an event (all-day: midnight, calendar zone)."""
        cal_tz = _zone(self._calendars[cal]["timeZone"])

        def instant(t: dict[str, Any]) -> datetime:
            if t.get("date"):
                return datetime.combine(date.fromisoformat(t["date"]), datetime.min.time(),
                                        cal_tz)
            dt = datetime.fromisoformat(t["dateTime"])
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=_zone(t["timeZone"]))
            return dt

        return instant(ev["start"]), instant(ev["end"])

    def _series_zone(self, cal: str, master: dict[str, Any]) -> tuple[ZoneInfo, str]:
        name = master["start"].get("timeZone") or self._calendars[cal]["timeZone"]
        return _zone(name), name

    def _ruleset(self, cal: str, master: dict[str, Any]) -> rrule.rruleset:
        """A dateutil rruleset for a master; all-day series use naive midnights."""
        all_day = bool(master["start"].get("date"))
        tz, _ = self._series_zone(cal, master)
        start, _ = self._bounds(cal, master)
        dtstart = start.replace(tzinfo=None) if all_day else start.astimezone(tz)
        rs = rrule.rruleset()

        def value(raw: str, params: dict[str, str]) -> datetime:
            raw = raw.strip()
            if len(raw) == 8:
                day = datetime.strptime(raw, "%Y%m%d")
                if all_day:
                    return day
                return day.replace(hour=dtstart.hour, minute=dtstart.minute, tzinfo=tz)
            if raw.endswith("Z"):
                dt = datetime.strptime(raw, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                return dt.astimezone(tz).replace(tzinfo=None) if all_day else dt
            dt = datetime.strptime(raw, "%Y%m%dT%H%M%S")
            return dt if all_day else dt.replace(tzinfo=_zone(params.get("TZID", tz.key)))

        try:
            for line in master.get("recurrence") or []:
                name_params, _, val = line.partition(":")
                name, *plist = name_params.split(";")
                params = dict(p.split("=", 1) for p in plist if "=" in p)
                name = name.upper()
                if name in ("RRULE", "EXRULE"):
                    rule = self._fix_until(val, all_day, tz)
                    parsed = rrule.rrulestr(rule, dtstart=dtstart)
                    (rs.rrule if name == "RRULE" else rs.exrule)(parsed)
                elif name in ("RDATE", "EXDATE"):
                    for raw in val.split(","):
                        (rs.rdate if name == "RDATE" else rs.exdate)(value(raw, params))
                else:
                    raise ValueError(f"unsupported recurrence line {line!r}")
        except (ValueError, KeyError) as exc:
            raise ApiError(400, "invalid", f"Invalid recurrence rule: {exc}") from exc
        if not master.get("recurrence"):
            rs.rdate(dtstart)
        return rs

    @staticmethod
    def _fix_until(rule: str, all_day: bool, tz: ZoneInfo) -> str:
        """Make UNTIL agree with DTSTART as dateutil requires (UTC if aware, naive if not)."""
        def fix(m: re.Match[str]) -> str:
            raw = m.group(1)
            if all_day:
                return f"UNTIL={raw[:8]}T235959"
            if raw.endswith("Z"):
                return f"UNTIL={raw}"
            local = (datetime.strptime(raw, "%Y%m%d").replace(hour=23, minute=59, second=59)
                     if len(raw) == 8 else datetime.strptime(raw, "%Y%m%dT%H%M%S"))
            return "UNTIL=" + local.replace(tzinfo=tz).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

        return re.sub(r"UNTIL=([0-9TZ]+)", fix, rule)

    def _occurrences(self, cal: str, master: dict[str, Any], lo: datetime, hi: datetime
                     ) -> list[datetime]:
        """Aware occurrence starts of a series whose span overlaps (lo, hi)."""
        start, end = self._bounds(cal, master)
        duration = end - start
        rs = self._ruleset(cal, master)
        all_day = bool(master["start"].get("date"))
        cal_tz = _zone(self._calendars[cal]["timeZone"])
        lo2 = lo - duration
        if all_day:
            a = lo2.astimezone(cal_tz).replace(tzinfo=None)
            b = hi.astimezone(cal_tz).replace(tzinfo=None)
            found = [d.replace(tzinfo=cal_tz) for d in rs.between(a, b, inc=True)]
        else:
            found = list(rs.between(lo2, hi, inc=True))
        return [d for d in found if d < hi and d + duration > lo][:5000]

    def _instance_id(self, master: dict[str, Any], occ: datetime) -> str:
        if master["start"].get("date"):
            return f"{master['id']}_{occ.strftime('%Y%m%d')}"
        return f"{master['id']}_{occ.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"

    def _instance(self, master: dict[str, Any], occ: datetime) -> dict[str, Any]:
        """A generated (unmodified) instance of a series (shares the master's nested values)."""
        inst = dict(master)
        inst.pop("recurrence", None)
        inst["id"] = self._instance_id(master, occ)
        inst["recurringEventId"] = master["id"]
        if master["start"].get("date"):
            days = (date.fromisoformat(master["end"]["date"])
                    - date.fromisoformat(master["start"]["date"]))
            inst["originalStartTime"] = {"date": occ.date().isoformat()}
            inst["start"] = {"date": occ.date().isoformat()}
            inst["end"] = {"date": (occ.date() + days).isoformat()}
        else:
            tz_name = master["start"]["timeZone"]
            s_wall = datetime.fromisoformat(master["start"]["dateTime"])
            e_wall = datetime.fromisoformat(master["end"]["dateTime"])
            if s_wall.tzinfo is not None:
                s_wall = s_wall.astimezone(_zone(tz_name))
            end_tz = master["end"].get("timeZone", tz_name)
            if e_wall.tzinfo is not None:
                e_wall = e_wall.astimezone(_zone(end_tz))
            length = e_wall.replace(tzinfo=None) - s_wall.replace(tzinfo=None)
            local = occ.astimezone(_zone(tz_name))
            end_local = (local.replace(tzinfo=None) + length).replace(tzinfo=_zone(end_tz))
            inst["originalStartTime"] = {"dateTime": local.isoformat(), "timeZone": tz_name}
            inst["start"] = {"dateTime": local.isoformat(), "timeZone": tz_name}
            inst["end"] = {"dateTime": end_local.isoformat(), "timeZone": end_tz}
        return inst

    def _exceptions(self, cal: str) -> dict[str, dict[str, dict[str, Any]]]:
        """Stored exceptions by series id, then by instance id."""
        index: dict[str, dict[str, dict[str, Any]]] = {}
        for ev in self._events[cal].values():
            if ev.get("recurringEventId"):
                index.setdefault(ev["recurringEventId"], {})[ev["id"]] = ev
        return index

    def _expand(self, cal: str, master: dict[str, Any], lo: datetime, hi: datetime,
                show_deleted: bool, index: dict[str, dict[str, dict[str, Any]]] | None = None
                ) -> list[dict[str, Any]]:
        """Instances of a series overlapping (lo, hi), exceptions substituted."""
        out = []
        exceptions = (index if index is not None else self._exceptions(cal)).get(master["id"], {})
        for occ in self._occurrences(cal, master, lo, hi):
            iid = self._instance_id(master, occ)
            if iid not in exceptions:
                out.append(self._instance(master, occ))
        for exc in exceptions.values():
            if exc.get("status") == "cancelled":
                if show_deleted:
                    out.append(dict(exc))
                continue
            s, e = self._bounds(cal, exc)
            if e > lo and s < hi:
                out.append(dict(exc))
        return out

    def _instances(self, cal: str, eid: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if "pageToken" in query:
            return self._next_page(cal, query)
        master = self._events[cal].get(eid)
        if master is None or master.get("status") == "cancelled":
            raise ApiError(404 if master is None else 410, None)
        show_deleted = query.get("showDeleted", ["false"])[0] == "true"
        lo, hi = self._window(query)
        if master.get("recurrence"):
            items = self._expand(cal, master, lo, hi, show_deleted)
        else:
            items = [dict(master)]
        if "originalStart" in query:
            want = _parse_rfc3339(query["originalStart"][0])
            items = [i for i in items if self._original_start(cal, i) == want]
        items.sort(key=lambda i: self._original_start(cal, i))
        return self._paged(cal, query, items, sync=False)

    def _original_start(self, cal: str, inst: dict[str, Any]) -> datetime:
        t = inst.get("originalStartTime") or inst["start"]
        return self._bounds(cal, {"start": t, "end": t})[0]

    def _window(self, query: dict[str, list[str]]) -> tuple[datetime, datetime]:
        lo = (_parse_rfc3339(query["timeMin"][0]) if "timeMin" in query
              else datetime(1970, 1, 1, tzinfo=UTC))
        hi = (_parse_rfc3339(query["timeMax"][0]) if "timeMax" in query
              else self.clock() + timedelta(days=self.horizon_days))
        return lo, hi

    def _list(self, cal: str, query: dict[str, list[str]]) -> dict[str, Any]:
        def flag(name: str) -> bool:
            return query.get(name, ["false"])[0] == "true"

        if "pageToken" in query:
            return self._next_page(cal, query)
        single = flag("singleEvents")
        stored = list(self._events[cal].values())
        index = self._exceptions(cal)
        if "syncToken" in query:
            bad = [p for p in SYNC_FORBIDDEN if p in query]
            if bad:
                raise ApiError(400, "invalid",
                               f"syncToken cannot be combined with {', '.join(bad)}")
            known = self._sync_tokens.get(query["syncToken"][0])
            if known is None or known[0] != cal:
                raise ApiError(410, "fullSyncRequired")
            since = known[1]
            changed = [e for e in stored if self._changed[(cal, e["id"])] > since]
            changed_ids = {e["id"] for e in changed}
            items: list[dict[str, Any]] = []
            for ev in changed:
                if single and ev.get("recurrence") and ev.get("status") != "cancelled":
                    lo, hi = self._window({})
                    items += [i for i in self._expand(cal, ev, lo, hi, True, index)
                              if i.get("status") != "cancelled"
                              or self._changed.get((cal, i["id"]), 0) > since]
                elif not (single and ev.get("recurringEventId") in changed_ids):
                    items.append(dict(ev))
            return self._paged(cal, query, items, sync=True)
        if query.get("orderBy", [""])[0] == "startTime" and not single:
            raise ApiError(400, "invalid",
                           "The requested ordering is not available for the particular query.")
        show_deleted = flag("showDeleted")
        updated_min = _parse_rfc3339(query["updatedMin"][0]) if "updatedMin" in query else None
        lo, hi = self._window(query)
        items = []
        for ev in stored:
            cancelled = ev.get("status") == "cancelled"
            if updated_min is not None:
                if _parse_rfc3339(ev["updated"]) < updated_min:
                    continue
                show = True
            else:
                show = show_deleted
            if cancelled:
                if show and not (single and ev.get("recurringEventId")):
                    items.append(dict(ev))
                continue
            if ev.get("recurrence"):
                if single:
                    items += self._expand(cal, ev, lo, hi, show, index)
                elif self._occurrences(cal, ev, lo, hi) or any(
                        e.get("status") != "cancelled" for e in index.get(ev["id"], {}).values()):
                    items.append(ev)
                continue
            if single and ev.get("recurringEventId"):
                continue  # exceptions come with their series' expansion
            if not single and "timeMin" not in query and "timeMax" not in query:
                items.append(dict(ev))  # no bounds asked: every event, however far
                continue
            s, e = self._bounds(cal, ev)
            if e > lo and s < hi or (s == e and lo <= s < hi):
                items.append(dict(ev))
        items = [i for i in items if self._matches(i, query)]
        order = query.get("orderBy", [""])[0]
        if order == "startTime":
            items.sort(key=lambda i: (self._bounds(cal, i)[0] if "start" in i
                                      else self._original_start(cal, i)))
        elif order == "updated":
            items.sort(key=lambda i: i["updated"])
        return self._paged(cal, query, items, sync=True)

    @staticmethod
    def _matches(ev: dict[str, Any], query: dict[str, list[str]]) -> bool:
        for param, scope in (("privateExtendedProperty", "private"),
                             ("sharedExtendedProperty", "shared")):
            props = (ev.get("extendedProperties") or {}).get(scope) or {}
            for cond in query.get(param, []):
                key, _, val = cond.partition("=")
                if props.get(key) != val:
                    return False
        if "iCalUID" in query and ev.get("iCalUID") != query["iCalUID"][0]:
            return False
        if "q" in query:
            text = " ".join(str(ev.get(k, "")) for k in ("summary", "description", "location"))
            if not all(w.lower() in text.lower() for w in query["q"][0].split()):
                return False
        return True

    @staticmethod
    def _minimal(ev: dict[str, Any]) -> dict[str, Any]:
        if ev.get("status") != "cancelled":
            return ev
        keep = ("kind", "etag", "id", "status", "updated", "recurringEventId",
                "originalStartTime")
        return {k: ev[k] for k in keep if k in ev}

    def _paged(self, cal: str, query: dict[str, list[str]], items: list[dict[str, Any]],
               sync: bool) -> dict[str, Any]:
        try:
            size = int(query.get("maxResults", ["250"])[0])
        except ValueError as exc:
            raise ApiError(400, "invalid", "Invalid maxResults") from exc
        if size < 1:
            raise ApiError(400, "invalid", "Invalid maxResults")
        c = self._calendars[cal]
        meta = {"kind": "calendar#events", "etag": f'"{self._change}"', "summary": c["summary"],
                "updated": _fmt_utc(self._last_updated or self.clock()),
                "timeZone": c["timeZone"], "accessRole": "owner",
                "defaultReminders": []}
        page = _Page(cal, [self._minimal(i) for i in items], self._change if sync else -1, meta)
        return self._serve(page, min(size, 2500))

    def _serve(self, page: _Page, size: int) -> dict[str, Any]:
        out = dict(page.meta, items=page.items[:size])
        if len(page.items) > size:
            token = "pg-" + secrets.token_urlsafe(12)
            self._pages[token] = _Page(page.calendar_id, page.items[size:], page.sync_counter,
                                       page.meta)
            out["nextPageToken"] = token
        elif page.sync_counter >= 0:
            token = "sy-" + secrets.token_urlsafe(12)
            self._sync_tokens[token] = (page.calendar_id, page.sync_counter)
            out["nextSyncToken"] = token
        return out

    def _next_page(self, cal: str, query: dict[str, list[str]]) -> dict[str, Any]:
        page = self._pages.get(query["pageToken"][0])
        if page is None or page.calendar_id != cal:
            if "syncToken" in query:
                raise ApiError(410, "fullSyncRequired")
            raise ApiError(400, "invalid", "Invalid page token value.")
        size = min(int(query.get("maxResults", ["250"])[0]), 2500)
        return self._serve(page, size)


class _Handler(JsonHandler):
    """Google's answers (an error body as Google writes one)."""

    no_body_statuses = (204, 302)
    status_text = STATUS_TEXT

    def error_reply(self, exc: Exception) -> Reply:
        return Reply(500, ApiError(500, "backendError", f"fake error: {exc!r}").body())


FakeGoogleCalendar.handler = _Handler  # defined after the class that serves it
FakeGoogleCalendar.thread_name = "fake-google-calendar"
