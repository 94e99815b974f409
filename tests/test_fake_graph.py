"""The Graph fake, exercised through the real msal and plain requests (the Graph target's stack).

Each test checks the fake's own state, not only its answers, so a fake that merely echoes
requests would fail them.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msal
import pytest
import requests

from tests.fakes.graph import GRAPH_DEFAULT_SCOPE, FakeGraph

CAL_SCOPE = "https://graph.microsoft.com/Calendars.ReadWrite"
PROP_ID = "String {3f2b8d4e-9a61-4c0e-8f55-0b7d2c1a9e10} Name GestanUid"
TZ = "Europe/Paris"
PREFER_PARIS = {"Prefer": f'outlook.timezone="{TZ}"'}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraph]:
    """A running fake whose CA is the one requests trusts: requests lets REQUESTS_CA_BUNDLE
    (set in CI to the system bundle) override ``Session.verify``, which is where msal puts its
    ``verify=``, so the environment is what the Graph target and these tests must set."""
    with FakeGraph(device_interval=1) as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.ca_file)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        yield running


def cca(fake: FakeGraph, secret: str | None = None, **extra: Any
        ) -> msal.ConfidentialClientApplication:
    """The admin-consented app, configured as the Graph target must configure it."""
    return msal.ConfidentialClientApplication(
        fake.client_id, client_credential=secret or fake.client_secret,
        authority=f"{fake.authority_url}/{fake.tenant}", instance_discovery=False,
        validate_authority=False, verify=fake.ca_file, **extra)


def pca(fake: FakeGraph, cache: msal.TokenCache | None = None) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        fake.public_client_id, authority=f"{fake.authority_url}/{fake.tenant}",
        instance_discovery=False, validate_authority=False, verify=fake.ca_file,
        token_cache=cache)


@pytest.fixture
def graph(fake: FakeGraph) -> requests.Session:
    """requests aimed at the fake with an app-only token obtained through msal."""
    result = cca(fake).acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    session = requests.Session()
    session.verify = fake.ca_file
    session.headers["Authorization"] = f"Bearer {result['access_token']}"
    return session


def url(fake: FakeGraph, tail: str) -> str:
    return f"{fake.api_url}users/{fake.mailbox}/{tail}"


def timed(day: str, hour: int, subject: str = "RDV", tz: str = TZ, **extra: Any
          ) -> dict[str, Any]:
    return {"subject": subject,
            "start": {"dateTime": f"{day}T{hour:02d}:00:00", "timeZone": tz},
            "end": {"dateTime": f"{day}T{hour + 1:02d}:00:00", "timeZone": tz}, **extra}


def device_login(fake: FakeGraph, app: msal.PublicClientApplication) -> dict[str, Any]:
    flow = app.initiate_device_flow(scopes=[CAL_SCOPE])
    fake.approve_device_code(flow["user_code"])
    return app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)


# ---------------------------------------------------------------------- identity
def test_client_credentials_through_msal_over_tls(fake: FakeGraph) -> None:
    app = cca(fake)
    first = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    again = app.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    assert first["token_type"] == "Bearer" and again["access_token"] == first["access_token"]
    # one discovery GET at construction, one token POST: the second answer came from the cache
    assert (fake.discovery_request_count, fake.token_request_count) == (1, 1)
    paths = [e.path for e in fake.request_log]
    assert paths == [f"/{fake.tenant}/v2.0/.well-known/openid-configuration",
                     f"/{fake.tenant_id}/oauth2/v2.0/token"]
    answer = requests.get(url(fake, "calendar"), verify=fake.ca_file,
                          headers={"Authorization": f"Bearer {first['access_token']}"})
    assert answer.status_code == 200 and answer.json()["isDefaultCalendar"] is True
    assert fake.request_count == 1



def test_system_ca_bundle_in_env_overrides_msal_verify(fake: FakeGraph,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The trap the Graph target must avoid: msal's verify= loses to REQUESTS_CA_BUNDLE."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    with pytest.raises(requests.exceptions.SSLError):
        cca(fake)  # construction already fetches the OpenID configuration
    assert fake.discovery_request_count == 0


def test_wrong_secret_and_wrong_scope_answer_as_aad(fake: FakeGraph) -> None:
    bad = cca(fake, secret="not-the-secret").acquire_token_for_client(
        scopes=[GRAPH_DEFAULT_SCOPE])
    assert bad["error"] == "invalid_client" and bad["error_codes"] == [7000215]
    assert bad["error_description"].startswith("AADSTS7000215:")
    assert "access_token" not in bad
    scoped = cca(fake).acquire_token_for_client(scopes=[CAL_SCOPE])
    assert scoped["error"] == "invalid_scope" and 1002012 in scoped["error_codes"]
    assert not fake._access  # noqa: SLF001 - no token was issued by the fake
    anonymous = requests.get(url(fake, "calendars"), verify=fake.ca_file)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_device_code_pending_then_approved_and_cache_survives(fake: FakeGraph) -> None:
    cache = msal.SerializableTokenCache()
    app = pca(fake, cache)
    flow = app.initiate_device_flow(scopes=[CAL_SCOPE])
    assert flow["user_code"] in flow["message"] and flow["interval"] == 1
    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    assert pending["error"] == "authorization_pending" and 70016 in pending["error_codes"]
    flow["latest_attempt_at"] = 0  # we poll again at once, not after the interval
    fake.approve_device_code(flow["user_code"])
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    assert result["id_token_claims"]["preferred_username"] == fake.user
    assert "refresh_token" in result
    # the cache (what `outlook connect` keeps per user) restores the account elsewhere
    restored = msal.SerializableTokenCache()
    restored.deserialize(cache.serialize())
    later = pca(fake, restored)
    (account,) = later.get_accounts()
    assert account["username"] == fake.user
    before = fake.token_request_count
    silent = later.acquire_token_silent([CAL_SCOPE], account=account)
    assert silent["access_token"] == result["access_token"]
    assert fake.token_request_count == before  # served from the cache
    me = requests.get(fake.api_url + "me/calendars", verify=fake.ca_file,
                      headers={"Authorization": f"Bearer {silent['access_token']}"})
    assert me.status_code == 200 and me.json()["value"][0]["owner"]["address"] == fake.user


def test_refresh_then_revoked_refresh_is_invalid_grant(fake: FakeGraph) -> None:
    app = pca(fake)
    first = device_login(fake, app)
    (account,) = app.get_accounts()
    fake.expire_access_tokens()
    stale = requests.get(fake.api_url + "me/calendar", verify=fake.ca_file,
                         headers={"Authorization": f"Bearer {first['access_token']}"})
    assert stale.status_code == 401 and "expired" in stale.json()["error"]["message"]
    refreshed = app.acquire_token_silent([CAL_SCOPE], account=account, force_refresh=True)
    assert refreshed["access_token"] != first["access_token"]
    assert fake.request_log[-1].path.endswith("/oauth2/v2.0/token")
    ok = requests.get(fake.api_url + "me/calendar", verify=fake.ca_file,
                      headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert ok.status_code == 200
    fake.revoke()
    failed = app.acquire_token_silent_with_error([CAL_SCOPE], account=account,
                                                 force_refresh=True)
    assert failed["error"] == "invalid_grant" and 50173 in failed["error_codes"]
    dead = requests.get(fake.api_url + "me/calendar", verify=fake.ca_file,
                        headers={"Authorization": f"Bearer {refreshed['access_token']}"})
    assert dead.status_code == 401


def test_device_code_declined_or_expired(fake: FakeGraph) -> None:
    app = pca(fake)
    flow = app.initiate_device_flow(scopes=[CAL_SCOPE])
    fake.deny_device_code(flow["user_code"])
    declined = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    assert declined["error"] == "authorization_declined"
    flow = app.initiate_device_flow(scopes=[CAL_SCOPE])
    fake.expire_device_codes()
    expired = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)
    assert expired["error"] == "expired_token" and 70020 in expired["error_codes"]


def test_revoked_consent_and_disabled_app(fake: FakeGraph, graph: requests.Session) -> None:
    fake.revoke_consent(fake.client_id)
    denied = graph.get(url(fake, "calendars"))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"
    fake.disable_app(fake.client_id)
    result = cca(fake).acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
    assert result["error"] == "unauthorized_client" and 7000112 in result["error_codes"]


# ---------------------------------------------------------------------- Graph
def test_calendars_paging_and_default(fake: FakeGraph, graph: requests.Session) -> None:
    for n in range(10):
        fake.add_calendar(f"Cal {n}")
    first = graph.get(url(fake, "calendars")).json()
    second = graph.get(first["@odata.nextLink"]).json()
    names = [c["name"] for c in first["value"] + second["value"]]
    assert len(first["value"]) == 10 and "@odata.nextLink" not in second
    assert names == ["Calendar"] + [f"Cal {n}" for n in range(10)]
    assert [c["isDefaultCalendar"] for c in first["value"]].count(True) == 1


def test_transaction_id_makes_a_retried_post_idempotent(fake: FakeGraph,
                                                        graph: requests.Session) -> None:
    body = timed("2027-03-01", 9, transactionId="gestan-42-create")
    first = graph.post(url(fake, "calendar/events"), json=body)
    retry = graph.post(url(fake, "calendar/events"), json=body)
    assert first.status_code == retry.status_code == 201
    assert retry.json()["id"] == first.json()["id"]
    assert len(fake.events()) == 1
    other = graph.post(url(fake, "calendar/events"), json=timed("2027-03-01", 9))
    assert other.json()["id"] != first.json()["id"] and len(fake.events()) == 2


def test_times_come_back_in_utc_unless_preferred(fake: FakeGraph,
                                                 graph: requests.Session) -> None:
    made = graph.post(url(fake, "events"),
                      json=timed("2027-07-01", 9, tz="Romance Standard Time")).json()
    assert made["start"] == {"dateTime": "2027-07-01T07:00:00.0000000", "timeZone": "UTC"}
    assert made["originalStartTimeZone"] == "Romance Standard Time"
    local = graph.get(url(fake, f"events/{made['id']}"), headers=PREFER_PARIS).json()
    assert local["start"] == {"dateTime": "2027-07-01T09:00:00.0000000", "timeZone": TZ}
    bad = graph.post(url(fake, "events"), json=timed("2027-07-01", 9, tz="Mars/Olympus"))
    assert bad.status_code == 400 and bad.json()["error"]["code"] == \
        "TimeZoneNotSupportedException"


def test_patch_changes_only_the_fields_sent(fake: FakeGraph, graph: requests.Session) -> None:
    made = fake.add_event(timed(
        "2027-03-02", 10, "Dentist", categories=["Red category"], sensitivity="private",
        importance="high", isReminderOn=True, reminderMinutesBeforeStart=30,
        body={"contentType": "text", "content": "Line 1\nLine 2 <b>"},
        isOnlineMeeting=True))
    answer = graph.patch(url(fake, f"events/{made['id']}"),
                         json={"subject": "Dentiste", "location": {"displayName": "Lyon"}})
    assert answer.status_code == 200
    stored = fake.event(made["id"])
    assert stored is not None
    assert stored["subject"] == "Dentiste" and stored["location"]["displayName"] == "Lyon"
    assert stored["categories"] == ["Red category"] and stored["sensitivity"] == "private"
    assert stored["importance"] == "high" and stored["reminderMinutesBeforeStart"] == 30
    assert stored["onlineMeeting"]["joinUrl"].startswith("https://teams.microsoft.com/")
    assert stored["start"]["dateTime"] == "2027-03-02T09:00:00.0000000"
    assert stored["body"]["contentType"] == "html"  # Graph answers HTML unless asked for text
    text = graph.get(url(fake, f"events/{made['id']}"),
                     headers={"Prefer": 'outlook.body-content-type="text"'}).json()
    assert text["body"] == {"contentType": "text", "content": "Line 1\nLine 2 <b>"}
    unknown = graph.patch(url(fake, f"events/{made['id']}"), json={"colour": "red"})
    assert unknown.status_code == 400 and fake.event(made["id"])["subject"] == "Dentiste"


def test_if_match_stale_etag_is_412(fake: FakeGraph, graph: requests.Session) -> None:
    made = graph.post(url(fake, "events"), json=timed("2027-03-03", 9)).json()
    got = graph.get(url(fake, f"events/{made['id']}"))
    assert got.headers["ETag"] == made["@odata.etag"]
    fake.patch_event(made["id"], {"subject": "moved in Outlook"})
    stale = graph.patch(url(fake, f"events/{made['id']}"), json={"subject": "ours"},
                        headers={"If-Match": made["@odata.etag"]})
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert fake.event(made["id"])["subject"] == "moved in Outlook"
    gone = graph.delete(url(fake, f"events/{made['id']}"),
                        headers={"If-Match": made["@odata.etag"]})
    assert gone.status_code == 412 and fake.event(made["id"]) is not None
    fresh = fake.event(made["id"])["@odata.etag"]
    ok = graph.patch(url(fake, f"events/{made['id']}"), json={"subject": "ours"},
                     headers={"If-Match": fresh})
    assert ok.status_code == 200 and ok.json()["@odata.etag"] != fresh
    assert graph.delete(url(fake, f"events/{made['id']}"),
                        headers={"If-Match": ok.json()["@odata.etag"]}).status_code == 204
    assert fake.event(made["id"]) is None


def test_extended_property_round_trip_and_lookup(fake: FakeGraph,
                                                 graph: requests.Session) -> None:
    ids = {}
    for uid in ("gestan-1", "gestan-2", "it's-3"):
        body = timed("2027-03-04", 9, uid, singleValueExtendedProperties=[
            {"id": PROP_ID, "value": uid}])
        ids[uid] = graph.post(url(fake, "calendar/events"), json=body).json()["id"]
    plain = graph.get(url(fake, f"events/{ids['gestan-2']}")).json()
    assert "singleValueExtendedProperties" not in plain
    expand = f"singleValueExtendedProperties($filter=id eq '{PROP_ID}')"
    got = graph.get(url(fake, f"events/{ids['gestan-2']}"), params={"$expand": expand}).json()
    assert got["singleValueExtendedProperties"] == [{"id": PROP_ID, "value": "gestan-2"}]
    for uid in ("gestan-2", "it's-3"):
        literal = uid.replace("'", "''")
        flt = (f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP_ID}' and "
               f"ep/value eq '{literal}')")
        found = graph.get(url(fake, "calendar/events"), params={"$filter": flt}).json()
        assert [e["id"] for e in found["value"]] == [ids[uid]]
    none = graph.get(url(fake, "calendar/events"), params={"$filter": (
        f"singleValueExtendedProperties/Any(ep: ep/id eq '{PROP_ID}' and ep/value eq 'x')")})
    assert none.json()["value"] == []
    assert fake.extended_properties(ids["gestan-1"]) == {PROP_ID: "gestan-1"}


def weekly(start_day: str, count: int, **extra: Any) -> dict[str, Any]:
    return timed(start_day, 9, "Weekly", recurrence={
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
        "range": {"type": "numbered", "startDate": start_day, "numberOfOccurrences": count}},
        **extra)


def test_series_exception_cancellation_and_instances(fake: FakeGraph,
                                                     graph: requests.Session) -> None:
    master = graph.post(url(fake, "events"), json=weekly("2027-10-18", 4)).json()
    assert master["type"] == "seriesMaster"
    window = {"startDateTime": "2027-10-01T00:00:00Z", "endDateTime": "2027-12-01T00:00:00Z"}
    inst = graph.get(url(fake, f"events/{master['id']}/instances"), params=window).json()
    starts = [i["start"]["dateTime"][:16] for i in inst["value"]]
    # 09:00 in Paris: 07:00 UTC in summer time, 08:00 UTC after 31 October
    assert starts == ["2027-10-18T07:00", "2027-10-25T07:00", "2027-11-01T08:00",
                      "2027-11-08T08:00"]
    assert {i["type"] for i in inst["value"]} == {"occurrence"}
    assert all(i["seriesMasterId"] == master["id"] for i in inst["value"])
    second, third = inst["value"][1], inst["value"][2]
    assert second["originalStart"] == "2027-10-25T07:00:00Z"
    changed = graph.patch(url(fake, f"events/{second['id']}"), json={"subject": "Moved"})
    assert changed.status_code == 200 and changed.json()["type"] == "exception"
    assert graph.delete(url(fake, f"events/{third['id']}")).status_code == 204
    after = graph.get(url(fake, f"events/{master['id']}/instances"), params=window).json()
    assert [(i["type"], i["subject"]) for i in after["value"]] == [
        ("occurrence", "Weekly"), ("exception", "Moved"), ("occurrence", "Weekly")]
    stored = fake.event(master["id"])
    assert stored["cancelledOccurrences"] == [f"OID.{master['id']}.2027-11-01"]
    assert graph.get(url(fake, f"events/{third['id']}")).status_code == 404
    assert len(fake.events()) == 1  # one master, no standalone copies
    listed = graph.get(url(fake, "events")).json()["value"]
    assert [e["type"] for e in listed] == ["seriesMaster"]


def delta_pages(graph: requests.Session, first: str, **params: str) -> list[dict[str, Any]]:
    pages, link = [], first
    headers = {"Prefer": "odata.maxpagesize=2"}
    while True:
        page = graph.get(link, params=params if link == first else None,
                         headers=headers).json()
        pages.append(page)
        if "@odata.nextLink" not in page:
            return pages
        assert "@odata.deltaLink" not in page
        link = page["@odata.nextLink"]


def test_calendar_view_delta_full_then_changes(fake: FakeGraph,
                                               graph: requests.Session) -> None:
    cal = fake.default_calendar_id()
    singles = [fake.add_event(timed(f"2027-05-0{n}", 9, f"e{n}")) for n in range(1, 4)]
    master = fake.add_event(weekly("2027-05-03", 2))
    fake.add_event(timed("2028-01-10", 9, "outside"))
    window = {"startDateTime": "2027-05-01T00:00:00", "endDateTime": "2027-06-01T00:00:00"}
    pages = delta_pages(graph, url(fake, f"calendars/{cal}/calendarView/delta"), **window)
    assert [len(p["value"]) for p in pages] == [2, 2, 1]
    items = [i for p in pages for i in p["value"]]
    assert sorted(i["type"] for i in items) == ["occurrence"] * 2 + ["singleInstance"] * 3
    assert all(i.get("seriesMasterId") in (None, master["id"]) for i in items)
    delta_link = pages[-1]["@odata.deltaLink"]
    assert "$deltatoken=" in delta_link
    # nothing changed: one page, empty, a new deltaLink
    quiet = graph.get(delta_link).json()
    assert quiet["value"] == [] and "@odata.deltaLink" in quiet
    fake.patch_event(singles[0]["id"], {"subject": "changed"})
    fake.delete_event(singles[1]["id"])
    added = fake.add_event(timed("2027-05-20", 9, "new"))
    occurrences = fake.instances(master["id"], datetime(2027, 5, 1, tzinfo=UTC),
                                 datetime(2027, 6, 1, tzinfo=UTC))
    fake.delete_event(occurrences[1]["id"])
    changes = delta_pages(graph, quiet["@odata.deltaLink"])
    got = {i["id"]: i for p in changes for i in p["value"]}
    assert set(got) == {singles[0]["id"], singles[1]["id"], added["id"], occurrences[1]["id"]}
    assert got[singles[0]["id"]]["subject"] == "changed"
    assert got[singles[1]["id"]]["@removed"] == {"reason": "deleted"}
    assert got[occurrences[1]["id"]]["@removed"] == {"reason": "deleted"}
    fake.expire_delta_tokens()
    gone = graph.get(changes[-1]["@odata.deltaLink"])
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "syncStateNotFound"


def batch_post(n: int, day: str = "2027-04-01") -> list[dict[str, Any]]:
    return [{"id": str(i), "method": "POST", "url": "/users/alice@contoso.com/events",
             "headers": {"Content-Type": "application/json"},
             "body": timed(day, 8 + i % 10, f"b{i}")} for i in range(n)]


def test_batch_twenty_parts_counts_once_and_21_is_refused(fake: FakeGraph,
                                                          graph: requests.Session) -> None:
    fake.reset_log()
    answer = graph.post(fake.batch_url, json={"requests": batch_post(20)})
    assert answer.status_code == 200 and fake.request_count == 1
    parts = answer.json()["responses"]
    assert sorted(int(p["id"]) for p in parts) == list(range(20))
    assert {p["status"] for p in parts} == {201}
    assert len(fake.events()) == 20
    too_many = graph.post(fake.batch_url, json={"requests": batch_post(21)})
    assert too_many.status_code == 400 and len(fake.events()) == 20
    assert fake.request_count == 2


def test_batch_part_throttled_with_retry_after(fake: FakeGraph,
                                               graph: requests.Session) -> None:
    fake.fail_next(1, 429, retry_after=7)
    reqs = batch_post(3)
    reqs[2]["headers"] = {}  # a body without Content-Type is refused, as by Graph
    reqs.append({"id": "3", "method": "GET", "url": "/users/alice@contoso.com/calendar",
                 "dependsOn": ["2"]})
    parts = {p["id"]: p for p in graph.post(fake.batch_url, json={"requests": reqs})
             .json()["responses"]}
    assert parts["0"]["status"] == 429 and parts["0"]["headers"]["Retry-After"] == "7"
    assert parts["0"]["body"]["error"]["code"] == "ApplicationThrottled"
    assert parts["1"]["status"] == 201
    assert parts["2"]["status"] == 400 and parts["3"]["status"] == 424
    assert [e["subject"] for e in fake.events()] == ["b1"]
    fake.fail_next(1, 503, retry_after=2)
    plain = graph.get(url(fake, "calendar"))
    assert plain.status_code == 503 and plain.headers["Retry-After"] == "2"
    assert fake.injected_errors == 2


def test_invitations_only_when_attendees(fake: FakeGraph, graph: requests.Session) -> None:
    quiet = graph.post(url(fake, "events"), json=timed("2027-04-02", 9)).json()
    graph.patch(url(fake, f"events/{quiet['id']}"), json={"subject": "still quiet"})
    assert fake.invitations == []
    guest = {"emailAddress": {"address": "bob@example.com", "name": "Bob"}, "type": "required"}
    loud = graph.post(url(fake, "events"), json=timed("2027-04-02", 11, attendees=[guest]))
    graph.patch(url(fake, f"events/{loud.json()['id']}"), json={"subject": "moved"})
    assert [(i.action, i.attendees) for i in fake.invitations] == [
        ("create", ["bob@example.com"]), ("update", ["bob@example.com"])]


def test_calendar_view_window_is_utc_without_offset(fake: FakeGraph,
                                                    graph: requests.Session) -> None:
    fake.add_event(timed("2027-06-10", 1, "early"))  # 23:00 UTC the day before
    view = graph.get(url(fake, "calendarView"), params={
        "startDateTime": "2027-06-10T00:00:00", "endDateTime": "2027-06-11T00:00:00"})
    assert view.json()["value"] == []
    wider = graph.get(url(fake, "calendarView"), params={
        "startDateTime": "2027-06-10T00:00:00+02:00", "endDateTime": "2027-06-11T00:00:00"})
    assert [e["subject"] for e in wider.json()["value"]] == ["early"]
    assert urllib.parse.urlsplit(fake.request_log[-1].path).path.endswith("/calendarView")


def test_lost_answer_then_retry_with_transaction_id(fake: FakeGraph,
                                                    graph: requests.Session) -> None:
    """A create committed whose answer is lost (503) is found again by its transactionId."""
    fake.fail_next(1, 503, retry_after=1, after_apply=True)
    body = timed("2027-04-05", 9, transactionId="gestan-7-create")
    lost = graph.post(url(fake, "events"), json=body)
    assert lost.status_code == 503 and len(fake.events()) == 1
    retry = graph.post(url(fake, "events"), json=body)
    assert retry.status_code == 201 and retry.json()["id"] == fake.events()[0]["id"]
    assert len(fake.events()) == 1


def test_all_day_and_relative_monthly(fake: FakeGraph, graph: requests.Session) -> None:
    day = graph.post(url(fake, "events"), json={
        "subject": "Congé", "isAllDay": True,
        "start": {"dateTime": "2027-08-02T00:00:00", "timeZone": TZ},
        "end": {"dateTime": "2027-08-03T00:00:00", "timeZone": TZ}}).json()
    assert day["isAllDay"] and day["start"]["dateTime"] == "2027-08-02T00:00:00.0000000"
    not_midnight = graph.post(url(fake, "events"), json=timed("2027-08-02", 9, isAllDay=True))
    assert not_midnight.status_code == 400 and len(fake.events()) == 1
    master = graph.post(url(fake, "events"), json=timed("2027-01-29", 14, "Review", recurrence={
        "pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"],
                    "index": "last"},
        "range": {"type": "endDate", "startDate": "2027-01-29", "endDate": "2027-04-30"}}))
    inst = graph.get(url(fake, f"events/{master.json()['id']}/instances"), headers=PREFER_PARIS,
                     params={"startDateTime": "2027-01-01T00:00:00Z",
                             "endDateTime": "2028-01-01T00:00:00Z"}).json()["value"]
    assert [i["start"]["dateTime"][:16] for i in inst] == [
        "2027-01-29T14:00", "2027-02-26T14:00", "2027-03-26T14:00", "2027-04-30T14:00"]
    stored = fake.event(master.json()["id"])
    assert stored["recurrence"]["range"]["recurrenceTimeZone"] == TZ
    assert stored["recurrence"]["pattern"]["firstDayOfWeek"] == "sunday"
