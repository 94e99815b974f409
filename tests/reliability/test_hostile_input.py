"""Hostile input (issue 12), at CI size: seeded mutations of real-world iCalendar and hostile
XML bodies against the running server; no 5xx, no broken answer, a reason in every
refusal's body, the store unchanged by every refusal, the server alive. Full size:
``python -m bench.reliability_bench --part hostile``."""

from __future__ import annotations

import pytest

from tests.reliability.hostile import MUTATIONS as KINDS
from tests.reliability.hostile import XML_FAMILIES, run_hostile, samples, store_fingerprint
from tests.reliability.rawhttp import basic, exchange

MUTATIONS, XML_BODIES = 60, 21
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
def test_the_real_world_samples_are_accepted_as_they_are(server):
    """The bases of the mutations are what the four clients write, and the server takes
    them: each one PUT, then read back with its summary."""
    auth = {"Authorization": basic("alice", "alice")}
    for name, body in samples().items():
        url = server.calendar_url("alice") + f"{name}.ics"
        put = exchange(url, "PUT", body, {**auth, "Content-Type": "text/calendar"})
        assert (put.status, put.problem) == (201, None), (name, put.body)
        got = exchange(url, "GET", b"", auth)
        assert got.status == 200 and b"SUMMARY" in got.body, name
    assert len(server.store.agenda("alice")) >= 8


@sqlite_only
def test_mutated_icalendar_and_hostile_xml_get_sound_4xx_answers(server):
    report = run_hostile(server.url, "alice", "alice", lambda: store_fingerprint(server.store),
                         MUTATIONS, XML_BODIES, seed=12)
    assert report.failures() == []
    assert len(report.without_reason()) == 0, "every refusal says why"
    assert len(report.of("issue12")) == 16, "issue 12's own inputs are always sent"
    ical, xml = report.by_status("ical"), report.by_status("xml")
    assert sum(ical.values()) == MUTATIONS and sum(xml.values()) == XML_BODIES
    assert ical[201] > 0, "some mutations are still valid iCalendar: the accept path is hit"
    assert sum(n for status, n in ical.items() if 400 <= status < 500) > MUTATIONS // 2
    assert report.alive
    used = {name for o in report.of("ical") for name in o.case.name.split("+")}
    assert used == set(KINDS), "every kind of mutation is sent, even at CI size"
    families = {o.case.name.split("-")[0] for o in report.of("xml")}
    assert len(families) == len(XML_FAMILIES), families


RESOURCETYPE_PATCHES = {
    "remove": b"<remove><prop><resourcetype/></prop></remove>",
    "set-collection": b"<set><prop><resourcetype><collection/></resourcetype></prop></set>",
    "rename-and-remove": b"<set><prop><displayname>Pirate</displayname></prop></set>"
                         b"<remove><prop><resourcetype/></prop></remove>",
}


@sqlite_only
@pytest.mark.parametrize("name", sorted(RESOURCETYPE_PATCHES))
def test_a_proppatch_of_the_resource_type_is_refused_and_changes_nothing(server, name):
    """Found by the XML run: Radicale wrote the calendar's properties (a new revision: every
    phone's ctag and sync token moved) and only then answered 400."""
    body = (b'<?xml version="1.0"?><propertyupdate xmlns="DAV:">' + RESOURCETYPE_PATCHES[name]
            + b"</propertyupdate>")
    before = store_fingerprint(server.store)
    answer = exchange(server.calendar_url("alice"), "PROPPATCH", body,
                      {"Authorization": basic("alice", "alice")})
    assert answer.status == 403 and answer.problem is None, (answer.status, answer.body)
    assert b"resource type" in answer.body
    assert store_fingerprint(server.store) == before


@sqlite_only
def test_a_proppatch_that_changes_nothing_keeps_the_ctag(server):
    """Setting the name a calendar already has is no change: the phones need not sync."""
    body = (b'<?xml version="1.0"?><propertyupdate xmlns="DAV:"><set><prop><displayname>'
            b"Rendez-vous</displayname></prop></set></propertyupdate>")
    before = store_fingerprint(server.store)
    answer = exchange(server.calendar_url("alice"), "PROPPATCH", body,
                      {"Authorization": basic("alice", "alice")})
    assert answer.status == 207
    assert store_fingerprint(server.store) == before
