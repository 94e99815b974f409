"""``POST /bridge/sync/open`` and ``/bridge/sync/close``: Gestan's open/close hooks calling
the running server. HTTP Basic with the user's own credentials (an admin may name another
user), checked by Radicale's own authentication, as for CalDAV: the same users, the same
``[auth] delay`` after a failure, the same limit of failed logins
(bridge.store.users.LoginGuard), the same body limit (``[server] max_content_length``).

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
                             405, 411, 413
500   failed      1          unexpected error (details in the server's log only)
====  ==========  =========  ==================================================================

Status lines are the standard reason phrases; bodies carry our own messages, never an
exception's text.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Iterable
from http import client

from radicale import httputils, types

from bridge.store import Store
from bridge.sync.engine import SyncOptions
from bridge.sync.report import EXIT_OK, EXIT_SKIPPED, EXIT_STOPPED
from bridge.sync.runner import SyncSetupError, run_sync

PREFIX = "/bridge/sync/"
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


def _payload(status: int, payload: dict, headers: dict | None = None
             ) -> tuple[int, dict, bytes]:
    body = json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")
    return status, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, body


def _refused(refused: _Refused) -> tuple[int, dict, bytes]:
    return _payload(refused.status, {"status": refused.outcome, "exit_code": refused.exit_code,
                                     "error": refused.message, "runs": []}, refused.headers)


def _answer(start_response, status: int, headers: dict, body: bytes) -> list[bytes]:
    start_response(f"{status} {client.responses.get(status, '')}", [
        *headers.items(), ("Content-Length", str(len(body)))])
    return [body]


# What Radicale (or the application before it) answers itself on a trigger's path, said
# in the triggers' JSON shape.
_THEIR_ANSWERS = {401: "wrong login or password", 403: "forbidden",
                  413: "request body too large", 411: "send the body with a Content-Length",
                  400: "bad request", 500: "internal error: see the server's log"}
_KEPT_HEADERS = ("www-authenticate", "allow", "retry-after")


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


Serve = Callable[[types.WSGIEnviron, Callable], Iterable[bytes]]


class SyncTrigger:
    """The triggers, in two steps: :meth:`__call__` answers what needs no login (an unknown
    path, a method other than POST) and hands the rest to Radicale, whose authenticated
    ``do_POST`` calls :meth:`run`."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, environ, start_response, serve: Serve) -> Iterable[bytes]:
        """Answer a request under :data:`PREFIX`; ``serve`` is the application's way
        through Radicale (authentication, limits, then ``do_POST``)."""
        try:
            self._direction(environ.get("PATH_INFO", ""))
            if environ.get("REQUEST_METHOD") != "POST":
                raise _Refused(405, "use POST", {"Allow": "POST"})
        except _Refused as refused:
            return _answer(start_response, *_refused(refused))
        seen: dict = {}

        def capture(status: str, headers: list, exc_info=None) -> None:
            seen.update(status=status, headers=headers)

        body = b"".join(serve(environ, capture))
        headers = dict(seen["headers"])
        if headers.get("Content-Type", "").startswith("application/json"):
            start_response(seen["status"], seen["headers"])
            return [body]
        status = int(seen["status"][:3])
        message = _THEIR_ANSWERS.get(status, client.responses.get(status, "refused"))
        if status == 401 and not environ.get("HTTP_AUTHORIZATION"):
            message = "credentials required"
        kept = {k: v for k, v in headers.items() if k.lower() in _KEPT_HEADERS}
        outcome, code = ("failed", EXIT_STOPPED) if status >= 500 else ("refused",
                                                                         EXIT_REFUSED)
        return _answer(start_response, *_refused(_Refused(status, message, kept,
                                                          outcome=outcome, exit_code=code)))

    @staticmethod
    def _direction(path: str) -> str:
        direction = path[len(PREFIX):].strip("/") if path.startswith(PREFIX) else ""
        if direction not in ("open", "close"):
            raise _Refused(404, "use POST /bridge/sync/open or /bridge/sync/close")
        return direction

    def run(self, environ, path: str, login: str) -> types.WSGIResponse:
        """The POST of ``login`` (authenticated by Radicale; "" without credentials, which
        Radicale then asks for)."""
        if not login:
            return httputils.NOT_ALLOWED
        try:
            direction = self._direction(path)
            caller = self.store.user(login)
            if caller is None:
                raise _Refused(403, "unknown caller")
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
            return (*_refused(refused), None)
        except Exception:  # the report of a failed run is in the audit log
            logger.exception("sync trigger failed")
            return (*_payload(500, {"status": "failed", "exit_code": EXIT_STOPPED,
                                    "error": "internal error: see the server's log",
                                    "runs": []}), None)
        return (*_payload(HTTP_STATUS[result.exit_code], result.to_dict()), None)

    @staticmethod
    def _params(environ) -> dict:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(
            environ.get("QUERY_STRING", "")).items()}
        length_text = environ.get("CONTENT_LENGTH") or "0"
        if not length_text.isdigit():
            raise _Refused(400, "invalid Content-Length")
        length = int(length_text)   # within [server] max_content_length (checked before)
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
