"""``POST /bridge/sync/open`` and ``/bridge/sync/close``: Gestan's open/close hooks calling
the running server. HTTP Basic with the user's own credentials (an admin may name another
user); the answer is the run report as JSON, the same as the CLI prints.

Body (JSON, optional): ``{"user": "bob", "target": "google", "dry_run": false,
"allow_mass_delete": false, "days_back": 0}``; query parameters work too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import urllib.parse
from http import client

from bridge.store import Store
from bridge.sync.engine import MassDelete, SyncBusy, SyncOptions
from bridge.sync.runner import SyncSetupError, run_sync

PREFIX = "/bridge/sync/"
MAX_BODY = 64 * 1024
logger = logging.getLogger("gestan_bridge")


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _answer(start_response, status: int, payload: dict, headers: dict | None = None):
    body = json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8")
    start_response(f"{status} {client.responses.get(status, '')}", [
        ("Content-Type", "application/json; charset=utf-8"),
        ("Content-Length", str(len(body))), *(headers or {}).items()])
    return [body]


def _flag(value) -> bool:
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


class SyncTrigger:
    def __init__(self, store: Store) -> None:
        self.store = store

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
            days_back = params.get("days_back")
            try:
                days_back = None if days_back in (None, "") else int(days_back)
            except (TypeError, ValueError):
                raise _Refused(400, "days_back must be a whole number of days") from None
            if days_back is not None and not 0 <= days_back <= 3650:
                raise _Refused(400, "days_back must be between 0 and 3650")
            options = SyncOptions(dry_run=_flag(params.get("dry_run")),
                                  allow_mass_delete=_flag(params.get("allow_mass_delete")),
                                  days_back=days_back)
            try:
                report = run_sync(self.store, login, direction,
                                  str(params.get("target") or "google"), options)
            except SyncBusy as exc:
                raise _Refused(409, str(exc)) from None
            except (SyncSetupError, MassDelete) as exc:
                raise _Refused(422, str(exc)) from None
        except _Refused as refused:
            return _answer(start_response, refused.status, {"error": refused.message},
                           refused.headers)
        except Exception as exc:  # the report of a failed run is in the audit log
            logger.exception("sync trigger failed")
            return _answer(start_response, 500, {"error": f"{type(exc).__name__}: {exc}"})
        return _answer(start_response, 200, report.to_dict())

    def _caller(self, environ):
        header = environ.get("HTTP_AUTHORIZATION", "")
        challenge = {"WWW-Authenticate": 'Basic realm="gestan-bridge", charset="UTF-8"'}
        if not header.lower().startswith("basic "):
            raise _Refused(401, "credentials required", challenge)
        try:
            login, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise _Refused(401, "malformed credentials", challenge) from None
        user = self.store.authenticate(login, password)
        if user is None:
            raise _Refused(401, "wrong login or password", challenge)
        return user

    @staticmethod
    def _params(environ) -> dict:
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(
            environ.get("QUERY_STRING", "")).items()}
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise _Refused(400, "invalid Content-Length") from None
        if length > MAX_BODY:
            raise _Refused(413, "request body too large")
        raw = environ["wsgi.input"].read(length) if length else b""
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise _Refused(400, f"the body must be JSON: {exc}") from None
            if not isinstance(body, dict):
                raise _Refused(400, "the body must be a JSON object")
            params.update(body)
        return params
