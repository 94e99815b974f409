"""Bad input, other users' calendars, preconditions: a clear 4xx, and the store unchanged."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import pytest
import requests

from tests.conftest import snapshot

DAY = date.today() + timedelta(days=5)


def event(body: str = "", uid: str = "x1", start: str | None = None,
          end: str | None = None) -> str:
    start = start or f"DTSTART;TZID=Europe/Paris:{DAY:%Y%m%d}T100000"
    end = end or f"DTEND;TZID=Europe/Paris:{DAY:%Y%m%d}T110000"
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n{start}\r\n{end}\r\nSUMMARY:s\r\n"
            f"{body}END:VEVENT\r\nEND:VCALENDAR\r\n")


_NEST, _UNNEST = "BEGIN:X-NEST\r\n", "END:X-NEST\r\n"
_PARIS = ("BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\n"
          "DTSTART:19701025T030000\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\n"
          "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")
BAD_BODIES = {
    "garbage": (b"this is not a calendar", 400, "BEGIN:VCALENDAR"),
    "truncated": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:1\r\n", 400,
                  "VCALENDAR"),
    "no-vevent": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nEND:VCALENDAR\r\n", 400,
                  "no VEVENT"),
    "vtodo": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:t\r\n"
              b"SUMMARY:x\r\nEND:VTODO\r\nEND:VCALENDAR\r\n", 403, "VTODO"),
    "vcard": (b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Jean\r\nEND:VCARD\r\n", 415, "vCard"),
    "vjournal": (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VJOURNAL\r\nUID:j\r\n"
                 b"SUMMARY:x\r\nEND:VJOURNAL\r\nEND:VCALENDAR\r\n", 403, "VJOURNAL"),
    # an end before the start is repaired now (tests/test_fidelity.py); a COUNT of zero
    # with no UNTIL to end the series is still no series
    "count-zero": (event("RRULE:FREQ=DAILY;COUNT=0\r\n").encode(), 400, "COUNT"),
    "unknown-tzid": (event(start=f"DTSTART;TZID=Mars/Olympus:{DAY:%Y%m%d}T100000",
                           end=f"DTEND;TZID=Mars/Olympus:{DAY:%Y%m%d}T110000").encode(),
                     400, "unknown TZID"),
    "interval-0": (event("RRULE:FREQ=WEEKLY;INTERVAL=0\r\n").encode(), 400, "INTERVAL"),
    "secondly": (event("RRULE:FREQ=SECONDLY\r\n").encode(), 400, "SECONDLY"),
    "hourly-flood": (event("RRULE:FREQ=HOURLY\r\n").encode(), 400, "more than 1000"),
    "two-uids": (event().replace("END:VCALENDAR", event(uid="x2").split("VERSION:2.0\r\n"
                 "PRODID:-//t//t//EN\r\n")[1].replace("END:VCALENDAR\r\n", "")
                 + "END:VCALENDAR").encode(), 400, "one UID"),
    "huge-summary": (event(f"DESCRIPTION:{'a' * 10}\r\n").replace(
        "SUMMARY:s", "SUMMARY:" + "é" * 1_000_000).encode(), 413, "larger than"),
    "long-summary": (event().replace("SUMMARY:s", "SUMMARY:" + "b" * 5000).encode(), 413,
                     "SUMMARY longer"),
    "invalid-utf8": (event().replace("SUMMARY:s", "SUMMARY:\udcff").encode(
        "utf-8", "surrogateescape"), 400, "UTF-8"),
    "no-dtstart": (event(start="X-NOTHING:1").encode(), 400, "DTSTART"),
    # issue 12: a rule that never occurs (dateutil would walk to the year 9999)
    "never-occurs": (event("RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30\r\n").encode(), 400,
                     "never occurs"),
    "never-occurs-daily": (event("RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=31;COUNT=3\r\n")
                           .encode(), 400, "never occurs"),
    # issue 12: these were 500s
    "broken-count": (event("RRULE:FREQ=DAILY;COUNT=\\\r\n").encode(), 400, "RRULE"),
    "huge-duration": (event(end="DURATION:P99999999W").encode(), 400, "DURATION"),
    # issue 12: these got Radicale's bare "Bad Request" (its reader refused them), or were
    # stored (components nested a few hundred deep)
    "nested-300": (event(_NEST * 300 + _UNNEST * 300).encode(), 400,
                   "nested 5 levels deep: a calendar object has 4 at most"),
    "nested-5": (event("BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\n"
                       + _NEST * 2 + _UNNEST * 2 + "END:VALARM\r\n").encode(), 400,
                 "BEGIN:X-NEST at line 14 is nested 5 levels deep"),
    "unclosed-alarm": (event("BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT5M\r\n").encode(),
                       400, "END:VEVENT at line 13 does not close BEGIN:VALARM of line 10"),
    "event-in-event": (event("BEGIN:VEVENT\r\nUID:in\r\nEND:VEVENT\r\n").encode(), 400,
                       "BEGIN:VEVENT at line 10 is inside VEVENT: it belongs in VCALENDAR"),
    "no-component-name": (event("BEGIN:\r\nEND:\r\n").encode(), 400, "not a component name"),
    "unreadable-line": (event('X-CANARY;X-P="open:1\r\n').encode(), 400,
                        "line 10 is not an iCalendar content line"),
    "lone-cr": (event("CREATED:20260101T000000Z\rLAST-MODIFIED:20260101T000000Z\r\n")
                .encode(), 400, "line 10 has a carriage return inside it"),
    "created-twice": (event("CREATED:20260101T000000Z\r\nCREATED:20260102T000000Z\r\n")
                      .encode(), 400, "CREATED appears more than once"),
    "date-that-is-a-time": (event(start=f"DTSTART;VALUE=DATE:{DAY:%Y%m%d}T100000",
                                  end=f"DTEND:{DAY:%Y%m%d}T110000Z").encode(), 400,
                            "DTSTART;VALUE=DATE holds"),
    "exdate-unknown-zone": (event("RRULE:FREQ=DAILY;COUNT=3\r\nEXDATE;TZID=Mars/Olympus:"
                                  f"{DAY:%Y%m%d}T100000\r\n").encode(), 400,
                            "unknown TZID 'Mars/Olympus' in EXDATE"),
    "unreadable-vtimezone": (event().replace("BEGIN:VEVENT", _PARIS.replace(
        "DTSTART:19701025T030000", "DTSTART;VALUE=DATE:19701025") + "BEGIN:VEVENT").encode(),
        400, "the VTIMEZONE 'Europe/Paris' of line 4 cannot be read: 'Unsupported DTSTART"),
    "until-before-start": (event("RRULE:FREQ=DAILY;UNTIL=20000101T000000Z\r\n").encode(),
                           400, "UNTIL is before DTSTART"),
    # Radicale's occurrence limit, which its PUT checked: checked by ours
    "count-over-radicale-limit": (event("RRULE:FREQ=DAILY;COUNT=999999999\r\n").encode(),
                                  400, "COUNT=999999999: at most 10000 occurrences ([server] "
                                  "max_vevent_rrule_occurrence)"),
    "until-over-radicale-limit": (event("RRULE:FREQ=DAILY;UNTIL=20991231T000000Z\r\n")
                                  .encode(), 400, "max_vevent_rrule_occurrence"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_calendar_object_is_refused_with_a_reason(server, name):
    body, status, reason = BAD_BODIES[name]
    before = snapshot(server.store)
    answer = requests.put(server.calendar_url("alice") + f"{name}.ics", data=body,
                          auth=("alice", "alice"),
                          headers={"Content-Type": "text/calendar; charset=utf-8"})
    assert answer.status_code == status, answer.text
    assert reason in answer.text
    assert snapshot(server.store) == before
    assert requests.get(server.calendar_url("alice"), auth=("alice", "alice")).ok


def test_gzip_body_is_accepted_like_phones_send_it(server):
    answer = requests.put(server.calendar_url("alice") + "gz.ics",
                          data=gzip.compress(event().encode()), auth=("alice", "alice"),
                          headers={"Content-Encoding": "gzip",
                                   "Content-Type": "text/calendar"})
    assert answer.status_code == 201
    assert [a.event.subject for a in server.store.agenda("alice")] == ["s"]


@pytest.mark.parametrize("method", ["PROPFIND", "REPORT", "PROPPATCH"])
def test_malformed_xml_is_a_client_error(server, method):
    before = snapshot(server.store)
    answer = requests.request(method, server.calendar_url("alice"), data=b"<propfind><oops",
                              auth=("alice", "alice"), headers={"Depth": "1"})
    assert answer.status_code == 400
    assert answer.text.startswith("400 Bad Request: malformed XML: unclosed token: line 1")
    assert snapshot(server.store) == before


def test_the_properties_of_anything_but_a_calendar_are_refused_with_the_reason(server):
    """Radicale answered a bare 403 ("Access to the requested resource forbidden.")."""
    before = snapshot(server.store)
    body = (b'<?xml version="1.0"?><propertyupdate xmlns="DAV:"><set><prop><displayname>x'
            b"</displayname></prop></set></propertyupdate>")
    for url in (server.url, server.url + "alice/"):
        answer = requests.request("PROPPATCH", url, data=body, auth=("alice", "alice"))
        assert answer.status_code == 403
        assert "only a calendar's name, description, colour and order" in answer.text
    assert snapshot(server.store) == before


def test_a_calendar_report_elsewhere_names_its_precondition_and_the_reason(server):
    """A multiget, sync or free-busy REPORT on the principal: Radicale's DAV:error
    supported-report, now with a description; a sync-token never issued likewise."""
    auth = ("alice", "alice")
    bodies = {
        "calendar-multiget": '<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml'
                             ':ns:caldav"><D:prop><D:getetag/></D:prop>'
                             "<D:href>/alice/rendez-vous/x.ics</D:href></C:calendar-multiget>",
        "sync-collection": '<D:sync-collection xmlns:D="DAV:"><D:sync-token/><D:sync-level>1'
                           "</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>",
        "free-busy-query": '<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">'
                           '<C:time-range start="20270101T000000Z" end="20270102T000000Z"/>'
                           "</C:free-busy-query>",
    }
    for name, body in bodies.items():
        answer = requests.request("REPORT", server.url + "alice/", data=body, auth=auth)
        error = ET.fromstring(answer.content)
        assert answer.status_code == 403 and error.tag == "{DAV:}error", answer.text
        assert error.find("{DAV:}supported-report") is not None
        assert error.findtext("{DAV:}responsedescription") == (
            f"a {name} REPORT is answered by a calendar (yours: /alice/rendez-vous/), not by "
            "/alice/")
    forged = ('<D:sync-collection xmlns:D="DAV:"><D:sync-token>http://radicale.org/ns/sync/'
              "../../etc</D:sync-token><D:sync-level>1</D:sync-level><D:prop><D:getetag/>"
              "<D:getcontenttype/><D:displayname/></D:prop></D:sync-collection>")
    answer = requests.request("REPORT", server.calendar_url("alice"), data=forged, auth=auth)
    error = ET.fromstring(answer.content)
    assert answer.status_code == 403 and error.find("{DAV:}valid-sync-token") is not None
    assert "was not issued by this calendar" in error.findtext("{DAV:}responsedescription")


def _put_bob_event(server) -> str:
    url = server.calendar_url("bob") + "bob-1.ics"
    assert requests.put(url, data=event(uid="bob-1"), auth=("bob", "bob")).status_code == 201
    return url


@pytest.mark.parametrize("method", ["GET", "PROPFIND", "REPORT", "PUT", "DELETE", "PROPPATCH",
                                    "MOVE"])
def test_another_users_calendar_is_out_of_reach(server, method):
    item = _put_bob_event(server)
    before = snapshot(server.store)
    for url in (server.calendar_url("bob"), item, f"{server.url}bob/"):
        headers = {"Depth": "1", "Destination": server.calendar_url("alice") + "stolen.ics"}
        data = event(uid="intruder") if method == "PUT" else None
        answer = requests.request(method, url, auth=("alice", "alice"), data=data,
                                  headers=headers)
        assert answer.status_code in (403, 404), (method, url, answer.status_code)
        assert "bob-1" not in answer.text
    assert snapshot(server.store) == before


def test_wrong_password_is_401(server):
    answer = requests.request("PROPFIND", server.calendar_url("alice"),
                              auth=("alice", "wrong"))
    assert answer.status_code == 401
    assert requests.get(server.calendar_url("alice")).status_code == 401


def test_admin_reads_and_writes_every_calendar(server):
    item = _put_bob_event(server)
    assert requests.get(item, auth=("carol", "carol-secret")).status_code == 200
    answer = requests.put(server.calendar_url("bob") + "by-carol.ics", data=event(uid="c1"),
                          auth=("carol", "carol-secret"))
    assert answer.status_code == 201
    assert len(server.store.agenda("bob")) == 2


def test_if_match_and_if_none_match(server):
    url = server.calendar_url("alice") + "pre.ics"
    auth = ("alice", "alice")
    created = requests.put(url, data=event(uid="pre"), auth=auth,
                           headers={"If-None-Match": "*"})
    assert created.status_code == 201
    assert requests.put(url, data=event(uid="pre"), auth=auth,
                        headers={"If-None-Match": "*"}).status_code == 412
    before = snapshot(server.store)
    stale = requests.put(url, data=event("LOCATION:elsewhere\r\n", uid="pre"), auth=auth,
                         headers={"If-Match": '"not-the-etag"'})
    assert stale.status_code == 412
    assert requests.delete(url, auth=auth, headers={"If-Match": '"nope"'}).status_code == 412
    assert snapshot(server.store) == before
    assert requests.delete(url, auth=auth,
                           headers={"If-Match": created.headers["ETag"]}).status_code == 200


def test_same_uid_under_another_href_is_a_conflict(server):
    auth = ("alice", "alice")
    base = server.calendar_url("alice")
    assert requests.put(base + "a.ics", data=event(uid="same"), auth=auth).status_code == 201
    before = snapshot(server.store)
    answer = requests.put(base + "b.ics", data=event(uid="same"), auth=auth)
    assert answer.status_code == 409
    assert snapshot(server.store) == before


def _raw_put(server, path: str, body: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """A PUT read with http.client: the status line and headers exactly as sent."""
    import base64
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(server.calendar_url("alice") + path)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    token = base64.b64encode(b"alice:alice").decode()
    connection.request("PUT", parts.path, body=body, headers={
        "Authorization": f"Basic {token}", "Content-Type": "text/calendar"})
    response = connection.getresponse()
    answer = (f"{response.status} {response.reason}", response.getheaders(), response.read())
    connection.close()
    return answer


@pytest.mark.parametrize("uid", ["x\\nSet-Cookie: pwned=1", "x\\rHTTP/1.1 200 OK",
                                 "x\\n\\nInjected body"])
def test_a_reason_quoting_client_text_never_reaches_the_status_line_or_headers(server, uid):
    """Issue 12: a UID with an escaped newline (icalendar makes it a real one) quoted in a
    refusal's reason used to end up in the status line: header injection."""
    before = snapshot(server.store)
    body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n"
            "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20270101T100000Z\r\nEND:VEVENT\r\n"
            f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTART:20270101T110000Z\r\nEND:VEVENT\r\n"
            "END:VCALENDAR\r\n").encode()
    status, headers, text = _raw_put(server, "two.ics", body)
    assert status == "400 Bad Request"
    names = [name.lower() for name, _ in headers]
    assert "set-cookie" not in names and all("\r" not in v and "\n" not in v
                                             for _, v in headers)
    [line] = text.decode().splitlines()
    assert "one UID" in line and ("\\n" in line or "\\r" in line), line
    assert snapshot(server.store) == before


HOSTILE_XML = {
    "dtd": b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><propfind xmlns="DAV:">'
           b"<prop><getetag/></prop></propfind>",
    "billion-laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">'
                      b'<!ENTITY b "&a;&a;&a;&a;">]><propfind xmlns="DAV:"><prop>&b;</prop>'
                      b"</propfind>",
    "deep": b'<propfind xmlns="DAV:">' + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</propfind>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_XML))
@pytest.mark.parametrize("method", ["PROPFIND", "REPORT"])
def test_hostile_xml_is_a_client_error_not_a_500(server, name, method):
    """Issue 12: a DTD, entities or 100,000-deep nesting answered 500 (Radicale 3.9)."""
    answer = requests.request(method, server.calendar_url("alice"), data=HOSTILE_XML[name],
                              auth=("alice", "alice"), headers={"Depth": "1"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    assert "Traceback" not in answer.text and "Error" not in answer.reason
    assert requests.get(server.calendar_url("alice"), auth=("alice", "alice")).ok


def test_an_expand_over_ten_thousand_years_is_refused(server):
    body = (b'<?xml version="1.0"?><C:calendar-query xmlns:D="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><C:calendar-data>'
            b'<C:expand start="00010101T000000Z" end="99991231T000000Z"/></C:calendar-data>'
            b'</D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
            b'<C:time-range start="00010101T000000Z" end="99991231T000000Z"/>'
            b"</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
    requests.put(server.calendar_url("alice") + "w.ics", data=event("RRULE:FREQ=WEEKLY\r\n"),
                 auth=("alice", "alice"))
    answer = requests.request("REPORT", server.calendar_url("alice"), data=body,
                              auth=("alice", "alice"), headers={"Depth": "1"}, timeout=30)
    assert 400 <= answer.status_code < 500, answer.status_code
    assert "expand" in answer.text


@pytest.mark.parametrize("header", ["Basic " + "YWxpY2U=", "Basic !!!", "Basic", "Digest x"])
def test_odd_authorization_headers_are_401_not_500(server, header):
    answer = requests.get(server.calendar_url("alice"), headers={"Authorization": header})
    assert answer.status_code == 401, answer.status_code
    assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")
    if header.startswith("Basic"):  # credentials that cannot be read: said so
        assert answer.text == ("401 Unauthorized: the Basic credentials cannot be read: "
                               "expected base64 of login:password\n")


def test_a_negative_content_length_is_a_client_error(server):
    import base64
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(server.calendar_url("alice") + "neg.ics")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.putrequest("PUT", parts.path)
    connection.putheader("Authorization",
                         "Basic " + base64.b64encode(b"alice:alice").decode())
    connection.putheader("Content-Length", "-5")
    connection.endheaders()
    response = connection.getresponse()
    assert 400 <= response.status < 500, response.status
    connection.close()


def test_the_server_names_the_product_only(server):
    answers = [requests.get(server.calendar_url("alice"), auth=("alice", "alice")),
               requests.get(server.calendar_url("alice")),
               requests.post(f"{server.url}bridge/sync/open", timeout=10)]
    for answer in answers:
        assert answer.headers["Server"] == "gestan-bridge", answer.headers
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        raw.sendall(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")  # 414, sent by the handler
        head = raw.recv(4096).decode("latin-1")
    assert "414" in head.splitlines()[0] and "Python" not in head and "CPython" not in head


def test_nul_characters_are_refused_not_stripped(server):
    before = snapshot(server.store)
    answer = requests.put(server.calendar_url("alice") + "nul.ics", auth=("alice", "alice"),
                          data=event().replace("SUMMARY:s", "SUMMARY:s\x00t").encode())
    assert answer.status_code == 400 and "NUL" in answer.text
    assert snapshot(server.store) == before


def test_a_chunked_body_is_asked_for_a_length_not_ignored(server):
    before = snapshot(server.store)
    chunks = iter([event().encode()])  # requests sends a generator chunked
    answer = requests.put(server.calendar_url("alice") + "chunked.ics", data=chunks,
                          auth=("alice", "alice"), headers={"Content-Type": "text/calendar"})
    assert answer.status_code == 411 and "Content-Length" in answer.text
    assert snapshot(server.store) == before
