"""The rest of what clients ask of a calendar server beside calendar-query: the Apple
calendar order, a principal search, sync pages cut by DAV:limit, renaming an object."""

from __future__ import annotations

import threading
import xml.etree.ElementTree as ET
from datetime import date, timedelta

import caldav
import requests

from bridge.server import Server, load_configuration
from tests.conftest import PASSWORDS, REPO, snapshot
from tests.stock_radicale import stock_radicale

DAY = date.today() + timedelta(days=4)
ORDER = "{http://apple.com/ns/ical/}calendar-order"
COLOR = "{http://apple.com/ns/ical/}calendar-color"


def event(uid: str, hour: int = 9, summary: str = "rdv") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//dav//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
            f"DTSTART;TZID=Europe/Paris:{DAY:%Y%m%d}T{hour:02d}0000\r\n"
            f"DTEND;TZID=Europe/Paris:{DAY:%Y%m%d}T{hour:02d}3000\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def put(session: requests.Session, url: str, text: str) -> requests.Response:
    answer = session.put(url, data=text.encode(), headers={"Content-Type": "text/calendar"})
    assert answer.status_code in (201, 204), answer.text
    return answer


def sync(session: requests.Session, url: str, token: str, limit: int | None
         ) -> tuple[dict[str, str | None], str, bool]:
    """One sync-collection: href name → etag (None: gone), the token, cut at the limit?"""
    limit_xml = f"<D:limit><D:nresults>{limit}</D:nresults></D:limit>" if limit else ""
    body = ('<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>{limit_xml}"
            "<D:prop><D:getetag/></D:prop></D:sync-collection>")
    answer = session.request("REPORT", url, data=body)
    assert answer.status_code == 207, answer.text
    root = ET.fromstring(answer.content)
    members, cut = {}, False
    for response in root.iter("{DAV:}response"):
        href = response.findtext("{DAV:}href")
        status = response.findtext("{DAV:}status") or ""
        if href.rstrip("/").endswith("rendez-vous"):
            assert "507" in status
            assert response.find("{DAV:}error/{DAV:}number-of-matches-within-limits") \
                is not None
            cut = True
            continue
        members[href.rsplit("/", 1)[1]] = response.findtext(".//{DAV:}getetag")
    return members, root.findtext("{DAV:}sync-token"), cut


# ---------------------------------------------------------------- calendar-order

PROPPATCH = ('<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" '
             'xmlns:A="http://apple.com/ns/ical/"><D:set><D:prop>'
             "<A:calendar-order>{order}</A:calendar-order>"
             "<A:calendar-color>#FF2968FF</A:calendar-color></D:prop></D:set>"
             "</D:propertyupdate>")
PROPFIND = ('<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
            'xmlns:A="http://apple.com/ns/ical/"><D:prop><A:calendar-order/>'
            "<A:calendar-color/></D:prop></D:propfind>")


def calendar_props(session: requests.Session, url: str) -> dict[str, str | None]:
    answer = session.request("PROPFIND", url, data=PROPFIND, headers={"Depth": "0"})
    assert answer.status_code == 207, answer.text
    found = {}
    for propstat in ET.fromstring(answer.content).iter("{DAV:}propstat"):
        ok = "200" in propstat.findtext("{DAV:}status")
        for prop in propstat.find("{DAV:}prop"):
            found[prop.tag] = prop.text if ok else None
    return found


def test_calendar_order_is_kept_like_the_colour(server, tmp_path):
    """Apple clients PROPPATCH calendar-order with the colour: Radicale said 200 and
    dropped it. Stored as stock Radicale stores it, served back, in the collection etag."""
    session, url = server.session("alice"), server.calendar_url("alice")
    etag = session.request("PROPFIND", url, headers={"Depth": "0"}).text
    answer = session.request("PROPPATCH", url, data=PROPPATCH.format(order=3))
    assert answer.status_code == 207 and "200 OK" in answer.text
    with stock_radicale(tmp_path / "stock") as stock:
        theirs = stock.session()
        theirs.request("PROPPATCH", stock.calendar_url(), data=PROPPATCH.format(order=3))
        reference = calendar_props(theirs, stock.calendar_url())
    assert reference == {ORDER: "3", COLOR: "#FF2968FF"}
    assert calendar_props(server.session("alice"), url) == reference
    assert server.store.user("alice").calendar_props["ICAL:calendar-order"] == "3"
    assert session.request("PROPFIND", url, headers={"Depth": "0"}).text != etag
    session.request("PROPPATCH", url, data=PROPPATCH.format(order=12))
    assert calendar_props(session, url)[ORDER] == "12"


# ---------------------------------------------------------------- principal search

def client(server, login: str) -> caldav.DAVClient:
    return caldav.DAVClient(url=server.url, username=login, password=PASSWORDS[login])


def test_principal_property_search_finds_the_users_own_principal(server):
    """Stock Radicale answers every principal search with nothing; a client looking the
    user up (by name, by address, or all) finds their own principal, never another's."""
    server.store.set_user("alice", email="alice.martin@example.com")
    alice = client(server, "alice")
    for name in ("Alice", "martin", None):
        [found] = alice.search_principals(name)
        assert found.url.path == "/alice/"
        assert found.get_display_name() == "Alice Martin"
        assert str(found.calendar_home_set.url).endswith("/alice/")
    assert alice.search_principals("Bob") == []
    assert client(server, "bob").search_principals("Alice") == []
    assert [p.url.path for p in client(server, "bob").search_principals()] == ["/bob/"]

    session = server.session("alice")
    by_address = ('<?xml version="1.0"?><D:principal-property-search xmlns:D="DAV:" '
                  'xmlns:C="urn:ietf:params:xml:ns:caldav" test="anyof"><D:property-search>'
                  "<D:prop><C:calendar-user-address-set/></D:prop><D:match>{match}</D:match>"
                  "</D:property-search><D:prop><D:displayname/></D:prop>"
                  "</D:principal-property-search>")
    answer = session.request("REPORT", server.url, data=by_address.format(
        match="mailto:alice.martin@"), headers={"Depth": "0"})
    assert answer.status_code == 207
    assert [e.text for e in ET.fromstring(answer.content).iter("{DAV:}displayname")] == [
        "Alice Martin"]
    answer = session.request("REPORT", server.url, data=by_address.format(match="bob"))
    assert list(ET.fromstring(answer.content)) == []
    searchable = session.request("REPORT", server.url, data=(
        '<?xml version="1.0"?><D:principal-search-property-set xmlns:D="DAV:"/>'))
    assert searchable.status_code == 200
    assert ET.fromstring(searchable.content).find(".//{DAV:}displayname") is not None


# ---------------------------------------------------------------- MOVE

def test_move_renames_an_appointment_in_one_transaction(server):
    """A client renaming an object (MOVE within the calendar) got 400: the upload under the
    new name came first and found its UID still in use. Now: 201, the same appointment in
    Gestan (its action id), the old name gone for phones that sync."""
    session, url = server.session("alice"), server.calendar_url("alice")
    put(session, f"{url}old.ics", event("moving", 10, "Dentiste"))
    [action] = server.store.agenda("alice")
    _, token, _ = sync(session, url, "", None)
    body = session.get(f"{url}old.ics").text

    answer = session.request("MOVE", f"{url}old.ics", headers={"Destination": f"{url}new.ics"})
    assert answer.status_code == 201, answer.text
    assert session.get(f"{url}old.ics").status_code == 404
    assert session.get(f"{url}new.ics").text == body
    [after] = server.store.agenda("alice")
    assert after.id == action.id and after.event.subject == "Dentiste"
    changes, _, _ = sync(session, url, token, None)
    assert changes["old.ics"] is None and changes["new.ics"] is not None

    # back to a name that has a tombstone, then refusals that change nothing
    answer = session.request("MOVE", f"{url}new.ics", headers={"Destination": f"{url}old.ics"})
    assert answer.status_code == 201
    put(session, f"{url}other.ics", event("other", 14))
    before = snapshot(server.store)
    refused = session.request("MOVE", f"{url}old.ics",
                              headers={"Destination": f"{url}other.ics"})
    assert refused.status_code == 412  # Overwrite: F by default (Radicale's answer)
    refused = session.request("MOVE", f"{url}old.ics", headers={
        "Destination": f"{url}other.ics", "Overwrite": "T"})
    assert refused.status_code == 409 and "no-uid-conflict" in refused.text
    refused = session.request("MOVE", f"{url}old.ics",
                              headers={"Destination": f"{server.url}bob/rendez-vous/x.ics"})
    assert refused.status_code == 403
    assert snapshot(server.store) == before
    assert sorted(a.event.subject for a in server.store.agenda("alice")) == ["Dentiste",
                                                                             "rdv"]


# ---------------------------------------------------------------- DAV:limit

def pages(session: requests.Session, url: str, token: str, limit: int
          ) -> tuple[dict[str, str | None], str, int]:
    """Follow the checkpoints until the answer is complete."""
    seen: dict[str, str | None] = {}
    count = 0
    while True:
        members, token, cut = sync(session, url, token, limit)
        count += 1
        assert len(members) <= limit
        seen.update(members)
        if not cut:
            return seen, token, count
        assert count < 50


def test_sync_collection_limit_pages_through_every_change(server, limit=1):
    """RFC 6578 section 3.7: at most DAV:limit members, a 507 for the collection and a
    token to continue; following the tokens yields what one unlimited sync yields, first
    sync and later ones alike, even when a page ends inside one revision (a rename writes
    the new name and the old one's tombstone together)."""
    session, url = server.session("alice"), server.calendar_url("alice")
    for n in range(7):
        put(session, f"{url}e{n}.ics", event(f"e{n}", 8 + n))
    full, token, _ = sync(session, url, "", None)
    paged, paged_token, count = pages(session, url, "", limit)
    assert paged == full and len(full) == 7 and count == 7
    assert paged_token == token

    put(session, f"{url}e1.ics", event("e1", 8, "changed"))
    assert session.delete(f"{url}e2.ics").status_code in (200, 204)
    for n in (7, 8):
        put(session, f"{url}e{n}.ics", event(f"e{n}", 8 + n))
    moved = session.request("MOVE", f"{url}e3.ics", headers={"Destination": f"{url}r3.ics"})
    assert moved.status_code == 201, moved.text
    changes, _, _ = sync(session, url, token, None)
    paged, _, count = pages(session, url, token, limit)
    assert paged == changes and count > 1
    assert changes["e2.ics"] is None and changes["e3.ics"] is None
    assert set(changes) == {"e1.ics", "e2.ics", "e3.ics", "e7.ics", "e8.ics", "r3.ics"}


def test_a_checkpoint_token_that_was_not_issued_is_refused(server):
    session, url = server.session("alice"), server.calendar_url("alice")
    put(session, f"{url}e0.ics", event("e0"))
    _, token, _ = sync(session, url, "", None)
    for forged in (f"{token}.x", f"{token}.-1", f"{token}.99999999999", f"{token}.",
                   token.replace("/sync/", "/sync/9999")):
        body = ('<?xml version="1.0"?><D:sync-collection xmlns:D="DAV:"><D:sync-token>'
                f"{forged}</D:sync-token><D:sync-level>1</D:sync-level>"
                "<D:limit><D:nresults>2</D:nresults></D:limit>"
                "<D:prop><D:getetag/></D:prop></D:sync-collection>")
        answer = session.request("REPORT", url, data=body)
        assert answer.status_code == 403 and "valid-sync-token" in answer.text, forged


# ---------------------------------------------------------------- locks

def test_a_write_to_one_calendar_never_holds_another_users_requests(store):
    """Radicale holds its storage lock while it checks preconditions and writes; one lock
    for the server made every user wait for any user's slow write (issue 12). Each
    calendar now has its own: bob is served while alice's calendar is being written, and
    alice's own requests still wait for the write."""
    configuration = load_configuration(
        REPO / "radicale.conf", store.url, "127.0.0.1", 0,
        overrides={"auth": {"delay": "0.01"}, "logging": {"level": "warning"}})
    running = Server(configuration, ("127.0.0.1", 0)).start()
    storage = running.application._storage
    bob, alice = requests.Session(), requests.Session()
    bob.auth, alice.auth = ("bob", PASSWORDS["bob"]), ("alice", PASSWORDS["alice"])
    calendar = f"{running.url}%s/rendez-vous/"
    waited: list[int] = []
    try:
        put(alice, calendar % "alice" + "a.ics", event("a"))
        with storage.acquire_lock("w", "alice", path="/alice/rendez-vous/b.ics"):
            blocked = threading.Thread(target=lambda: waited.append(
                alice.get(calendar % "alice" + "a.ics", timeout=30).status_code))
            blocked.start()
            created = bob.put(calendar % "bob" + "b.ics", data=event("b").encode(),
                              timeout=5)  # waiting for alice's lock fails the test
            assert created.status_code == 201
            answer = bob.request("PROPFIND", calendar % "bob", headers={"Depth": "1"},
                                 timeout=5)
            assert answer.status_code == 207 and "b.ics" in answer.text
            blocked.join(0.5)
            assert waited == []
        blocked.join(10)
        assert waited == [200]
    finally:
        running.stop()
