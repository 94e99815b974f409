"""Access (issue 12): every CalDAV method, the sync triggers and the web UI as the owner,
another user, an admin, a former admin, a wrong password and no password, each cell
asserted; and no password or token in the server's log after a run that used them."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

from bridge.store import open_store
from tests.reliability.access import CALLERS, ROWS, prepare, run_matrix, table
from tests.reliability.google import connected_google
from tests.reliability.hostile import store_fingerprint
from tests.reliability.rawhttp import basic, exchange
from tests.reliability.servers import config_file, start_process
from tests.test_sync_cli import memory_kind

PASSWORDS = {"alice": "alice", "bob": "bob", "carol": "carol-secret", "dave": "dave-pw"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_access_matrix(server, monkeypatch):
    store = server.store
    store.add_user("dave", PASSWORDS["dave"], is_admin=True)
    # dave was an admin when his phone logged in; the flag is then removed
    assert exchange(server.url + "alice/", "PROPFIND", b"", {
        "Authorization": basic("dave", PASSWORDS["dave"]), "Depth": "0"}).status == 207
    store.set_user("dave", is_admin=False)
    memory_kind(monkeypatch)  # alice's agenda syncs with the in-memory target
    store.set_user("alice", settings={"memory": "1"})

    def put(href: str, body: bytes) -> str:
        answer = exchange(server.calendar_url("alice") + href, "PUT", body, {
            "Authorization": basic("alice", "alice"), "Content-Type": "text/calendar"})
        assert answer.status == 201, answer.body
        return answer.header("ETag") or ""

    cells = run_matrix(server.url, PASSWORDS, lambda: store_fingerprint(store), prepare(put))
    printed = "\n".join(" | ".join(line) for line in [["", *CALLERS], *table(cells)])
    wrong = [f"{c.row} as {c.caller}: {'; '.join(c.problems)}" for c in cells if c.problems]
    assert wrong == [], printed
    assert len(cells) == len(ROWS) * len(CALLERS)
    alice, bob = store.user("alice"), store.user("bob")
    hrefs = {o.href for o in store.calendar_listing(alice.id)}
    assert {"moved-owner.ics", "moved-admin.ics"} <= hrefs, "moved within the calendar"
    assert not {"mv-owner.ics", "mv-admin.ics", "mvb-admin.ics"} & hrefs, "not left behind"
    assert [o.href for o in store.calendar_listing(bob.id)] == ["from-alice-admin.ics"]
    for cell in cells:  # an accepted write did write (the fingerprint can tell)
        accepted = (cell.answer.status or 0) < 300
        if accepted and ROWS[cell.row][0](cell.caller).writes and "sync" not in cell.row:
            assert cell.store_changed, (cell.row, cell.caller)


def test_no_password_nor_token_reaches_the_server_log(tmp_path: Path):
    """A server at log level debug, used with passwords (right and wrong), Basic headers and
    a Google sync through the triggers (OAuth refresh and access tokens, the client
    secret): none of them is in its log, nor in the audit log."""
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url)
    passwords = {"alice": "pw-" + secrets.token_urlsafe(12),
                 "carol": "pw-" + secrets.token_urlsafe(12)}
    store.add_user("alice", passwords["alice"])
    store.add_user("carol", passwords["carol"], is_admin=True)
    wrong = "guess-" + secrets.token_urlsafe(12)
    with connected_google(store, ["alice"], tmp_path / "tokens") as (fake, calendars, env):
        server = start_process(tmp_path, url, env, log_level="debug",
                               config=config_file(tmp_path, auth_delay=0.01))
        try:
            base = server.url + "/"
            alice = ("alice", passwords["alice"])
            requests.request("PROPFIND", base + "alice/rendez-vous/", auth=alice,
                             headers={"Depth": "1"}, timeout=30)
            requests.put(base + "alice/rendez-vous/s.ics", auth=alice, timeout=30,
                         data=(b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\n"
                               b"UID:s\r\nDTSTART:20270105T100000Z\r\nSUMMARY:Secret test\r\n"
                               b"END:VEVENT\r\nEND:VCALENDAR\r\n"))
            requests.get(base + "alice/rendez-vous/", auth=("alice", wrong), timeout=30)
            requests.post(base + "bridge/sync/open", auth=("alice", wrong), timeout=30)
            for direction in ("close", "open"):
                answer = requests.post(f"{base}bridge/sync/{direction}", auth=alice, timeout=60)
                assert answer.status_code == 200, answer.text
            answer = requests.post(base + "bridge/sync/close", json={"user": "alice"},
                                   auth=("carol", passwords["carol"]), timeout=60)
            assert answer.status_code == 200, answer.text
        finally:
            server.stop()
        token = json.loads((tmp_path / "tokens" / "alice.json").read_text())
        assert [e["summary"] for e in fake.events(calendars["alice"])] == ["Secret test"]
    log = server.log_path.read_text(errors="replace")
    assert "Secret test" in log or "PUT" in log, "the log is at debug level"
    secrets_used = {
        "alice's password": passwords["alice"], "carol's password": passwords["carol"],
        "the wrong password": wrong,
        "alice's Basic header": base64.b64encode(f"alice:{passwords['alice']}".encode()).decode(),
        "the refresh token": token["refresh_token"], "the access token": token["token"],
        "the client secret": fake.client_secret}
    with store.reading() as conn:
        audit = " ".join(str(row) for table_ in ("sync_runs", "sync_run_items", "sync_state")
                         for row in conn.execute(text(f"SELECT * FROM {table_}")))
    found = {name for name, value in secrets_used.items() if value in log or value in audit}
    assert found == set(), f"in the log: {sorted(found)}"
