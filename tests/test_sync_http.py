"""``POST /bridge/sync/open|close`` on the running server: who may call it, what it answers
(one JSON shape, the status code and ``exit_code`` telling ok / skipped / stopped), and that
two syncs of one user never run at once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import requests

from bridge import targets
from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.targets.google_auth import save_credentials
from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.test_sync_cli import memory_kind

CALENDAR = "Gestan RDV"
SHAPE = {"status", "exit_code", "error", "runs"}
REPORT_KEYS = {"run_id", "user", "target", "direction", "dry_run", "status", "exit_code",
               "message", "gestan", "remote", "conflicts", "skipped", "requests", "planned"}


@pytest.fixture
def google(server, tmp_path, monkeypatch):
    with FakeGoogleCalendar() as fake:
        monkeypatch.setenv("GESTAN_BRIDGE_TOKEN_DIR", str(tmp_path / "tokens"))
        monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_API_URL", fake.api_url)
        monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_TOKEN_URI", fake.token_uri)
        cal = fake.add_calendar(CALENDAR)
        save_credentials("alice", fake.credentials())
        server.store.set_user("alice", settings={"google_calendar": CALENDAR})
        add(server.store, "Visite", 2)
        yield fake, cal


def add(store, subject: str, days: int) -> None:
    start = (now_utc() + timedelta(days=days)).replace(hour=9, minute=0, second=0,
                                                       microsecond=0)
    store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                        tzid="Europe/Paris", subject=subject))


def google_event(days: int, summary: str, **extra) -> dict:
    start = (now_utc() + timedelta(days=days)).replace(hour=10, minute=0, second=0,
                                                       microsecond=0)
    end = start + timedelta(hours=1)
    return {"summary": summary,
            "start": {"dateTime": start.isoformat() + "Z", "timeZone": "Europe/Paris"},
            "end": {"dateTime": end.isoformat() + "Z", "timeZone": "Europe/Paris"}, **extra}


def post(server, login, direction, **body):
    return server.session(login).post(f"{server.url}bridge/sync/{direction}", json=body,
                                      timeout=60)


def expect(answer: requests.Response, status: int, outcome: str, exit_code: int) -> dict:
    """The answer's status code, its fixed JSON shape, its outcome and exit code."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert set(body) == SHAPE, body
    assert (body["status"], body["exit_code"]) == (outcome, exit_code), body
    for report in body["runs"]:
        assert set(report) == REPORT_KEYS, report
    return body


def test_close_answers_one_result_with_the_run_report(server, google):
    fake, cal = google
    body = expect(post(server, "alice", "close"), 200, "ok", 0)
    assert body["error"] is None
    [report] = body["runs"]
    assert report["target"] == "google" and report["status"] == "ok"
    assert report["remote"]["created"] == 1 and report["exit_code"] == 0
    assert report["requests"] >= 1
    assert [e["summary"] for e in fake.events(cal)] == ["Visite"]
    dry = expect(post(server, "alice", "open", dry_run=True), 200, "ok", 0)
    assert dry["runs"][0]["dry_run"] is True


def test_who_may_sync_whom(server, google):
    assert post(server, "bob", "close", user="alice").status_code == 403
    wrong = requests.post(f"{server.url}bridge/sync/close", auth=("alice", "wrong"),
                          timeout=10)
    expect(wrong, 401, "refused", 2)
    assert requests.get(f"{server.url}bridge/sync/close", auth=("alice", "alice"),
                        timeout=10).status_code == 405
    by_admin = expect(post(server, "carol", "close", user="alice"), 200, "ok", 0)
    assert by_admin["runs"][0]["user"] == "alice"
    not_connected = expect(post(server, "bob", "open"), 422, "stopped", 1)
    assert "--google-calendar" in not_connected["error"]
    assert "google connect --user bob" in not_connected["error"]
    assert not_connected["runs"] == []


def test_an_unknown_target_lists_the_known_ones(server, google):
    unknown = expect(post(server, "alice", "open", target="exchange"), 422, "stopped", 1)
    assert "choose one of google, outlook, all" in unknown["error"]
    expect(post(server, "alice", "open", target=["google"]), 400, "refused", 2)


def test_status_lines_and_error_bodies_carry_no_client_text_nor_exception_text(server, google):
    nobody = post(server, "carol", "open", user="nobody\u00e9<x>")
    assert nobody.status_code == 404 and nobody.reason == "Not Found"
    bad_json = server.session("alice").post(f"{server.url}bridge/sync/open", data=b"{oops",
                                            timeout=10)
    body = expect(bad_json, 400, "refused", 2)
    assert bad_json.reason == "Bad Request"
    assert body["error"] == "the body must be JSON", "no parser message in the body"


def test_an_unexpected_error_is_a_500_without_its_text(server, google, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /srv/gestan/db.sqlite")

    monkeypatch.setattr("bridge.http_sync.run_sync", broken)
    answer = post(server, "alice", "open")
    body = expect(answer, 500, "failed", 1)
    assert "secret" not in answer.text and "RuntimeError" not in answer.text
    assert "Traceback" not in answer.text and body["runs"] == []


def test_skipped_items_answer_207_with_exit_code_3(server, google):
    fake, cal = google
    fake.insert_event(cal, google_event(2, "Lisible"))
    fake.insert_event(cal, google_event(3, "Chaque minute",
                                        recurrence=["RRULE:FREQ=MINUTELY;COUNT=30"]))
    body = expect(post(server, "alice", "open"), 207, "skipped", 3)
    [report] = body["runs"]
    assert report["status"] == "ok" and report["exit_code"] == 3
    assert report["gestan"]["created"] == 1 and len(report["skipped"]) == 1
    assert "MINUTELY" in report["skipped"][0]["reason"]
    assert body["error"] is None


def test_quota_stops_with_409_and_the_report_of_what_was_done(server, google):
    fake, cal = google
    expect(post(server, "alice", "close"), 200, "ok", 0)  # binds the calendar
    for n in range(4):
        add(server.store, f"Q{n}", 3 + n)
    fake.fail_next(1, 403, "quotaExceeded")
    body = expect(post(server, "alice", "close"), 409, "stopped", 1)
    [report] = body["runs"]
    assert report["status"] == "stopped" and "quota" in report["message"]
    assert body["error"].startswith("google: ") and "quota" in body["error"]
    assert report["run_id"] is not None
    assert report["remote"]["created"] == len(fake.events(cal)) - 1 == 3, report
    again = expect(post(server, "alice", "close"), 200, "ok", 0)
    assert again["runs"][0]["remote"]["created"] == 1 and len(fake.events(cal)) == 5


def test_mass_delete_guard_stops_with_409_unless_allowed(server, google):
    fake, cal = google
    ids = [fake.insert_event(cal, google_event(2 + n, f"R{n}"))["id"] for n in range(12)]
    expect(post(server, "alice", "open"), 200, "ok", 0)
    for event_id in ids[:11]:
        fake.delete_event(cal, event_id)
    body = expect(post(server, "alice", "open"), 409, "stopped", 1)
    assert "allow-mass-delete" in body["runs"][0]["message"]
    assert body["runs"][0]["gestan"]["deleted"] == 0
    allowed = expect(post(server, "alice", "open", allow_mass_delete=True), 200, "ok", 0)
    assert allowed["runs"][0]["gestan"]["deleted"] == 11


def test_revoked_consent_stops_with_409_saying_how_to_reconnect(server, google):
    fake, _ = google
    fake.revoke()
    fake.expire_access_tokens()
    body = expect(post(server, "alice", "open"), 409, "stopped", 1)
    assert "google connect --user alice" in body["error"]
    assert body["runs"][0]["status"] == "stopped"


def test_a_deleted_calendar_stops_with_409_and_is_found_again(server, google):
    fake, cal = google
    expect(post(server, "alice", "open"), 200, "ok", 0)
    fake.delete_calendar(cal)
    body = expect(post(server, "alice", "open"), 409, "stopped", 1)
    assert "no longer exists" in body["error"]
    fake.add_calendar(CALENDAR)
    expect(post(server, "alice", "open"), 200, "ok", 0)


def test_token_endpoint_down_stops_with_409(server, google, monkeypatch):
    monkeypatch.setenv("GESTAN_BRIDGE_GOOGLE_TOKEN_URI", "http://127.0.0.1:1/token")
    body = expect(post(server, "alice", "open"), 409, "stopped", 1)
    assert "could not be reached" in body["error"]
    assert "Errno" not in body["error"] and "127.0.0.1:1" not in body["error"]


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
    busy = expect(second, 409, "stopped", 1)
    assert "already running" in busy["error"]
    assert busy["runs"][0]["run_id"] is None, "nothing was run"
    done = expect(answers[0], 200, "ok", 0)
    assert len(fake.events(cal)) == 1
    assert done["runs"][0]["remote"]["created"] == 1


def test_every_connected_target_runs_in_order_and_the_worst_decides(server, google,
                                                                    monkeypatch):
    fake, cal = google
    account, memory = memory_kind(monkeypatch)
    server.store.set_user("alice", settings={"memory": "on"})
    body = expect(post(server, "alice", "close"), 200, "ok", 0)
    assert [r["target"] for r in body["runs"]] == ["google", "memory"]
    assert [r["remote"]["created"] for r in body["runs"]] == [1, 1]
    assert len(fake.events(cal)) == 1 and len(memory.live()) == 1
    only = expect(post(server, "alice", "close", target="memory"), 200, "ok", 0)
    assert [r["target"] for r in only["runs"]] == ["memory"]
    account.fail_next(10, kind="write")
    add(server.store, "Encore", 4)
    body = expect(post(server, "alice", "close", target="all"), 409, "stopped", 1)
    assert [(r["target"], r["status"]) for r in body["runs"]] == [("google", "ok"),
                                                                  ("memory", "stopped")]
    assert body["runs"][0]["remote"]["created"] == 1, "Google's run is reported whole"
    assert body["error"] == "memory: the remote calendar is not answering (injected failure)"
    assert targets.get("memory") is not None


@pytest.mark.parametrize("raw", [b'{"days_back": 1e309}', b'{"days_back": 2.5}',
                                 b'{"days_back": true}', b"[" * 30_000 + b"]" * 30_000,
                                 b'{"a":' * 10_000 + b"1" + b"}" * 10_000])
def test_hostile_json_is_a_400_not_a_500(server, google, raw):
    """Issue 12: infinity, a fraction, 30,000 levels of nesting answered 500."""
    answer = server.session("alice").post(f"{server.url}bridge/sync/open", data=raw,
                                          timeout=30)
    body = expect(answer, 400, "refused", 2)
    assert answer.reason == "Bad Request" and "Error" not in body["error"]
