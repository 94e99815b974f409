"""The fast sync/multiget answers are the answers Radicale gives: the same requests through
the same WSGI application, with and without the fast path, compared element by element."""

from __future__ import annotations

import base64
import gzip
import io
import wsgiref.util
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from bridge.caldav_app import GestanApplication
from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.server import load_configuration

SYNC = ('<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:" '
        'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:sync-token>{token}</d:sync-token>'
        '<d:sync-level>1</d:sync-level><d:prop>{props}</d:prop></d:sync-collection>')
MULTIGET = ('<?xml version="1.0"?><c:calendar-multiget xmlns:d="DAV:" '
            'xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop>{props}</d:prop>{hrefs}'
            '</c:calendar-multiget>')
PROPS = "<d:getetag/><c:calendar-data/>"


@pytest.fixture
def app(store, tmp_path):
    start = (now_utc() + timedelta(days=2)).replace(microsecond=0)
    for n in range(6):
        store.add_action("alice", EventData(start=start + timedelta(hours=n),
                                            end=start + timedelta(hours=n, minutes=30),
                                            tzid="Europe/Paris", subject=f"RDV {n}, été"))
    configuration = load_configuration(None, store.url, overrides={
        "logging": {"level": "warning"}, "auth": {"delay": "0"}})
    return GestanApplication(configuration)


def call(app, method, path, body, login="alice", password="alice", **headers):
    environ = {}
    wsgiref.util.setup_testing_defaults(environ)
    raw = body if isinstance(body, bytes) else body.encode()
    environ.update({
        "REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO(raw),
        "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/xml",
        "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(
            f"{login}:{password}".encode()).decode(), "REMOTE_ADDR": "127.0.0.1",
        **{f"HTTP_{k.upper()}": v for k, v in headers.items()}})
    answer = []
    content = b"".join(app(environ, lambda status, hdrs, exc=None: answer.append(status)))
    return answer[0], content


def normalised(content: bytes) -> list:
    root = ET.fromstring(content)
    out = []
    for element in root:
        out.append(ET.tostring(element, encoding="unicode").replace(" />", "/>"))
    return sorted(out)


def both(app, method, path, body, **kw):
    fast = call(app, method, path, body, **kw)
    saved, app.fast_reports = app.fast_reports, None
    try:
        general = call(app, method, path, body, **kw)
    finally:
        app.fast_reports = saved
    return fast, general


def token_of(content: bytes) -> str:
    return ET.fromstring(content).find("{DAV:}sync-token").text


@pytest.mark.parametrize("props", [PROPS, "<d:getetag/>",
                                   "<d:getetag/><d:getcontenttype/><c:calendar-data/>"])
def test_sync_and_multiget_answer_as_radicale_does(app, store, props):
    path = "/alice/rendez-vous/"
    (status, fast), (status2, general) = both(app, "REPORT", path,
                                              SYNC.format(token="", props=props))
    assert status == status2 == "207 Multi-Status"
    assert normalised(fast) == normalised(general)
    assert len(normalised(fast)) == 7  # six items and the token
    token = token_of(fast)
    listing = store.calendar_listing(store.user("alice").id)
    store.delete_action("alice", store.agenda("alice")[0].id)
    store.add_action("alice", EventData(start=now_utc() + timedelta(days=9),
                                        end=now_utc() + timedelta(days=9, hours=1),
                                        subject="Nouveau"))
    (_, fast), (_, general) = both(app, "REPORT", path, SYNC.format(token=token, props=props))
    assert normalised(fast) == normalised(general)
    assert fast.count(b"404 Not Found") == 1, "the deleted appointment is reported gone"
    assert b"Nouveau" in fast or "calendar-data" not in props
    hrefs = "".join(f"<d:href>{path}{o.href}</d:href>" for o in listing[:4]) + (
        f"<d:href>{path}nothing-here.ics</d:href>")
    (_, fast), (_, general) = both(app, "REPORT", path, MULTIGET.format(props=props,
                                                                        hrefs=hrefs))
    assert normalised(fast) == normalised(general)
    assert len(normalised(fast)) == 5 and fast.count(b"404 Not Found") == 2  # deleted, never was


def test_fast_path_keeps_access_rules_and_bad_tokens(app):
    body = SYNC.format(token="", props=PROPS)
    status, _ = call(app, "REPORT", "/alice/rendez-vous/", body, login="bob", password="bob")
    assert status.startswith(("403", "404"))
    status, content = call(app, "REPORT", "/alice/rendez-vous/", body, login="carol",
                           password="carol-secret")
    assert status.startswith("207") and content.count(b"RDV ") == 6
    status, _ = call(app, "REPORT", "/alice/rendez-vous/",
                     SYNC.format(token="http://example.com/ns/sync/5", props=PROPS))
    assert status.startswith("403")


def test_gzip_request_and_answer(app):
    body = gzip.compress(SYNC.format(token="", props=PROPS).encode())
    status, content = call(app, "REPORT", "/alice/rendez-vous/", body,
                           CONTENT_ENCODING="gzip", ACCEPT_ENCODING="gzip")
    assert status.startswith("207")
    assert gzip.decompress(content).count(b"RDV ") == 6
