"""The EWS fake, exercised through the real exchangelib only (no patching), as the EWS target will.

Each test drives exchangelib and then checks the fake's own state, so a fake that merely echoed
requests, or an exchangelib behaviour the target relies on, would make it fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from exchangelib import (
    BASIC,
    DELEGATE,
    NTLM,
    Account,
    Build,
    CalendarItem,
    Configuration,
    Credentials,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    FailFast,
    FaultTolerance,
    Version,
    close_connections,
)
from exchangelib.errors import (
    ErrorCalendarOccurrenceIsDeletedFromRecurrence,
    ErrorFolderNotFound,
    ErrorInvalidSyncStateData,
    ErrorIrresolvableConflict,
    ErrorNonExistentMailbox,
    ErrorServerBusy,
    RateLimitError,
    UnauthorizedError,
)
from exchangelib.items import ALWAYS_OVERWRITE, NEVER_OVERWRITE, SEND_TO_NONE
from exchangelib.protocol import RetryPolicy
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    DailyPattern,
    Recurrence,
    WeeklyPattern,
)

from tests.fakes.autodiscover import ExchangeNetwork
from tests.fakes.ews import FakeEws

PARIS = EWSTimeZone("Europe/Paris")
PROPSET = "c11ff724-aa03-4555-9952-8fa248a11c3e"


class GestanUid(ExtendedProperty):
    """The Gestan UID kept on the remote item, as the EWS target will register it."""

    property_set_id = PROPSET
    property_name = "GestanUID"
    property_type = "String"


@pytest.fixture
def fake() -> Iterator[FakeEws]:
    with FakeEws() as running:
        yield running


def connect(fake: FakeEws, *, password: str | None = None,
            retry_policy: RetryPolicy | None = None, auth_type: str = BASIC) -> Account:
    """The configuration the EWS target uses: no autodiscover, no version or auth probing.

    exchangelib caches one Protocol per (endpoint, credentials) for the whole process, and the
    first Configuration's retry policy wins: forget the cache so each call gets its own policy.
    """
    close_connections()
    config = Configuration(
        service_endpoint=fake.url,
        credentials=Credentials(fake.username, password or fake.password),
        auth_type=auth_type,
        version=Version(build=Build(15, 1, 2507, 6)),
        retry_policy=retry_policy or FailFast(),
    )
    return Account(fake.email, config=config, autodiscover=False, access_type=DELEGATE,
                   default_timezone=PARIS)


@pytest.fixture
def account(fake: FakeEws) -> Iterator[Account]:
    acc = connect(fake)
    CalendarItem.register("gestan_uid", GestanUid)
    try:
        yield acc
    finally:
        CalendarItem.deregister("gestan_uid")
        close_connections()


def paris(day: str, hour: int, minute: int = 0) -> EWSDateTime:
    y, m, d = map(int, day.split("-"))
    return EWSDateTime(y, m, d, hour, minute, tzinfo=PARIS)


def utc(day: str, hour: int, minute: int = 0) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:{minute:02d}:00+00:00")


def services(fake: FakeEws) -> list[str]:
    return [r.service for r in fake.request_log]


def test_connect_and_find_calendars_by_name(fake: FakeEws, account: Account) -> None:
    gestan = fake.add_folder("Gestan RDV")
    fake.add_folder("Perso")
    calendar = account.calendar
    assert calendar.name == "Calendar" and calendar.id == fake.folder_id("calendar")
    # No autodiscover, no version or auth probe; exchangelib asks for the root, then the calendar.
    assert services(fake) == ["GetFolder", "GetFolder"]
    fake.reset_log()
    found = account.calendar // "gestan rdv"  # FindFolder is case-insensitive on names
    assert found.id == gestan and found.name == "Gestan RDV"
    assert services(fake)[0] == "FindFolder"
    names = sorted(f.name for f in account.calendar.children)  # the cached folder tree
    assert names == ["Gestan RDV", "Perso"]
    with pytest.raises(ErrorFolderNotFound):
        account.calendar // "Absent"


def test_create_update_delete_send_to_none_and_keep_foreign_fields(
        fake: FakeEws, account: Account) -> None:
    item = CalendarItem(account=account, folder=account.calendar, subject="RDV Dupont",
                        start=paris("2024-05-06", 9), end=paris("2024-05-06", 10),
                        location="Cabinet", body="Notes")
    item.save(send_meeting_invitations=SEND_TO_NONE)
    create = fake.request_log[-1]
    assert create.service == "CreateItem" and create.attrs["SendMeetingInvitations"] == "SendToNone"
    stored = fake.item(item.id)
    assert stored is not None
    assert stored["Subject"] == "RDV Dupont" and stored["Start"] == utc("2024-05-06", 7)
    assert stored["StartTimeZone"] == "Romance Standard Time"
    assert stored["changekey"] == item.changekey

    # Outlook adds fields Gestan does not own.
    fake.modify(item.id, Categories=["Rouge"], Importance="High", Sensitivity="Private",
                ReminderIsSet=True, ReminderMinutesBeforeStart=30, LegacyFreeBusyStatus="Tentative")
    item.refresh()
    assert item.categories == ["Rouge"] and item.reminder_is_set is True
    before = fake.item(item.id)
    assert before is not None

    item.subject, item.location = "RDV Dupont (déplacé)", None
    item.start, item.end = paris("2024-05-06", 11), paris("2024-05-06", 12)
    item.save(update_fields=["subject", "location", "start", "end"],
              send_meeting_invitations=SEND_TO_NONE)
    update = fake.request_log[-1]
    assert update.attrs["SendMeetingInvitationsOrCancellations"] == "SendToNone"
    after = fake.item(item.id)
    assert after is not None
    assert after["Subject"] == "RDV Dupont (déplacé)" and "Location" not in after
    assert after["Start"] == utc("2024-05-06", 9)
    for kept in ("Categories", "Importance", "Sensitivity", "ReminderIsSet",
                 "ReminderMinutesBeforeStart", "LegacyFreeBusyStatus", "Body", "UID"):
        assert after[kept] == before[kept], kept
    assert after["changekey"] != before["changekey"] and item.changekey == after["changekey"]

    item_id = item.id
    item.delete(send_meeting_cancellations=SEND_TO_NONE)
    assert fake.request_log[-1].attrs["SendMeetingCancellations"] == "SendToNone"
    assert fake.item(item_id) is None and fake.items() == []


def test_bulk_create_of_100_is_one_request(fake: FakeEws, account: Account) -> None:
    calendar = account.calendar
    fake.reset_log()
    items = [CalendarItem(account=account, folder=calendar, subject=f"RDV {n}",
                          start=paris("2024-06-03", 8) + timedelta(hours=n),
                          end=paris("2024-06-03", 8) + timedelta(hours=n, minutes=30))
             for n in range(100)]
    ids = account.bulk_create(folder=calendar, items=items, send_meeting_invitations=SEND_TO_NONE)
    assert fake.request_count == 1 and fake.request_log[0].count == 100
    assert len({i.id for i in ids}) == 100
    assert sorted(i["Subject"] for i in fake.items()) == sorted(f"RDV {n}" for n in range(100))


def test_extended_property_round_trip_and_lookup(fake: FakeEws, account: Account) -> None:
    calendar = account.calendar
    mine = CalendarItem(account=account, folder=calendar, subject="Ours", gestan_uid="uid-42",
                        start=paris("2024-05-07", 9), end=paris("2024-05-07", 10))
    mine.save()
    outlook = fake.add_item(Subject="Outlook's", Start=utc("2024-05-07", 12),
                            End=utc("2024-05-07", 13), extended={(PROPSET, "GestanUID"): "uid-7"})
    fake.add_item(Subject="No uid", Start=utc("2024-05-07", 14), End=utc("2024-05-07", 15))
    stored = fake.item(mine.id)
    assert stored is not None and stored["extended"] == {"GestanUID": "uid-42"}

    found = list(calendar.filter(gestan_uid="uid-7"))
    assert [(i.id, i.subject, i.gestan_uid) for i in found] == [(outlook, "Outlook's", "uid-7")]
    assert calendar.filter(gestan_uid="uid-42").get().id == mine.id
    assert not calendar.filter(gestan_uid="uid-404").exists()
    # Returned only when asked for: a listing of subjects carries no extended property.
    assert {i.gestan_uid for i in calendar.all().only("subject")} == {None}

    mine.gestan_uid = "uid-43"
    mine.save(update_fields=["gestan_uid"])
    stored = fake.item(mine.id)
    assert stored is not None and stored["extended"] == {"GestanUID": "uid-43"}


def weekly_master(fake: FakeEws) -> tuple[str, list[datetime]]:
    """Five Monday 09:00 (Paris) appointments made in Outlook, across the March DST change."""
    master = fake.add_item(
        Subject="Kiné", Start=utc("2024-03-18", 8), End=utc("2024-03-18", 9),
        StartTimeZone="Romance Standard Time", EndTimeZone="Romance Standard Time",
        Recurrence={"WeeklyRecurrence": {"Interval": 1, "DaysOfWeek": "Monday",
                                         "FirstDayOfWeek": "Monday"},
                    "NumberedRecurrence": {"StartDate": date(2024, 3, 18),
                                           "NumberOfOccurrences": 5}})
    starts = fake.occurrences(master, utc("2024-03-01", 0), utc("2024-05-01", 0))
    return master, starts


def test_series_made_in_outlook_is_seen_with_its_exceptions(
        fake: FakeEws, account: Account) -> None:
    master_id, starts = weekly_master(fake)
    # 09:00 Paris each week: 08:00 UTC before 31 March, 07:00 UTC after.
    assert starts == [utc("2024-03-18", 8), utc("2024-03-25", 8), utc("2024-04-01", 7),
                      utc("2024-04-08", 7), utc("2024-04-15", 7)]
    fake.modify(master_id, starts[1], Subject="Kiné (avancé)", Start=utc("2024-03-25", 6),
                End=utc("2024-03-25", 7))
    fake.delete(master_id, starts[3])

    (master,) = account.fetch(ids=[(master_id, None)])
    assert master.type == "RecurringMaster"
    assert isinstance(master.recurrence.pattern, WeeklyPattern)
    assert master.recurrence.boundary.number == 5
    assert [o.original_start for o in master.modified_occurrences] == [starts[1]]
    assert [d.start for d in master.deleted_occurrences] == [starts[3]]

    view = list(account.calendar.view(start=paris("2024-03-01", 0), end=paris("2024-05-01", 0)))
    assert [(v.type, v.start) for v in view] == [
        ("Occurrence", starts[0]), ("Exception", utc("2024-03-25", 6)),
        ("Occurrence", starts[2]), ("Occurrence", starts[4])]
    assert view[1].subject == "Kiné (avancé)" and view[1].original_start == starts[1]
    assert fake.request_log[-1].service == "GetItem"  # view = FindItem CalendarView + GetItem


def test_series_exceptions_made_through_exchangelib(fake: FakeEws, account: Account) -> None:
    master = CalendarItem(
        account=account, folder=account.calendar, subject="Cours",
        start=paris("2024-09-02", 18), end=paris("2024-09-02", 19),
        recurrence=Recurrence(pattern=WeeklyPattern(interval=1, weekdays=[1]),
                              start=EWSDate(2024, 9, 2), number=4))
    master.save(send_meeting_invitations=SEND_TO_NONE)
    view = list(account.calendar.view(start=paris("2024-09-01", 0), end=paris("2024-10-01", 0)))
    assert [v.type for v in view] == ["Occurrence"] * 4

    second = view[1]
    second.subject = "Cours (salle B)"
    second.save(update_fields=["subject"], send_meeting_invitations=SEND_TO_NONE)
    master.occurrence(3).delete(send_meeting_cancellations=SEND_TO_NONE)

    stored = fake.item(master.id)
    assert stored is not None and stored["type"] == "RecurringMaster"
    assert list(stored["exceptions"]) == [utc("2024-09-09", 16)]
    assert stored["exceptions"][utc("2024-09-09", 16)]["Subject"] == "Cours (salle B)"
    assert stored["Subject"] == "Cours"  # the master is unchanged
    assert stored["deleted_occurrences"] == [utc("2024-09-16", 16)]
    assert all(r.attrs.get("SendMeetingCancellations", "SendToNone") == "SendToNone"
               and r.attrs.get("SendMeetingInvitationsOrCancellations", "SendToNone")
               == "SendToNone" for r in fake.request_log)

    first = master.occurrence(1)
    first.refresh()  # GetItem with OccurrenceItemId
    assert first.type == "Occurrence" and first.start == utc("2024-09-02", 16)
    with pytest.raises(ErrorCalendarOccurrenceIsDeletedFromRecurrence):
        master.occurrence(3).refresh()
    master.refresh()
    assert [d.start for d in master.deleted_occurrences] == [utc("2024-09-16", 16)]


@pytest.mark.parametrize(("recurrence", "expected"), [
    ({"DailyRecurrence": {"Interval": 2},
      "NumberedRecurrence": {"StartDate": "2024-01-30", "NumberOfOccurrences": 3}},
     ["2024-01-30", "2024-02-01", "2024-02-03"]),
    ({"WeeklyRecurrence": {"Interval": 2, "DaysOfWeek": "Tuesday Thursday",
                           "FirstDayOfWeek": "Monday"},
      "EndDateRecurrence": {"StartDate": "2024-01-30", "EndDate": "2024-02-15"}},
     ["2024-01-30", "2024-02-01", "2024-02-13", "2024-02-15"]),
    ({"AbsoluteMonthlyRecurrence": {"Interval": 1, "DayOfMonth": 31},
      "NumberedRecurrence": {"StartDate": "2024-01-30", "NumberOfOccurrences": 3}},
     ["2024-01-31", "2024-02-29", "2024-03-31"]),
    ({"RelativeMonthlyRecurrence": {"Interval": 1, "DaysOfWeek": "Friday",
                                    "DayOfWeekIndex": "Last"},
      "NumberedRecurrence": {"StartDate": "2024-01-30", "NumberOfOccurrences": 2}},
     ["2024-02-23", "2024-03-29"]),
    ({"AbsoluteYearlyRecurrence": {"DayOfMonth": 14, "Month": "February"},
      "NumberedRecurrence": {"StartDate": "2024-01-30", "NumberOfOccurrences": 2}},
     ["2024-02-14", "2025-02-14"]),
    ({"RelativeYearlyRecurrence": {"DaysOfWeek": "Weekday", "DayOfWeekIndex": "First",
                                   "Month": "June"},
      "NoEndRecurrence": {"StartDate": "2024-01-30"}},
     ["2024-06-03", "2025-06-02"]),
])
def test_recurrence_patterns_expand_in_calendar_view(
        fake: FakeEws, account: Account, recurrence: dict[str, dict[str, object]],
        expected: list[str]) -> None:
    fake.add_item(Subject="Série", Start=utc("2024-01-30", 9), End=utc("2024-01-30", 10),
                  Recurrence=recurrence)
    view = account.calendar.view(start=paris("2024-01-01", 0), end=paris("2025-12-31", 0))
    assert [v.start.astimezone(PARIS).date().isoformat() for v in view] == expected


def test_recurrence_written_by_exchangelib_is_understood(fake: FakeEws, account: Account) -> None:
    CalendarItem(account=account, folder=account.calendar, subject="Loyer",
                 start=paris("2024-01-15", 8), end=paris("2024-01-15", 9),
                 recurrence=Recurrence(pattern=AbsoluteMonthlyPattern(interval=2, day_of_month=15),
                                       start=EWSDate(2024, 1, 15), end=EWSDate(2024, 7, 1))).save()
    CalendarItem(account=account, folder=account.calendar, subject="Daily",
                 start=paris("2024-03-30", 8), end=paris("2024-03-30", 9),
                 recurrence=Recurrence(pattern=DailyPattern(interval=1),
                                       start=EWSDate(2024, 3, 30), number=3)).save()
    view = account.calendar.view(start=paris("2024-01-01", 0), end=paris("2024-12-31", 0))
    got = [(v.subject, v.start.astimezone(PARIS).isoformat()) for v in view]
    assert got == [("Loyer", "2024-01-15T08:00:00+01:00"), ("Loyer", "2024-03-15T08:00:00+01:00"),
                   ("Daily", "2024-03-30T08:00:00+01:00"), ("Daily", "2024-03-31T08:00:00+02:00"),
                   ("Daily", "2024-04-01T08:00:00+02:00"), ("Loyer", "2024-05-15T08:00:00+02:00")]


def test_calendar_view_window_and_max_entries(fake: FakeEws, account: Account) -> None:
    for day in (1, 2, 3, 4):
        fake.add_item(Subject=f"J{day}", Start=utc(f"2024-07-0{day}", 9),
                      End=utc(f"2024-07-0{day}", 10))
    inside = account.calendar.view(start=paris("2024-07-02", 0), end=paris("2024-07-04", 0))
    assert [v.subject for v in inside] == ["J2", "J3"]
    fake.reset_log()
    capped = list(account.calendar.view(start=paris("2024-07-01", 0), end=paris("2024-08-01", 0),
                                        max_items=2))
    assert [v.subject for v in capped] == ["J1", "J2"]
    assert services(fake) == ["FindItem", "GetItem"]


def test_all_day_event_stays_all_day(fake: FakeEws, account: Account) -> None:
    item = CalendarItem(account=account, folder=account.calendar, subject="Congés",
                        start=EWSDate(2024, 8, 12), end=EWSDate(2024, 8, 13), is_all_day=True)
    item.save()
    stored = fake.item(item.id)
    assert stored is not None and stored["IsAllDayEvent"] is True
    assert stored["Start"] == utc("2024-08-11", 22) and stored["End"] == utc("2024-08-13", 22)
    item.refresh()
    assert (item.is_all_day, item.start, item.end) == (True, date(2024, 8, 12), date(2024, 8, 13))


def test_sync_folder_items_full_then_changes_then_expired(fake: FakeEws, account: Account) -> None:
    calendar = account.calendar
    ids = [fake.add_item(Subject=f"S{n}", Start=utc("2024-05-10", 8 + n),
                         End=utc("2024-05-10", 9 + n), extended={(PROPSET, "GestanUID"): f"u{n}"})
           for n in range(5)]
    fake.reset_log()
    initial = list(calendar.sync_items(max_changes_returned=2))
    assert [(kind, i.subject) for kind, i in initial] == [("create", f"S{n}") for n in range(5)]
    assert initial[0][1].gestan_uid == "u0"  # all fields, extended ones included
    assert services(fake) == ["SyncFolderItems"] * 3
    state = calendar.item_sync_state

    assert list(calendar.sync_items(sync_state=state)) == []
    fake.modify(ids[1], Subject="S1 bis")
    fake.delete(ids[2])
    new = fake.add_item(Subject="S5", Start=utc("2024-05-11", 8), End=utc("2024-05-11", 9))
    changes = list(calendar.sync_items(sync_state=state))
    kinds = {(kind, getattr(i, "subject", None) or i.id) for kind, i in changes}
    assert kinds == {("update", "S1 bis"), ("delete", ids[2]), ("create", "S5")}
    assert calendar.item_sync_state != state and fake.item(new) is not None

    fake.expire_sync_states()
    with pytest.raises(ErrorInvalidSyncStateData):
        list(calendar.sync_items(sync_state=calendar.item_sync_state))
    with pytest.raises(ErrorInvalidSyncStateData):
        list(calendar.sync_items(sync_state="bm90IGEgc3RhdGU="))


def test_stale_changekey_is_a_conflict_unless_always_overwrite(
        fake: FakeEws, account: Account) -> None:
    item = CalendarItem(account=account, folder=account.calendar, subject="Gestan",
                        start=paris("2024-05-13", 9), end=paris("2024-05-13", 10))
    item.save()
    fake.modify(item.id, Subject="Outlook")
    item.subject = "Gestan 2"
    with pytest.raises(ErrorIrresolvableConflict):
        item.save(update_fields=["subject"])
    with pytest.raises(ErrorIrresolvableConflict):
        item.save(update_fields=["subject"], conflict_resolution=NEVER_OVERWRITE)
    stored = fake.item(item.id)
    assert stored is not None and stored["Subject"] == "Outlook"
    with pytest.raises(ErrorIrresolvableConflict):
        item.delete()
    assert fake.item(item.id) is not None

    item.save(update_fields=["subject"], conflict_resolution=ALWAYS_OVERWRITE)
    stored = fake.item(item.id)
    assert stored is not None and stored["Subject"] == "Gestan 2"
    assert stored["changekey"] == item.changekey
    item_id = item.id
    item.delete()  # fresh ChangeKey: no conflict
    assert fake.item(item_id) is None


def test_a_conflict_in_a_batch_raises_though_the_rest_was_applied(
        fake: FakeEws, account: Account) -> None:
    """exchangelib raises on the first conflicting response message and drops the others' new
    ChangeKeys: after ErrorIrresolvableConflict a batch must be re-read, not assumed undone."""
    calendar = account.calendar
    items = [CalendarItem(account=account, folder=calendar, subject=f"S{n}",
                          start=paris("2024-05-14", 9 + n), end=paris("2024-05-14", 10 + n))
             for n in range(3)]
    for item in items:
        item.save()
    fake.modify(items[1].id, Subject="Outlook")
    for item in items:
        item.subject += " bis"
    fake.reset_log()
    with pytest.raises(ErrorIrresolvableConflict):
        account.bulk_update([(item, ["subject"]) for item in items])
    assert fake.request_count == 1 and fake.request_log[0].errors == ["ErrorIrresolvableConflict"]
    assert sorted(i["Subject"] for i in fake.items()) == ["Outlook", "S0 bis", "S2 bis"]
    assert items[0].changekey != fake.item(items[0].id)["changekey"]  # type: ignore[index]


def test_server_busy_back_off_is_honoured(fake: FakeEws) -> None:
    account = connect(fake, retry_policy=FaultTolerance(max_wait=5))
    try:
        fake.fail_next(2, "busy", back_off_ms=300)
        began = time.monotonic()
        assert account.calendar.name == "Calendar"
        elapsed = time.monotonic() - began
        assert fake.request_count == 4 and fake.injected_errors == 2  # root x3, then calendar
        assert 0.55 <= elapsed < 3, elapsed  # two back-offs of 0.3 s, not exchangelib's 10 s
    finally:
        close_connections()


def test_server_busy_with_fail_fast_raises_with_the_back_off(fake: FakeEws) -> None:
    account = connect(fake)
    try:
        fake.fail_next(1, "busy", back_off_ms=1500)
        with pytest.raises(ErrorServerBusy) as caught:
            account.calendar  # noqa: B018 - the property sends GetFolder
        assert caught.value.back_off == 1.5 and fake.request_count == 1
    finally:
        close_connections()


def test_wrong_password_fails_at_once(fake: FakeEws) -> None:
    account = connect(fake, password="wrong")
    began = time.monotonic()
    with pytest.raises(UnauthorizedError):
        account.calendar  # noqa: B018
    assert fake.request_count == 1 and time.monotonic() - began < 1
    assert fake.request_log[0].status == 401
    # Under FaultTolerance exchangelib reads a 401 as throttling: it would wait 10 s and retry.
    tolerant = connect(fake, password="wrong", retry_policy=FaultTolerance(max_wait=1))
    with pytest.raises(RateLimitError):
        tolerant.calendar  # noqa: B018
    assert fake.request_count == 2
    close_connections()


def test_ntlm_authenticates_a_connection_once() -> None:
    """auth="ntlm": Negotiate, Challenge, Authenticate on one connection (requests_ntlm through
    exchangelib, pyspnego in the fake); the connection then stays authenticated, a new one
    shakes hands again."""
    with FakeEws(auth="ntlm", username="EXAMPLE\\alice") as fake:
        account = connect(fake, auth_type=NTLM)
        assert account.calendar.name == "Calendar"
        assert [(r.service, r.status) for r in fake.request_log] == [
            ("?", 401), ("?", 401), ("GetFolder", 200), ("GetFolder", 200)]
        fake.reset_log()
        assert connect(fake, auth_type=NTLM).calendar.id == fake.folder_id("calendar")
        assert fake.request_count == 4, "close_connections(): a new connection, a new handshake"
        close_connections()


def test_ntlm_refuses_a_wrong_password_or_basic_at_once() -> None:
    with FakeEws(auth="ntlm") as fake:
        for password, auth_type, requests in (("wrong", NTLM, 3), (None, BASIC, 1)):
            fake.reset_log()
            began = time.monotonic()
            with pytest.raises(UnauthorizedError):
                connect(fake, password=password, auth_type=auth_type).calendar  # noqa: B018
            assert time.monotonic() - began < 1
            assert fake.request_count == requests and {r.status for r in fake.request_log} == {
                401}
        old = fake.password
        fake.set_password("changed")
        with pytest.raises(UnauthorizedError):
            connect(fake, password=old, auth_type=NTLM).calendar  # noqa: B018
        assert connect(fake, password="changed", auth_type=NTLM).calendar.name == "Calendar"
        close_connections()


def test_soap_autodiscover_answers_the_mailbox_settings(fake: FakeEws, tmp_path) -> None:
    """exchangelib's autodiscover (GetUserSettings) through loopback DNS and HTTP: the EWS
    URL and schema of the mailbox; another address is InvalidUser."""
    credentials = Credentials(fake.username, fake.password)
    with ExchangeNetwork({"autodiscover.example.com": fake}, tmp_path):
        account = Account(fake.email, credentials=credentials, autodiscover=True,
                          access_type=DELEGATE)
        assert account.protocol.service_endpoint == fake.url
        assert account.ad_response.version.api_version == "Exchange2016"
        assert services(fake) == ["?", "GetUserSettings"], "the scheme asked, then settings"
        with pytest.raises(ErrorNonExistentMailbox):
            Account("bob@example.com", credentials=credentials, autodiscover=True,
                    access_type=DELEGATE)
    close_connections()


def test_http_500_is_reported(fake: FakeEws, account: Account) -> None:
    fake.fail_next(1, "500")
    with pytest.raises(ErrorServerBusy):  # exchangelib re-raises a transient 500 as busy
        account.calendar  # noqa: B018
    assert fake.request_log[-1].status == 500
    assert account.calendar.name == "Calendar"  # the next request goes through


def test_request_log_records_counts_and_resets(fake: FakeEws, account: Account) -> None:
    calendar = account.calendar
    items = [CalendarItem(account=account, folder=calendar, subject=f"X{n}",
                          start=paris("2024-05-20", 9), end=paris("2024-05-20", 10))
             for n in range(3)]
    account.bulk_create(folder=calendar, items=items)
    account.bulk_delete(ids=[(i["id"], i["changekey"]) for i in fake.items()])
    assert [(r.service, r.count) for r in fake.request_log[-2:]] == [
        ("CreateItem", 3), ("DeleteItem", 3)]
    assert fake.items() == [] and datetime.now(UTC).year >= 2024
    fake.reset_log()
    assert fake.request_count == 0 and fake.request_log == []


def test_setting_the_pattern_or_moving_the_master_drops_its_exceptions(
        fake: FakeEws, account: Account) -> None:
    """As Outlook warns: a new pattern, or new master times, loses every exception and
    deleted occurrence (even when the pattern sent is the same as before)."""
    master_id, starts = weekly_master(fake)
    fake.modify(master_id, starts[1], Subject="Kiné (avancé)")
    fake.delete(master_id, starts[2])
    (master,) = account.fetch(ids=[(master_id, None)])
    master.save(update_fields=["recurrence"])
    stored = fake.item(master_id)
    assert stored is not None and stored["exceptions"] == {}
    assert stored["deleted_occurrences"] == []
    fake.delete(master_id, starts[2])
    fake.modify(master_id, Subject="Kiné (renommé)")  # texts only: kept
    assert fake.item(master_id)["deleted_occurrences"] == [starts[2]]  # type: ignore[index]
    fake.modify(master_id, Start=utc("2024-03-18", 9), End=utc("2024-03-18", 10))
    assert fake.item(master_id)["deleted_occurrences"] == []  # type: ignore[index]
