"""``POST /bridge/sync/open|close`` on the running server: who may call it, what it answers,
and that two syncs of one user never run at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.targets.google_auth import save_credentials
from tests.fakes.google_calendar import FakeGoogleCalendar

CALENDAR = "Gestan RDV"


@pytest.fixture
def google(server, tmp_path, monkeypatch):
    with FakeGoogleCalendar() as fake:
        monkeypatch.setenv("GESTAN_BRIDGE_TOKEN_DIR", str(tmp_path / "tokens"))
        monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_API_URL", fake.api_url)
        monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_TOKEN_URI", fake.token_uri)
        cal = fake.add_calendar(CALENDAR)
        save_credentials("alice", fake.credentials())
        server.store.set_user("alice", settings={"google_calendar": CALENDAR})
        start = (now_utc() + timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                        microsecond=0)
        server.store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                                   tzid="Europe/Paris", subject="Visite"))
        yield fake, cal


def post(server, login, direction, **body):
    return server.session(login).post(f"{server.url}bridge/sync/{direction}", json=body,
                                      timeout=60)


def test_close_answers_the_run_report_as_json(server, google):
    fake, cal = google
    answer = post(server, "alice", "close")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["status"] == "ok" and report["google"]["created"] == 1
    assert report["requests"] >= 1
    assert [e["summary"] for e in fake.events(cal)] == ["Visite"]
    dry = post(server, "alice", "open", dry_run=True)
    assert dry.json()["dry_run"] is True


def test_who_may_sync_whom(server, google):
    assert post(server, "bob", "close", user="alice").status_code == 403
    assert requests.post(f"{server.url}bridge/sync/close", auth=("alice", "wrong"),
                         timeout=10).status_code == 401
    assert requests.get(f"{server.url}bridge/sync/close", auth=("alice", "alice"),
                        timeout=10).status_code == 405
    by_admin = post(server, "carol", "close", user="alice")
    assert by_admin.status_code == 200 and by_admin.json()["user"] == "alice"
    not_connected = post(server, "bob", "open")
    assert not_connected.status_code == 422
    assert "google" in not_connected.json()["error"]


def test_two_syncs_of_one_user_never_run_at_once(server, google):
    fake, cal = google
    fake.fail_next(1, 429, retry_after=2)  # the first run waits 2 s before its retry
    answers: list[requests.Response] = []
    first = threading.Thread(target=lambda: answers.append(post(server, "alice", "close")))
    first.start()
    for _ in range(50):
        if fake.injected_errors:
            break
        threading.Event().wait(0.05)
    second = post(server, "alice", "close")
    first.join(timeout=60)
    assert second.status_code == 409 and "already running" in second.json()["error"]
    assert answers[0].status_code == 200 and answers[0].json()["status"] == "ok"
    assert len(fake.events(cal)) == 1
    assert answers[0].json()["google"]["created"] == 1
