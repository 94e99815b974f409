"""Radicale's web UI on top: the requests its JavaScript sends, answered as the UI needs."""

from __future__ import annotations

import base64
import http.client
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from icalendar import Calendar

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from tests.conftest import snapshot

UI_PROPFIND = (
    '<?xml version="1.0" encoding="utf-8" ?><propfind xmlns="DAV:" '
    'xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav" '
    'xmlns:CS="http://calendarserver.org/ns/" xmlns:I="http://apple.com/ns/ical/" '
    'xmlns:RADICALE="http://radicale.org/ns/"><prop><resourcetype /><RADICALE:displayname />'
    "<I:calendar-color /><displayname /><C:supported-calendar-component-set />"
    "<C:calendar-description /><RADICALE:getcontentcount /><getcontentlength />"
    "</prop></propfind>")


def _add(store, login: str, count: int) -> None:
    start = now_utc() + timedelta(days=2)
    for n in range(count):
        store.add_action(login, EventData(start + timedelta(days=n),
                                          start + timedelta(days=n, hours=1),
                                          "Europe/Paris", subject=f"RDV {n}"))


def _status_line(method: str, url: str) -> str:
    """The reason phrase as a browser's XMLHttpRequest.statusText sees it (the web UI shows
    it), read with http.client: requests normalises reason phrases."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    token = base64.b64encode(b"alice:alice").decode()
    connection.request(method, parts.path, headers={"Authorization": f"Basic {token}"})
    response = connection.getresponse()
    connection.close()
    return f"{response.status} {response.reason}"


def test_web_ui_is_served(server):
    page = requests.get(server.url + ".web/")
    assert page.status_code == 200
    assert "Radicale" in page.text


def test_calendar_listed_with_item_count(server):
    _add(server.store, "alice", 3)
    answer = requests.request("PROPFIND", server.url + "alice/", data=UI_PROPFIND,
                              headers={"Depth": "1"}, auth=("alice", "alice"))
    assert answer.status_code == 207
    calendar_part = answer.text.split("<href>/alice/rendez-vous/</href>")[1]
    assert "<RADICALE:getcontentcount>3</RADICALE:getcontentcount>" in calendar_part
    assert "<displayname>Rendez-vous</displayname>" in calendar_part


def test_download_as_ics(server):
    _add(server.store, "alice", 2)
    answer = requests.get(server.calendar_url("alice"), auth=("alice", "alice"))
    assert answer.status_code == 200
    events = Calendar.from_ical(answer.content).walk("VEVENT")
    assert sorted(str(e["SUMMARY"]) for e in events) == ["RDV 0", "RDV 1"]


def test_edit_display_name_description_colour(server):
    body = ('<?xml version="1.0" encoding="UTF-8" ?><propertyupdate xmlns="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:I="http://apple.com/ns/ical/">'
            "<set><prop><C:supported-calendar-component-set><C:comp name=\"VEVENT\" />"
            "</C:supported-calendar-component-set><displayname>Mes RDV</displayname>"
            "<I:calendar-color>#ff0000ff</I:calendar-color>"
            "<C:calendar-description>Agenda Gestan</C:calendar-description></prop></set>"
            "</propertyupdate>")
    answer = requests.request("PROPPATCH", server.calendar_url("alice"), data=body,
                              auth=("alice", "alice"))
    assert answer.status_code == 207
    listing = requests.request("PROPFIND", server.url + "alice/", data=UI_PROPFIND,
                               headers={"Depth": "1"}, auth=("alice", "alice")).text
    assert "<displayname>Mes RDV</displayname>" in listing
    assert "#ff0000ff" in listing
    assert "Agenda Gestan" in listing
    assert server.store.user("alice").calendar_props["D:displayname"] == "Mes RDV"


def test_what_one_calendar_cannot_allow_is_refused_with_a_reason(server):
    _add(server.store, "alice", 2)
    auth = ("alice", "alice")
    before = snapshot(server.store)
    deleted = requests.delete(server.calendar_url("alice"), auth=auth)
    assert deleted.status_code == 403
    assert "cannot be deleted" in deleted.text
    assert _status_line("DELETE", server.calendar_url("alice")) == "403 Forbidden", \
        "the reason is in the body; status lines carry the standard phrase only"
    created = requests.request("MKCOL", server.url + "alice/another/", auth=auth,
                               data="<mkcol xmlns='DAV:'/>")
    assert created.status_code == 403 and "one calendar per user" in created.text
    made = requests.request("MKCALENDAR", server.url + "alice/another/", auth=auth)
    assert made.status_code == 403
    upload = requests.put(server.url + "alice/uploaded/", auth=auth,
                          data="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
                          headers={"Content-Type": "text/calendar"})
    assert upload.status_code == 403 and "agenda import" in upload.text
    assert snapshot(server.store) == before
    assert len(server.store.agenda("alice")) == 2
    answer = requests.get(server.calendar_url("alice"), auth=auth)  # still served whole
    assert answer.status_code == 200
    assert sorted(str(e["SUMMARY"]) for e in Calendar.from_ical(answer.content).walk("VEVENT")) \
        == ["RDV 0", "RDV 1"]


def test_the_component_set_cannot_change(server):
    before = snapshot(server.store)
    body = ('<?xml version="1.0" encoding="UTF-8" ?><propertyupdate xmlns="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:caldav"><set><prop>'
            '<C:supported-calendar-component-set><C:comp name="VEVENT" /><C:comp name="VTODO" />'
            "</C:supported-calendar-component-set></prop></set></propertyupdate>")
    answer = requests.request("PROPPATCH", server.calendar_url("alice"), data=body,
                              auth=("alice", "alice"))
    assert answer.status_code == 403 and "VEVENT" in answer.text
    assert snapshot(server.store) == before
    listing = requests.request("PROPFIND", server.calendar_url("alice"), data=UI_PROPFIND,
                               headers={"Depth": "0"}, auth=("alice", "alice")).text
    assert 'name="VTODO"' not in listing and 'name="VEVENT"' in listing
