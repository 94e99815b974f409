"""``POST /bridge/sync/open`` and ``/bridge/sync/close``: Gestan's open/close hooks calling
the running server. HTTP Basic with the user's own credentials (an admin may name another
user).

Body (JSON, optional): ``{"user": "bob", "target": "google", "dry_run": false,
"allow_mass_delete": false, "days_back": 0}``; query parameters work too. Without ``target``
(or with ``"all"``) every target the user has set up runs, one after the other.

Every answer is one JSON object of the same shape, ``{"status", "exit_code", "error",
"runs": [report, ...]}``, the exit code being the CLI's:

====  ==========  =========  ==================================================================
HTTP  status      exit_code  when
====  ==========  =========  ==================================================================
200   ok          0          every run finished
207   skipped     3          every run finished, some items skipped (``runs[].skipped``)
409   stopped     1          a run stopped (quota, mass-delete guard, reconnect needed, remote
                             down, calendar not found) or another sync of the user is running;
                             ``runs`` says what was done before, ``error`` why it stopped
422   stopped     1          nothing could run: unknown target, none set up (``error`` says how)
4xx   refused     2          the request itself: 400 bad parameter, 401, 403, 404 no such user,
                             405, 413
500   failed      1          unexpected error (details in the server's log only)
====  ==========  =========  ==================================================================

Status lines are the standard reason phrases; bodies carry our own messages, never an
exception's text.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import urllib.parse
from http import client

from bridge.store import Store
from bridge.sync.engine import SyncOptions
from bridge.sync.report import EXIT_OK, EXIT_SKIPPED, EXIT_STOPPED
from bridge.sync.runner import SyncSetupError, run_sync

PREFIX = "/bridge/sync/"
MAX_BODY = 64 * 1024
EXIT_REFUSED = 2
HTTP_STATUS = {EXIT_OK: 200, EXIT_SKIPPED: 207, EXIT_STOPPED: 409}
logger = logging.getLogger("gestan_bridge")


class _Refused(Exception):
    """The request is answered with ``status`` and ``message`` (no run result)."""

    def __init__(self, status: int, message: str, headers: dict | None = None, *,
                 outcome: str = "refused", exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.outcome, self.exit_code = outcome, exit_code


def _answer(start_response, status: int, payload: dict, headers: dict | None = None):
    body = json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")
    start_response(f"{status} {client.responses.get(status, '')}", [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))), *(headers or {}).items()])
    return [body]


def _whole_number(value) -> int | None:
    """``days_back`` as given (a JSON number or a query string), or a 400: never a float
    rounded, nor one too large for an integer."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise _Refused(400, "days_back must be a whole number of days")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise _Refused(400, "days_back must be a whole number of days") from None


def _flag(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


class SyncTrigger:
    def __init__(self, store: Store, failure_delay: float = 1.0) -> None:
        self.store = store
        self.failure_delay = failure_delay

    def __call__(self, environ, start_response):
        try:
            direction = environ.get("PATH_INFO", "")[len(PREFIX):].strip("/")
            if direction not in ("open", "close"):
                raise _Refused(404, "use POST /bridge/sync/open or /bridge/sync/close")
            if environ.get("REQUEST_METHOD") != "POST":
                raise _Refused(405, "use POST", {"Allow": "POST"})
            caller = self._caller(environ)
            params = self._params(environ)
            login = str(params.get("user") or caller.login)
            if login != caller.login and not caller.is_admin:
                raise _Refused(403, f"{caller.login} may only sync their own agenda")
            if self.store.user(login) is None:
                raise _Refused(404, f"no such user: {login}")
            days_back = _whole_number(params.get("days_back"))
            if days_back is not None and not 0 <= days_back <= 3650:
                raise _Refused(400, "days_back must be between 0 and 3650")
            options = SyncOptions(dry_run=_flag(params.get("dry_run")),
                                  allow_mass_delete=_flag(params.get("allow_mass_delete")),
                                  days_back=days_back)
            target = params.get("target")
            if target is not None and not isinstance(target, str):
                raise _Refused(400, "target must be a target's name or \"all\"")
            try:
                result = run_sync(self.store, login, direction, target or None, options)
            except SyncSetupError as exc:
                raise _Refused(422, str(exc), outcome="stopped",
                               exit_code=EXIT_STOPPED) from None
        except _Refused as refused:
            return _answer(start_response, refused.status, {
                "status": refused.outcome, "exit_code": refused.exit_code,
                "error": refused.message, "runs": []}, refused.headers)
        except Exception:  # the report of a failed run is in the audit log
            logger.exception("sync trigger failed")
            return _answer(start_response, 500, {
                "status": "failed", "exit_code": EXIT_STOPPED,
                "error": "internal error: see the server's log", "runs": []})
        return _answer(start_response, HTTP_STATUS[result.exit_code], result.to_dict())

    def _caller(self, environ):
        header = environ.get("HTTP_AUTHORIZATION", "")
        challenge = {"WWW-Authenticate": 'Basic realm="gestan-bridge", charset="UTF-8"'}
        if not header.lower().startswith("basic "):
            raise _Refused(401, "credentials required", challenge)
        try:
            login, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refused(401, "malformed credentials", challenge) from None
        user = self.store.authenticate(login, password, environ.get("REMOTE_ADDR"))
        if user is None:
            time.sleep(self.failure_delay)  # as Radicale's [auth] delay does for CalDAV
            raise _Refused(401, "wrong login or password", challenge)
        return user

    @staticmethod
    def _params(environ) -> dict:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(
            environ.get("QUERY_STRING", "")).items()}
        length_text = environ.get("CONTENT_LENGTH") or "0"
        if not length_text.isdigit():
            raise _Refused(400, "invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY:
            raise _Refused(413, "request body too large")
        raw = environ["wsgi.input"].read(length) if length else b""
        if raw.strip():
            try:
                body = json.loads(raw)
            except (ValueError, RecursionError):  # malformed, or nested without end
                raise _Refused(400, "the body must be JSON") from None
            if not isinstance(body, dict):
                raise _Refused(400, "the body must be a JSON object")
            params.update(body)
        return params
