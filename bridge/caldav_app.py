"""Radicale's WSGI application with the answers our one-calendar design owes its users.

Radicale answers a refused request with a bare "403 Forbidden" or "400 Bad Request". Phones
and the web UI deserve the reason: this subclass checks what only gestan-bridge knows (the
appointment is valid for Gestan, the calendar cannot be deleted, no other collection can
exist) before handing over to Radicale, and puts the reason in the body. Status lines carry
only the standard reason phrase: a reason can quote what the client sent (a UID, a zone), and
a status line or header must never carry client text (CR/LF there is header injection).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import xml.etree.ElementTree as ET
import zlib
from datetime import datetime, timedelta
from http import client

import radicale
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as DefusedET
from radicale import pathutils, types
from radicale.app.base import Access

from bridge import caldav_put, principal_search
from bridge import radicale_compat as compat
from bridge.expand_report import ExpandReports, TooManyInstances
from bridge.fast_report import FastReports
from bridge.freebusy_report import FreeBusyRefused, FreeBusyReports
from bridge.http_sync import PREFIX as SYNC_PREFIX
from bridge.http_sync import SyncTrigger
from bridge.ical import InvalidObject, parse_object
from bridge.ical.repair import note as note_repairs
from bridge.refusals import precondition, refusal
from plugins.common import CALENDAR_NAME, store_for


def _as_bytes(body) -> bytes:
    return body.encode() if isinstance(body, str) else body or b""


def _put_back(environ, body: bytes) -> None:
    """Hand a body we read (and un-gzipped) on to Radicale as if it were never read."""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("HTTP_CONTENT_ENCODING", None)


_COMPONENT_SET = "{urn:ietf:params:xml:ns:caldav}supported-calendar-component-set"
_EXPAND = "{urn:ietf:params:xml:ns:caldav}expand"
_FREE_BUSY = "{urn:ietf:params:xml:ns:caldav}free-busy-query"
_CALENDAR_REPORTS = {"{urn:ietf:params:xml:ns:caldav}calendar-multiget", _FREE_BUSY,
                     "{DAV:}sync-collection"}
_SYNC_TOKEN_REFUSED = b"<valid-sync-token"   # Radicale's DAV:error, without a word
_XML_METHODS = {"PROPFIND", "REPORT", "PROPPATCH", "MKCALENDAR", "MKCOL"}
MAX_XML_DEPTH = 64             # CalDAV bodies are a dozen levels deep at most
MAX_EXPAND = timedelta(days=5 * 366)


def _drop_malformed_credentials(environ) -> str | None:
    """Basic credentials that cannot be read (no colon, not base64) count as none, where
    Radicale 3.9 answered 500: why, or None when they can be read."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    if header[:5].lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(header[5:].strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        decoded = b""
    if b":" in decoded:
        return None
    environ.pop("HTTP_AUTHORIZATION", None)
    return "the Basic credentials cannot be read: expected base64 of login:password"


def xml_problem(raw: bytes) -> str | None:
    """Why an XML request body is refused, or None: malformed XML (where Radicale answers
    a bare 400), a DTD (entity expansion), nesting deeper than :data:`MAX_XML_DEPTH`, an
    ``<expand>`` longer than :data:`MAX_EXPAND`."""
    depth = 0
    try:
        for event, element in DefusedET.iterparse(io.BytesIO(raw), events=("start", "end"),
                                                  forbid_dtd=True):
            if event == "end":
                depth -= 1
                continue
            depth += 1
            if depth > MAX_XML_DEPTH:
                return f"XML nested deeper than {MAX_XML_DEPTH} levels"
            if element.tag == _EXPAND:
                span = _expand_span(element)
                if span is not None and span > MAX_EXPAND:
                    return "an <expand> may cover five years at most: ask for less"
    except DefusedXmlException:
        return "XML with a DTD or entities is not accepted"
    except DefusedET.ParseError as exc:
        return f"malformed XML: {exc}"
    return None


def _expand_span(element) -> timedelta | None:
    try:
        start, end = (datetime.strptime(element.get(k, ""), "%Y%m%dT%H%M%SZ")
                      for k in ("start", "end"))
    except ValueError:
        return None
    return end - start


def _changes_component_set(raw: bytes) -> bool:
    """Whether a PROPPATCH body sets the component set to anything but VEVENT, or removes it
    (malformed XML is left for Radicale to refuse)."""
    try:
        root = DefusedET.fromstring(raw) if raw.strip() else None
    except Exception:
        return False
    if root is None:
        return False
    for action in root:
        for found in action.iter(_COMPONENT_SET):
            names = {c.get("name", "").upper() for c in found}
            if action.tag == "{DAV:}remove" or names != {"VEVENT"}:
                return True
    return False


def _changes_resource_type(raw: bytes) -> bool:
    """Whether a PROPPATCH body sets or removes ``resourcetype``."""
    try:
        root = DefusedET.fromstring(raw) if raw.strip() else None
    except Exception:
        return False
    return root is not None and any(True for _ in root.iter("{DAV:}resourcetype"))


class GestanApplication(radicale.Application):
    def __init__(self, configuration) -> None:
        super().__init__(configuration)
        self.store = store_for(configuration)
        # one body limit: [server] max_content_length (bridge.config)
        self.max_body: int = configuration.get("server", "max_content_length")
        self.strict_preconditions: bool = configuration.get("storage", "strict_preconditions")
        self.max_resource_size: int = configuration.get("server", "max_resource_size")
        self.max_occurrences: int = configuration.get("server", "max_vevent_rrule_occurrence")
        self.sync_trigger = SyncTrigger(self.store)
        self.fast_reports: FastReports | None = FastReports(
            self.store, compat.rights(self), compat.encoding(self))
        self.expand_reports: ExpandReports | None = ExpandReports(
            compat.storage(self), compat.rights(self), compat.encoding(self),
            configuration.get("reporting", "max_expand_occurrence"))
        self.freebusy_reports = FreeBusyReports(
            compat.storage(self), compat.rights(self), compat.encoding(self),
            configuration.get("reporting", "max_freebusy_occurrence"))

    def __call__(self, environ, start_response):
        def named_start_response(status, headers, exc_info=None):
            # the product's name only: wsgiref's default names Python and its version
            if not any(name.lower() == "server" for name, _ in headers):
                headers = [*headers, ("Server", "gestan-bridge")]
            return start_response(status, headers, exc_info)

        with self.store.request_scope():
            if environ.get("PATH_INFO", "").startswith(SYNC_PREFIX):
                return self.sync_trigger(environ, named_start_response, self._serve)
            return self._serve(environ, named_start_response)

    def _serve(self, environ, start_response):
        unreadable = _drop_malformed_credentials(environ)
        refused = self._refuse_hostile(environ)
        if refused is not None:
            status, headers, data, _ = refused
            start_response(f"{status} {client.responses.get(status, '')}", [
                *headers.items(), ("Content-Length", str(len(data)))])
            return [data]
        if unreadable:
            return self._explained_challenge(environ, start_response, unreadable)
        return super().__call__(environ, start_response)

    def _explained_challenge(self, environ, start_response, reason: str):
        """Radicale's answer, its 401 (the login challenge) saying why the credentials
        sent were not taken."""
        answered: list = []

        def keep(status, headers, exc_info=None):
            answered[:] = [status, headers]
            return lambda data: None

        body = super().__call__(environ, keep)
        status, headers = answered
        if status.startswith("401"):
            _, _, data, _ = refusal(401, reason)
            body = [data]
            headers = [(k, v) for k, v in headers if k.lower() not in (
                "content-length", "content-type", "content-encoding")]
            headers += [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body[0])))]
        start_response(status, headers)
        return body

    def _refuse_hostile(self, environ) -> types.WSGIResponse | None:
        """What Radicale 3.9 answers with a 500 (or worse) is refused here with a reason: a
        Content-Length that is not a size, XML with a DTD or nested without end, an
        ``<expand>`` over thousands of years."""
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return refusal(411, "send the body with a Content-Length: chunked transfer "
                                "is not supported")
        length = environ.get("CONTENT_LENGTH") or "0"
        if not length.isdigit():
            return refusal(400, "invalid Content-Length")
        if int(length) > self.max_body:
            return refusal(413, f"request body larger than {self.max_body} bytes")
        if environ.get("REQUEST_METHOD") not in _XML_METHODS or length == "0":
            return None
        try:
            raw = self._read_body(environ)
        except InvalidObject as exc:
            return refusal(exc.status, exc.reason)
        _put_back(environ, raw)
        problem = xml_problem(raw)
        return refusal(400, problem) if problem else None

    # ------------------------------------------------------------ helpers
    @staticmethod
    def _parts(path: str) -> list[str]:
        return [p for p in pathutils.strip_path(path).split("/") if p]

    def _allowed(self, user: str, user_groups: set, path: str, permission: str) -> bool:
        return bool(user) and Access(compat.rights(self), user, user_groups, path).check(
            permission)

    # ------------------------------------------------------------ methods
    def do_PUT(self, environ, base_prefix, path, user, user_groups, request_info):
        parts = self._parts(path)
        if not user or len(parts) < 1 or not self._allowed(user, user_groups, f"/{parts[0]}/", "r"):
            return super().do_PUT(environ, base_prefix, path, user, user_groups, request_info)
        if len(parts) != 3 or parts[1] != CALENDAR_NAME:
            return refusal(403, f"only appointments can be written, inside /{parts[0]}/"
                           f"{CALENDAR_NAME}/; to load an .ics file run: gestan-bridge agenda "
                           f"import --user {parts[0]} FILE.ics")
        if not self._allowed(user, user_groups, path, "w"):
            return super().do_PUT(environ, base_prefix, path, user, user_groups, request_info)
        try:
            body = self._read_body(environ)
            owner = self.store.require_user(parts[0])
            parsed = parse_object(body, owner.timezone)
            # a repaired object goes on as repaired (Radicale refuses some shapes we repair)
            text = parsed.repaired_ics or body.decode("utf-8-sig")
            caldav_put.check_readable(text)
            caldav_put.check_limits(parsed, text, self.max_resource_size,
                                    self.max_occurrences)
        except InvalidObject as exc:
            return refusal(exc.status, exc.reason)
        answer = caldav_put.put(self, self.store, environ, path, owner.login, parts[2], parsed,
                                self.strict_preconditions, request_info)
        if parsed.repairs and answer[0] < 300:
            note_repairs(path, parsed.repairs)
            # RFC 4791 5.3.4: no ETag for what is stored otherwise than sent, so the phone
            # fetches the repaired version instead of keeping its own
            status, headers, *rest = answer
            answer = (status, {k: v for k, v in headers.items() if k != "ETag"}, *rest)
        return answer

    def _read_body(self, environ) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise InvalidObject("invalid Content-Length") from None
        if length > self.max_body:
            raise InvalidObject(f"request body larger than {self.max_body} bytes", 413)
        body = environ["wsgi.input"].read(length) if length else b""
        if len(body) < length:
            raise InvalidObject("request body shorter than its Content-Length")
        encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
        if encoding == "gzip":
            try:
                decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                body = decompressor.decompress(body, self.max_body + 1)
            except (zlib.error, gzip.BadGzipFile) as exc:
                raise InvalidObject(f"body is not valid gzip: {exc}") from exc
            if len(body) > self.max_body:
                raise InvalidObject(f"request body larger than {self.max_body} bytes", 413)
        elif encoding not in ("", "identity"):
            raise InvalidObject(f"unsupported Content-Encoding {encoding!r}", 415)
        return body

    def do_REPORT(self, environ, base_prefix, path, user, user_groups, request_info):
        """A phone's sync and multiget from SQL rows (bridge.fast_report), expansions
        that no object can fail (bridge.expand_report), free-busy from the stored
        occurrences (bridge.freebusy_report), a principal search that finds the user
        (bridge.principal_search); the rest as Radicale does it."""
        if not user:
            return super().do_REPORT(environ, base_prefix, path, user, user_groups,
                                     request_info)
        try:
            raw = self._read_body(environ)
        except InvalidObject as exc:
            return refusal(exc.status, exc.reason)
        refused = self._report_needs_calendar(raw, path, user, user_groups)
        if refused is not None:
            return refused
        answer = None
        if self.fast_reports is not None:
            with compat.storage(self).acquire_lock("r", user, path=path):
                answer = self.fast_reports.answer(raw, base_prefix, path, user, user_groups)
        if answer is None and self.expand_reports is not None:
            try:
                answer = self.expand_reports.answer(raw, base_prefix, path, user, user_groups)
            except (TooManyInstances, ValueError) as exc:  # ValueError: a malformed filter
                return refusal(400, str(exc))
        if answer is None:
            try:
                answer = self.freebusy_reports.answer(raw, path, user, user_groups)
            except FreeBusyRefused as exc:
                return refusal(400, str(exc))
        if answer is not None:
            return (*answer, None)
        if b"principal-" in raw:
            found = self._principal_report(raw, environ, base_prefix, path, user, user_groups,
                                           request_info)
            if found is not None:
                return found
        _put_back(environ, raw)
        answer = super().do_REPORT(environ, base_prefix, path, user, user_groups, request_info)
        if answer[0] == client.FORBIDDEN and _SYNC_TOKEN_REFUSED in _as_bytes(answer[2]):
            return precondition(client.FORBIDDEN, "{DAV:}valid-sync-token", "this sync-token "
                                "was not issued by this calendar (or not yet): sync again "
                                "without one", compat.encoding(self))
        return answer

    def _report_needs_calendar(self, raw: bytes, path: str, user: str, user_groups: set
                               ) -> types.WSGIResponse | None:
        """A multiget, sync or free-busy REPORT sent elsewhere than to a calendar: the
        ``supported-report`` precondition Radicale answers, with the reason."""
        parts = self._parts(path)
        if len(parts) == 2 and parts[1] == CALENDAR_NAME or not any(
                name in raw for name in (b"multiget", b"free-busy", b"sync-collection")):
            return None  # a phone's REPORT on its calendar is not parsed twice
        try:
            tag = DefusedET.fromstring(raw).tag if raw.strip() else None
        except Exception:
            return None
        if len(parts) > 2 and parts[1] == CALENDAR_NAME and tag != _FREE_BUSY:
            return None  # a multiget or sync on an appointment answers for its calendar
        if tag not in _CALENDAR_REPORTS or not self._allowed(user, user_groups, path, "r"):
            return None
        name = tag.split("}")[1]
        return precondition(403, "{DAV:}supported-report", f"a {name} REPORT is answered "
                            f"by a calendar (yours: /{user}/{CALENDAR_NAME}/), not by {path}",
                            compat.encoding(self))

    def _principal_report(self, raw: bytes, environ, base_prefix, path, user, user_groups,
                          request_info) -> types.WSGIResponse | None:
        """A principal search: the user's own principal as PROPFIND shows it, if it
        matches (bridge.principal_search); None for another REPORT."""
        try:
            root = DefusedET.fromstring(raw)
        except Exception:
            return None
        headers = {"Content-Type": f"text/xml; charset={compat.encoding(self)}"}
        if root.tag == principal_search.PROPERTY_SET:
            body = ET.tostring(principal_search.property_set(), encoding=compat.encoding(self),
                               xml_declaration=True)
            return client.OK, headers, body, None
        if root.tag != principal_search.SEARCH:
            return None
        account = self.store.user(user)
        if (account is None or not principal_search.in_scope(root, path, user)
                or not principal_search.matches(root, account)):
            empty = ET.tostring(ET.Element("{DAV:}multistatus"), encoding=compat.encoding(self),
                                xml_declaration=True)
            return client.MULTI_STATUS, headers, empty, None
        query = principal_search.propfind_body(root)
        propfind = dict(environ, REQUEST_METHOD="PROPFIND", HTTP_DEPTH="0")
        _put_back(propfind, query)
        return super().do_PROPFIND(propfind, base_prefix, f"/{user}/", user, user_groups,
                                   request_info)

    def do_PROPPATCH(self, environ, base_prefix, path, user, user_groups, request_info):
        """Name, description and colour may change; the component set stays VEVENT (else a
        client would believe the calendar now takes tasks). Nothing else has properties a
        client may change (Radicale answered a bare 403)."""
        parts = self._parts(path)
        if user and (len(parts) != 2 or parts[1] != CALENDAR_NAME):
            return refusal(403, "only a calendar's name, description, colour and order can "
                           f"change (yours: /{user}/{CALENDAR_NAME}/): nothing else here has "
                           "properties a client may set")
        if user:
            try:
                raw = self._read_body(environ)
            except InvalidObject as exc:
                return refusal(exc.status, exc.reason)
            if _changes_component_set(raw):
                return refusal(403, "this calendar holds appointments (VEVENT) only: its "
                               "supported component set cannot change")
            if _changes_resource_type(raw):  # Radicale 3.9 wrote the rest, then answered 400
                return refusal(403, "the calendar's resource type cannot change")
            _put_back(environ, raw)
        return super().do_PROPPATCH(environ, base_prefix, path, user, user_groups,
                                    request_info)

    def do_DELETE(self, environ, base_prefix, path, user, user_groups, request_info):
        parts = self._parts(path)
        home = f"/{parts[0]}/" if parts else "/"
        if len(parts) <= 2 and self._allowed(user, user_groups, home, "r"):
            return refusal(403, "the Rendez-vous calendar cannot be deleted: it would delete "
                           "every appointment in Gestan; delete appointments one by one")
        return super().do_DELETE(environ, base_prefix, path, user, user_groups, request_info)

    def do_MKCOL(self, environ, base_prefix, path, user, user_groups, request_info):
        return self._no_new_collection(user) or super().do_MKCOL(
            environ, base_prefix, path, user, user_groups, request_info)

    def do_MKCALENDAR(self, environ, base_prefix, path, user, user_groups, request_info):
        return self._no_new_collection(user) or super().do_MKCALENDAR(
            environ, base_prefix, path, user, user_groups, request_info)

    @staticmethod
    def _no_new_collection(user: str):
        if not user:
            return None  # Radicale asks for credentials first
        return refusal(403, f"gestan-bridge serves one calendar per user, /{user}/"
                       f"{CALENDAR_NAME}/; other collections cannot be created")

    def do_POST(self, environ, base_prefix, path, user, user_groups, request_info):
        """The sync triggers, authenticated by Radicale (bridge.http_sync)."""
        if path.startswith(SYNC_PREFIX):
            return self.sync_trigger.run(environ, path, user)
        return super().do_POST(environ, base_prefix, path, user, user_groups, request_info)

    def do_MOVE(self, environ, base_prefix, path, user, user_groups, request_info):
        parts = self._parts(path)
        if user and len(parts) <= 2:
            return refusal(403, "the Rendez-vous calendar cannot be moved or renamed")
        return super().do_MOVE(environ, base_prefix, path, user, user_groups, request_info)

