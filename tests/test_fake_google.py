"""The Google Calendar fake, exercised through the real google-api-python-client and google-auth."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from google.auth.exceptions import RefreshError
from google.auth.transport.requests import Request
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.fakes.google_calendar import FakeGoogleCalendar

TZ = "Europe/Paris"


@pytest.fixture
def fake() -> Iterator[FakeGoogleCalendar]:
    with FakeGoogleCalendar() as running:
        yield running


@pytest.fixture
def service(fake: FakeGoogleCalendar) -> Any:
    creds = fake.credentials()
    return build("calendar", "v3", credentials=creds, static_discovery=True,
                 cache_discovery=False, client_options={"api_endpoint": fake.api_url})


def timed(day: str, hour: int, summary: str = "RDV", **extra: Any) -> dict[str, Any]:
    return {"summary": summary,
            "start": {"dateTime": f"{day}T{hour:02d}:00:00", "timeZone": TZ},
            "end": {"dateTime": f"{day}T{hour + 1:02d}:00:00", "timeZone": TZ}, **extra}


def error_of(exc: HttpError) -> tuple[int, str]:
    body = json.loads(exc.content)["error"]
    return exc.resp.status, body["errors"][0]["reason"]


def fast(request: Any) -> Any:
    """Skip googleapiclient's exponential backoff sleeps."""
    request._sleep = lambda seconds: None
    return request


def test_calendar_list_paging(fake: FakeGoogleCalendar, service: Any) -> None:
    for name in ("Gestan RDV", "Perso", "Travail"):
        fake.add_calendar(name)
    first = service.calendarList().list(maxResults=2).execute()
    second = service.calendarList().list(maxResults=2, pageToken=first["nextPageToken"]).execute()
    names = [c["summary"] for c in first["items"] + second["items"]]
    assert names == ["alice@example.com", "Gestan RDV", "Perso", "Travail"]
    assert "nextPageToken" not in second


def test_paging_sync_token_only_on_last_page(fake: FakeGoogleCalendar, service: Any) -> None:
    for n in range(5):
        fake.insert_event("primary", timed("2027-01-0" + str(n + 1), 9, f"e{n}"))
    pages, token = [], None
    while True:
        page = service.events().list(calendarId="primary", maxResults=2,
                                     pageToken=token).execute()
        pages.append(page)
        token = page.get("nextPageToken")
        if token is None:
            break
    assert [len(p["items"]) for p in pages] == [2, 2, 1]
    assert all("nextSyncToken" not in p for p in pages[:-1])
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    assert pages[0]["timeZone"] == TZ


def test_incremental_sync_reports_changes_and_deletions(fake: FakeGoogleCalendar,
                                                        service: Any) -> None:
    events = service.events()
    a = events.insert(calendarId="primary", body=timed("2027-02-01", 9, "a")).execute()
    b = events.insert(calendarId="primary", body=timed("2027-02-02", 9, "b")).execute()
    token = events.list(calendarId="primary").execute()["nextSyncToken"]

    events.delete(calendarId="primary", eventId=a["id"]).execute()
    events.patch(calendarId="primary", eventId=b["id"], body={"summary": "b2"}).execute()
    fake.insert_event("primary", timed("2027-02-03", 9, "c"))  # another client

    delta = events.list(calendarId="primary", syncToken=token).execute()
    by_id = {e["id"]: e for e in delta["items"]}
    assert len(by_id) == 3
    assert by_id[a["id"]]["status"] == "cancelled"
    assert by_id[b["id"]]["summary"] == "b2"
    again = events.list(calendarId="primary", syncToken=delta["nextSyncToken"]).execute()
    assert again["items"] == []

    plain = events.list(calendarId="primary").execute()["items"]
    assert a["id"] not in {e["id"] for e in plain}
    shown = events.list(calendarId="primary", showDeleted=True).execute()["items"]
    assert a["id"] in {e["id"] for e in shown}
    assert events.get(calendarId="primary", eventId=a["id"]).execute()["status"] == "cancelled"
    with pytest.raises(HttpError) as gone:
        events.delete(calendarId="primary", eventId=a["id"]).execute()
    assert error_of(gone.value) == (410, "deleted")
    with pytest.raises(HttpError) as missing:
        events.delete(calendarId="primary", eventId="nosuchevent").execute()
    assert error_of(missing.value)[0] == 404


def test_sync_token_restrictions_and_expiry(fake: FakeGoogleCalendar, service: Any) -> None:
    events = service.events()
    token = events.list(calendarId="primary").execute()["nextSyncToken"]
    with pytest.raises(HttpError) as bad:
        events.list(calendarId="primary", syncToken=token,
                    timeMin="2027-01-01T00:00:00Z").execute()
    assert error_of(bad.value)[0] == 400
    fake.expire_sync_tokens()
    with pytest.raises(HttpError) as expired:
        events.list(calendarId="primary", syncToken=token).execute()
    assert error_of(expired.value) == (410, "fullSyncRequired")
    with pytest.raises(HttpError) as unknown:
        events.list(calendarId="primary", syncToken="made-up").execute()
    assert error_of(unknown.value) == (410, "fullSyncRequired")


def test_client_chosen_id_and_409_on_retry(fake: FakeGoogleCalendar, service: Any) -> None:
    body = timed("2027-03-01", 10, extendedProperties={"private": {"gestanId": "42"}})
    body["id"] = "gestan0000042"
    created = service.events().insert(calendarId="primary", body=body).execute()
    assert created["id"] == "gestan0000042"
    with pytest.raises(HttpError) as dup:
        service.events().insert(calendarId="primary", body=body).execute()
    assert error_of(dup.value) == (409, "duplicate")
    for bad_id in ("abc", "Gestan00042", "wxyz12345"):  # too short, upper case, w not base32hex
        with pytest.raises(HttpError) as bad:
            service.events().insert(calendarId="primary", body=dict(body, id=bad_id)).execute()
        assert error_of(bad.value)[0] == 400
    found = service.events().list(calendarId="primary",
                                  privateExtendedProperty="gestanId=42").execute()["items"]
    assert [e["id"] for e in found] == ["gestan0000042"]
    assert found[0]["extendedProperties"]["private"] == {"gestanId": "42"}
    none = service.events().list(calendarId="primary",
                                 privateExtendedProperty="gestanId=43").execute()["items"]
    assert none == []


def test_crash_after_commit_then_retry_answers_409(fake: FakeGoogleCalendar,
                                                   service: Any) -> None:
    body = dict(timed("2027-03-02", 10), id="crashed00001")
    fake.fail_next(status=503, after_apply=True)
    with pytest.raises(HttpError):
        service.events().insert(calendarId="primary", body=body).execute()
    assert fake.event("primary", "crashed00001") is not None
    with pytest.raises(HttpError) as dup:
        service.events().insert(calendarId="primary", body=body).execute()
    assert error_of(dup.value)[0] == 409


def test_if_match_etag_412(service: Any) -> None:
    events = service.events()
    ev = events.insert(calendarId="primary", body=timed("2027-04-01", 14)).execute()
    request = events.patch(calendarId="primary", eventId=ev["id"],
                           body={"start": {"dateTime": "2027-04-01T15:00:00", "timeZone": TZ},
                                 "end": {"dateTime": "2027-04-01T16:00:00", "timeZone": TZ}})
    request.headers["If-Match"] = ev["etag"]
    moved = request.execute()
    assert moved["etag"] != ev["etag"] and moved["etag"].startswith('"')
    assert moved["updated"] > ev["updated"] and moved["sequence"] == ev["sequence"] + 1
    stale = events.update(calendarId="primary", eventId=ev["id"], body=dict(ev, summary="x"))
    stale.headers["If-Match"] = ev["etag"]
    with pytest.raises(HttpError) as conflict:
        stale.execute()
    assert error_of(conflict.value) == (412, "conditionNotMet")


def test_single_events_expansion_and_exceptions(fake: FakeGoogleCalendar, service: Any) -> None:
    events = service.events()
    series = dict(timed("2027-03-15", 9, "weekly"), id="series00001", recurrence=[
        "RRULE:FREQ=WEEKLY;COUNT=4", "EXDATE;TZID=Europe/Paris:20270322T090000"])
    events.insert(calendarId="primary", body=series).execute()
    window = {"timeMin": "2027-03-01T00:00:00Z", "timeMax": "2027-05-01T00:00:00Z"}
    token = events.list(calendarId="primary", singleEvents=True, **window).execute()

    items = token["items"]
    assert [i["id"] for i in items] == [  # 15 March CET, 29 March and 5 April CEST
        "series00001_20270315T080000Z", "series00001_20270329T070000Z",
        "series00001_20270405T070000Z"]
    assert all(i["recurringEventId"] == "series00001" and "recurrence" not in i for i in items)
    assert items[1]["originalStartTime"] == {"dateTime": "2027-03-29T09:00:00+02:00",
                                             "timeZone": TZ}

    # Moving one instance makes an exception; deleting another cancels it.
    events.patch(calendarId="primary", eventId=items[1]["id"], body={
        "summary": "moved", "start": {"dateTime": "2027-03-30T11:00:00", "timeZone": TZ},
        "end": {"dateTime": "2027-03-30T12:00:00", "timeZone": TZ}}).execute()
    events.delete(calendarId="primary", eventId=items[2]["id"]).execute()

    after = events.list(calendarId="primary", singleEvents=True, orderBy="startTime",
                        **window).execute()["items"]
    assert [(i["id"], i["summary"]) for i in after] == [
        ("series00001_20270315T080000Z", "weekly"), ("series00001_20270329T070000Z", "moved")]
    assert after[1]["originalStartTime"]["dateTime"] == "2027-03-29T09:00:00+02:00"
    assert after[1]["start"]["dateTime"].startswith("2027-03-30T11:00")

    masters = events.list(calendarId="primary", **window).execute()["items"]
    assert {e["id"] for e in masters} == {"series00001", "series00001_20270329T070000Z"}
    instances = events.instances(calendarId="primary", eventId="series00001",
                                 showDeleted=True).execute()["items"]
    assert [i.get("status") for i in instances] == ["confirmed", "confirmed", "cancelled"]

    delta = events.list(calendarId="primary", syncToken=token["nextSyncToken"]).execute()
    changed = {e["id"]: e for e in delta["items"]}
    assert changed["series00001_20270405T070000Z"]["status"] == "cancelled"
    assert changed["series00001_20270405T070000Z"]["recurringEventId"] == "series00001"
    assert "originalStartTime" in changed["series00001_20270405T070000Z"]
    assert changed["series00001_20270329T070000Z"]["summary"] == "moved"


def test_all_day_series_and_time_window(service: Any) -> None:
    events = service.events()
    events.insert(calendarId="primary", body={
        "summary": "garde", "start": {"date": "2027-06-01"}, "end": {"date": "2027-06-02"},
        "recurrence": ["RRULE:FREQ=DAILY;UNTIL=20270610"]}).execute()
    page = events.list(calendarId="primary", singleEvents=True,
                       timeMin="2027-06-03T00:00:00+02:00",
                       timeMax="2027-06-05T00:00:00+02:00").execute()
    assert [i["start"] for i in page["items"]] == [{"date": "2027-06-03"}, {"date": "2027-06-04"}]
    assert page["items"][0]["id"].endswith("_20270603")
    assert page["items"][0]["originalStartTime"] == {"date": "2027-06-03"}


def test_batch_of_50_inserts_is_one_http_request(fake: FakeGoogleCalendar,
                                                 service: Any) -> None:
    results: dict[str, Any] = {}

    def collect(request_id: str, response: Any, exception: Exception | None) -> None:
        results[request_id] = exception or response

    batch = fake.new_batch(collect)  # == BatchHttpRequest(callback, batch_uri=fake.batch_url)
    for n in range(50):
        body = dict(timed("2027-07-01", 8, f"b{n}"), id=f"batch{n:05d}")
        batch.add(service.events().insert(calendarId="primary", body=body), request_id=str(n))
    service.events().list(calendarId="primary").execute()  # get the token refreshed first
    fake.reset_log()
    batch.execute()
    assert fake.request_count == 1
    assert len([r for r in fake.request_log if r.in_batch]) == 50
    assert all(results[str(n)]["id"] == f"batch{n:05d}" for n in range(50))
    assert len(fake.events("primary")) == 50


def test_batch_parts_get_their_own_errors(fake: FakeGoogleCalendar, service: Any) -> None:
    results: dict[str, Any] = {}
    batch = fake.new_batch(lambda rid, resp, exc: results.__setitem__(rid, exc or resp))
    for n in range(3):
        batch.add(service.events().insert(calendarId="primary",
                                          body=timed("2027-07-02", 8 + n)), request_id=str(n))
    fake.fail_next(status=403, reason="userRateLimitExceeded", retry_after=2)
    batch.execute()
    assert isinstance(results["0"], HttpError)
    assert error_of(results["0"]) == (403, "userRateLimitExceeded")
    assert results["0"].resp["retry-after"] == "2"
    assert results["1"]["status"] == results["2"]["status"] == "confirmed"


def test_rate_limits_retried_quota_exceeded_not(fake: FakeGoogleCalendar, service: Any) -> None:
    fake.fail_next(2, status=429, retry_after=1)
    fake.reset_log()
    page = fast(service.events().list(calendarId="primary")).execute(num_retries=3)
    assert "nextSyncToken" in page
    assert [r.status for r in fake.request_log if r.path.startswith("/calendar")] == [
        429, 429, 200]

    fake.fail_next(status=403, reason="rateLimitExceeded")
    fast(service.events().list(calendarId="primary")).execute(num_retries=2)

    fake.fail_next(status=403, reason="quotaExceeded")
    fake.reset_log()
    with pytest.raises(HttpError) as quota:
        fast(service.events().list(calendarId="primary")).execute(num_retries=3)
    assert error_of(quota.value) == (403, "quotaExceeded")
    assert fake.request_count == 1


def test_random_failures_converge_with_retries(fake: FakeGoogleCalendar, service: Any) -> None:
    fake.fail_randomly(0.2, statuses=(429, 503), seed=7)
    for n in range(20):
        body = dict(timed("2027-08-01", 9, f"r{n}"), id=f"random{n:05d}")
        fast(service.events().insert(calendarId="primary", body=body)).execute(num_retries=8)
    assert fake.injected_errors > 0
    assert len(fake.events("primary")) == 20


def test_auth_token_refresh_and_invalid_grant(fake: FakeGoogleCalendar, service: Any) -> None:
    service.events().list(calendarId="primary").execute()
    assert fake.token_request_count == 1
    fake.expire_access_tokens()  # server-side expiry: 401, the client refreshes and retries
    service.events().list(calendarId="primary").execute()
    assert fake.token_request_count == 2

    unauthenticated = requests.get(fake.api_url + "users/me/calendarList", timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"]["errors"][0]["reason"] == "authError"

    fake.revoke(fake.refresh_token)
    with pytest.raises(RefreshError) as revoked:
        fake.credentials().refresh(Request())
    assert "invalid_grant" in str(revoked.value)
    with pytest.raises(RefreshError):  # revoking also kills the access tokens already issued
        service.events().list(calendarId="primary").execute()


def test_authorization_code_flow(fake: FakeGoogleCalendar) -> None:
    consent = requests.get(fake.auth_uri, allow_redirects=False, timeout=5, params={
        "client_id": fake.client_id, "redirect_uri": "http://localhost:8765/",
        "response_type": "code", "state": "xyz", "scope": "https://www.googleapis.com/auth/calendar"})
    assert consent.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(consent.headers["Location"]).query)
    assert query["state"] == ["xyz"]
    grant = requests.post(fake.token_uri, timeout=5, data={
        "grant_type": "authorization_code", "code": query["code"][0],
        "client_id": fake.client_id, "client_secret": fake.client_secret,
        "redirect_uri": "http://localhost:8765/"}).json()
    creds = fake.credentials(refresh_token=grant["refresh_token"])
    creds.refresh(Request())
    assert creds.token and creds.valid


def test_batch_over_50_parts_is_refused(fake: FakeGoogleCalendar, service: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("googleapiclient.http.MAX_BATCH_LIMIT", 60)  # lift the client's check
    batch = fake.new_batch()
    for n in range(51):
        batch.add(service.events().get(calendarId="primary", eventId=f"ev{n:05d}"))
    with pytest.raises(HttpError) as refused:
        batch.execute()
    assert refused.value.resp.status == 400
