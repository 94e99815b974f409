"""What is EWS's own (the shared rule and contract tests run on it through
tests/remotes_ews.py), through the real exchangelib against the loopback EWS fake: SendToNone
on every write, CreateItem of 100, an unchanged open of one request, ChangeKey conflicts,
ErrorServerBusy and its BackOffMilliseconds, a 401, Outlook's own fields, the stamped Gestan
UID, and a crash injected at each request of a small two-way sync.

Every test checks the fake's own state (what Exchange holds, ``fake.request_log``) and
Gestan's store; request counts come from the fake, not from our code.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.ical import parse_object
from bridge.ical.model import EventData
from bridge.store import Store, open_store
from bridge.sync.engine import SyncRun
from bridge.targets.ews import EwsTarget
from tests.conftest import sqlite_at_head
from tests.remotes import LOGIN, TZ, at, local
from tests.remotes_ews import DroppingFakeEws, EwsRemote, _Dropped

SEND_TO_NONE = {"CreateItem": "SendMeetingInvitations",
                "UpdateItem": "SendMeetingInvitationsOrCancellations",
                "DeleteItem": "SendMeetingCancellations"}


class ScriptedFake(DroppingFakeEws):
    """The fake, with faults placed by request number (1-based, every HTTP request counts)
    or by operation (``("UpdateItem", 2)``: the second UpdateItem), a random share of
    ErrorServerBusy answers, and a hook run as an UpdateItem arrives (before it is applied:
    another client's edit between our read and our write)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seen = 0
        self.by_service: dict[str, int] = {}
        # request number or (operation, its number) → "401", "busy", "drop", "lost"
        self.at: dict[int | tuple[str, int], str] = {}
        self.busy_share = 0.0
        self.random = random.Random(7)
        self.before_update: Callable[[], None] | None = None

    def _handle_http(self, headers: dict[str, str], body: bytes
                     ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.seen += 1
            found = re.search(rb"<m:(\w+)", body)
            service = found.group(1).decode() if found else "?"
            self.by_service[service] = nth = self.by_service.get(service, 0) + 1
            fault = self.at.pop(self.seen, None) or self.at.pop((service, nth), None)
            if fault in ("drop", "lost"):
                self.injected_errors += 1
                if fault == "lost":   # applied, the answer lost
                    super()._handle_http(headers, body)
                else:
                    self.request_count += 1
                raise _Dropped
            if fault is not None:
                self.fail_next(1, fault, back_off_ms=10)
            elif self.busy_share and self.random.random() < self.busy_share:
                self.fail_next(1, "busy", back_off_ms=10)
            if self.before_update is not None and b"<m:UpdateItem" in body:
                hook, self.before_update = self.before_update, None
                hook()
            return super()._handle_http(headers, body)


@pytest.fixture
def fake() -> Iterator[ScriptedFake]:
    with ScriptedFake() as fake:
        yield fake


@pytest.fixture
def remote(fake: ScriptedFake) -> EwsRemote:
    return EwsRemote(fake)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return new_store(tmp_path / "gestan.db")


def new_store(path: Path) -> Store:
    store = open_store(sqlite_at_head(path))
    store.add_user(LOGIN, LOGIN, timezone=TZ)
    return store


def target(remote: EwsRemote, slept: list[float] | None = None, **options: Any) -> EwsTarget:
    """The target as tests/remotes_ews.py builds it, its sleep recording the waits."""
    waits = slept if slept is not None else []
    return EwsTarget(service_endpoint=remote.fake.url, username=remote.fake.username,
                     password=remote.fake.password, email=remote.fake.email,
                     calendar_name=remote.fake.folders()[-1]["name"], default_tz=TZ,
                     login=LOGIN, sleep=waits.append, **options)


def run(store: Store, target: EwsTarget, direction: str) -> Any:
    sync = SyncRun(store, LOGIN, target)
    return sync.push() if direction == "close" else sync.pull()


def add_local(store: Store, subject: str, days: int, hour: int = 10) -> None:
    start = at(days, hour)
    store.add_action(LOGIN, EventData(start=start, end=start + timedelta(hours=1), tzid=TZ,
                                      subject=subject))


def wall(days: int, hour: int = 9) -> str:
    """A Paris wall time ``days`` from today, as an iCalendar value."""
    return local(at(days, 8)).replace(hour=hour).strftime("%Y%m%dT%H%M%S")


def local_series(store: Store, subject: str = "Série locale", uid: str = "serie-1") -> None:
    """A weekly series of 4 from a phone: the 2nd occurrence moved, the 3rd deleted."""
    first, second, third = wall(3), wall(10), wall(17)
    moved = wall(11, 15)
    store.put_object(LOGIN, f"{uid}.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID={TZ}:{first}\r\nDURATION:PT1H\r\nSUMMARY:{subject}\r\n"
        f"RRULE:FREQ=WEEKLY;COUNT=4\r\nEXDATE;TZID={TZ}:{third}\r\nEND:VEVENT\r\n"
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"RECURRENCE-ID;TZID={TZ}:{second}\r\nDTSTART;TZID={TZ}:{moved}\r\n"
        f"DURATION:PT1H\r\nSUMMARY:{subject} (déplacée)\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))


def objects(store: Store) -> list[Any]:
    return store.calendar_listing(store.user(LOGIN).id, with_ics=True)


def edit_local(store: Store, old: str, new: str) -> None:
    [obj] = [o for o in objects(store) if f"SUMMARY:{old}\r\n" in o.ics]
    store.put_object(LOGIN, obj.href, obj.ics.replace(f"SUMMARY:{old}\r\n",
                                                      f"SUMMARY:{new}\r\n"))


def subjects(remote: EwsRemote) -> list[str]:
    return sorted(i.get("Subject", "") for i in remote.fake.items(remote.folder))


def writes(fake: ScriptedFake) -> list[Any]:
    return [e for e in fake.request_log if e.service in SEND_TO_NONE]


def assert_send_to_none(fake: ScriptedFake) -> None:
    for entry in writes(fake):
        assert entry.attrs.get(SEND_TO_NONE[entry.service]) == "SendToNone", entry


# ---------------------------------------------------------------- invitations

def test_every_write_of_a_close_sends_to_none(remote: EwsRemote, store: Store) -> None:
    fake = remote.fake
    add_local(store, "A", 2)
    add_local(store, "B", 4)
    local_series(store)
    assert run(store, target(remote), "close").status == "ok"
    created = {e.service for e in writes(fake)}
    [series] = [i for i in fake.items(remote.folder) if i["type"] == "RecurringMaster"]
    assert len(series["exceptions"]) == 1 and len(series["deleted_occurrences"]) == 1
    [moved] = series["exceptions"].values()
    assert moved["Subject"] == "Série locale (déplacée)" and moved["Start"].hour in (13, 14)
    edit_local(store, "A", "A modifié")
    [b] = [o for o in objects(store) if "SUMMARY:B\r\n" in o.ics]
    store.delete_object(LOGIN, b.href)
    report = run(store, target(remote), "close")
    assert (report.status, report.remote.updated, report.remote.deleted) == ("ok", 1, 1)
    assert created | {e.service for e in writes(fake)} == set(SEND_TO_NONE), \
        "creates, occurrence edits and deletions, an edit and a deletion were all seen"
    assert len(writes(fake)) >= 5
    assert_send_to_none(fake)
    assert subjects(remote) == ["A modifié", "Série locale"]


def test_a_series_edited_in_gestan_rewrites_occurrences_sending_to_none(
        remote: EwsRemote, store: Store) -> None:
    fake = remote.fake
    local_series(store)
    run(store, target(remote), "close")
    [obj] = objects(store)
    third = wall(17)
    moved_third = wall(18, 16)
    # the deleted occurrence comes back moved, the series' title changes
    ics = obj.ics.replace(f"EXDATE;TZID={TZ}:{third}\r\n", "").replace(
        "SUMMARY:Série locale\r\n", "SUMMARY:Série renommée\r\n")
    ics = ics.replace("END:VCALENDAR", (
        f"BEGIN:VEVENT\r\nUID:serie-1\r\nDTSTAMP:20260101T000000Z\r\n"
        f"RECURRENCE-ID;TZID={TZ}:{third}\r\nDTSTART;TZID={TZ}:{moved_third}\r\n"
        "DURATION:PT1H\r\nSUMMARY:Troisième\r\nEND:VEVENT\r\nEND:VCALENDAR"))
    store.put_object(LOGIN, obj.href, ics)
    fake.reset_log()
    report = run(store, target(remote), "close")
    assert (report.status, report.remote.updated) == ("ok", 1), report.message
    assert "UpdateItem" in {e.service for e in writes(fake)}
    assert_send_to_none(fake)
    [series] = fake.items(remote.folder)
    assert series["Subject"] == "Série renommée"
    assert sorted(o["Subject"] for o in series["exceptions"].values()) == [
        "Série locale (déplacée)", "Troisième"]
    assert series["deleted_occurrences"] == []


# ---------------------------------------------------------------- costs

def test_a_push_of_250_is_three_create_items(remote: EwsRemote, store: Store) -> None:
    fake = remote.fake
    for n in range(250):
        add_local(store, f"RDV {n}", 2 + n % 60, 8 + n % 10)
    report = run(store, target(remote), "close")
    assert (report.status, report.remote.created) == ("ok", 250)
    creates = [e for e in fake.request_log if e.service == "CreateItem"]
    assert [e.count for e in creates] == [100, 100, 50]
    services = [e.service for e in fake.request_log]
    # the folder found once (GetFolder + FindFolder), nothing looked up (no earlier close
    # was left unfinished), then the three CreateItem: 5 requests in all
    assert services == ["GetFolder", "FindFolder"] + ["CreateItem"] * 3
    assert report.requests == fake.request_count == len(services)
    assert_send_to_none(fake)
    assert len(fake.items(remote.folder)) == 250


def test_an_open_with_nothing_changed_is_one_request(remote: EwsRemote, store: Store) -> None:
    remote.add("Distant", at(2))
    remote.add("Série distante", at(3, 8), rrule="FREQ=WEEKLY;COUNT=3")
    add_local(store, "Local", 4)
    for direction in ("open", "close", "open", "close"):
        assert run(store, target(remote), direction).status == "ok"
    remote.fake.reset_log()
    report = run(store, target(remote), "open")
    assert (report.gestan.created, report.gestan.updated) == (0, 0)
    assert [e.service for e in remote.fake.request_log] == ["SyncFolderItems"]
    assert report.requests == 1
    remote.fake.reset_log()
    assert run(store, target(remote), "close").requests == 0
    assert remote.fake.request_count == 0


# ---------------------------------------------------------------- conflicts

def test_an_outlook_edit_between_our_read_and_our_write_is_reread_and_logged(
        remote: EwsRemote, store: Store) -> None:
    fake = remote.fake
    add_local(store, "Gestan", 3)
    run(store, target(remote), "close")
    run(store, target(remote), "open")
    [item] = fake.items(remote.folder)
    edit_local(store, "Gestan", "Gestan 2")
    fake.before_update = lambda: fake.modify(item["id"], Subject="Outlook",
                                             Categories=["Vert"])
    fake.reset_log()
    report = run(store, target(remote), "close")
    assert report.status == "ok", report.message
    updates = [e for e in fake.request_log if e.service == "UpdateItem"]
    assert updates[0].errors == ["ErrorIrresolvableConflict"], "our ChangeKey was stale"
    assert updates[-1].errors == [] and len(updates) == 2
    first = fake.request_log.index(updates[0])
    assert "GetItem" in [e.service for e in fake.request_log[first:]], "re-read"
    for entry in fake.request_log:
        assert entry.attrs.get("ConflictResolution") != "AlwaysOverwrite", entry
    assert [e.attrs.get("ConflictResolution") for e in updates] == ["NeverOverwrite"] * 2
    [conflict] = report.conflicts
    assert conflict.winner == "gestan" and "SUMMARY:Outlook" in (conflict.losing_ics or "")
    logged = store.sync_run_items(report.run_id)
    assert any(i.change == "conflict" and "SUMMARY:Outlook" in (i.losing_ics or "")
               for i in logged), "the losing version is in the run's log"
    [now] = fake.items(remote.folder)
    assert (now["Subject"], now["Categories"]) == ("Gestan 2", ["Vert"])


def test_a_stale_changekey_on_a_deletion_is_reread_not_forced(remote: EwsRemote,
                                                              store: Store) -> None:
    fake = remote.fake
    add_local(store, "À supprimer", 3)
    run(store, target(remote), "close")
    [item] = fake.items(remote.folder)
    fake.modify(item["id"], Location="Salle changée dans Outlook")
    [obj] = objects(store)
    store.delete_object(LOGIN, obj.href)
    fake.reset_log()
    report = run(store, target(remote), "close")
    assert report.status == "ok", report.message
    deletes = [e for e in fake.request_log if e.service == "DeleteItem"]
    assert all(e.attrs.get("ConflictResolution") != "AlwaysOverwrite"
               for e in fake.request_log)
    assert_send_to_none(fake)
    assert [e.errors for e in deletes] == [["ErrorIrresolvableConflict"], []]
    services = [e.service for e in fake.request_log]
    assert "GetItem" in services[services.index("DeleteItem"):], "re-read before deciding"
    # decided (Gestan's deletion wins a close) and logged with Outlook's version
    [conflict] = report.conflicts
    assert (conflict.winner, conflict.change) == ("gestan", "delete")
    assert "LOCATION:Salle changée dans Outlook" in (conflict.losing_ics or "")
    assert fake.items(remote.folder) == []


# ---------------------------------------------------------------- throttling

def test_server_busy_honours_back_off_then_converges(remote: EwsRemote, store: Store) -> None:
    for n in range(5):
        add_local(store, f"T{n}", 2 + n)
    slept: list[float] = []
    tgt = target(remote, slept)
    tgt.bind(None)
    remote.fake.fail_next(2, "busy", back_off_ms=1500)
    report = run(store, tgt, "close")
    assert report.status == "ok", report.message
    assert slept[:2] == [1.5, 1.5] and all(s >= 1.5 for s in slept[:2])
    busy = [e for e in remote.fake.request_log if e.errors == ["busy"]]
    assert len(busy) == 2 and remote.fake.injected_errors == 2
    assert subjects(remote) == [f"T{n}" for n in range(5)]


def test_server_busy_that_lasts_stops_cleanly_then_a_rerun_finishes(
        remote: EwsRemote, store: Store) -> None:
    for n in range(5):
        add_local(store, f"T{n}", 2 + n)
    run(store, target(remote), "close")
    edit_local(store, "T0", "T0 bis")
    add_local(store, "T5", 8)
    slept: list[float] = []
    remote.fake.reset_log()
    remote.fake.fail_next(50, "busy", back_off_ms=200)
    report = run(store, target(remote, slept, max_busy=3), "close")
    assert report.status == "stopped" and "ErrorServerBusy" in report.message
    assert "\n" not in report.message
    assert slept == [0.2, 0.2, 0.2], "each wait is the server's back-off, then it stops"
    assert remote.fake.request_count == 4 and remote.fake.injected_errors == 4
    assert subjects(remote) == [f"T{n}" for n in range(5)], "nothing written"
    remote.fake.clear_failures()
    again = run(store, target(remote), "close")
    assert again.status == "ok" and (again.remote.created, again.remote.updated) == (1, 1)
    assert subjects(remote) == ["T0 bis", "T1", "T2", "T3", "T4", "T5"]


def test_a_back_off_beyond_the_longest_wait_stops_at_once(remote: EwsRemote,
                                                          store: Store) -> None:
    add_local(store, "T", 2)
    slept: list[float] = []
    tgt = target(remote, slept, max_wait=60)
    tgt.bind(None)
    remote.fake.fail_next(1, "busy", back_off_ms=3_600_000)
    report = run(store, tgt, "close")
    assert report.status == "stopped" and slept == []
    assert remote.fake.items(remote.folder) == []
    assert run(store, target(remote), "close").remote.created == 1


def test_a_fifth_of_answers_busy_over_a_two_way_sync_converges(remote: EwsRemote,
                                                               store: Store) -> None:
    fake = remote.fake
    remote.add("Distant", at(2))
    remote.add("Série distante", at(3, 8), rrule="FREQ=WEEKLY;COUNT=3")
    for n in range(4):
        add_local(store, f"Local {n}", 4 + n)
    local_series(store)
    fake.busy_share = 0.2
    slept: list[float] = []
    for direction in ("open", "close", "open", "close"):
        report = run(store, target(remote, slept), direction)
        assert report.status == "ok", (direction, report.message)
    assert fake.injected_errors >= 3 and len(slept) == fake.injected_errors
    assert all(s == 0.01 for s in slept)
    assert subjects(remote) == ["Distant", "Local 0", "Local 1", "Local 2", "Local 3",
                                "Série distante", "Série locale"]
    [series] = [i for i in fake.items(remote.folder) if i["Subject"] == "Série locale"]
    assert len(series["exceptions"]) == 1 and len(series["deleted_occurrences"]) == 1
    agenda = sorted(a.event.subject for a in store.agenda(LOGIN))
    assert agenda.count("Distant") == 1 and agenda.count("Série distante") == 3


# ---------------------------------------------------------------- credentials

def test_a_401_mid_run_stops_at_once_naming_outlook_connect(remote: EwsRemote,
                                                            store: Store) -> None:
    fake = remote.fake
    add_local(store, "A", 2)
    add_local(store, "B", 3)
    run(store, target(remote), "close")
    edit_local(store, "A", "A modifié")
    edit_local(store, "B", "B modifié")
    add_local(store, "C", 4)
    fake.reset_log()
    fake.by_service.clear()
    fake.at[("UpdateItem", 2)] = "401"    # the password changed between two updates
    slept: list[float] = []
    report = run(store, target(remote, slept), "close")
    assert report.status == "stopped", report.message
    assert "gestan-bridge outlook connect" in report.message and "\n" not in report.message
    log = [(e.service, e.status) for e in fake.request_log]
    assert log[-1] == ("UpdateItem", 401), "nothing asked after the 401"
    assert log[-2] == ("UpdateItem", 200) and ("CreateItem", 200) in log
    assert slept == [], "no wait: a 401 is not throttling"
    assert len(log) == fake.request_count <= 4
    assert sorted(subjects(remote)) in (["A modifié", "B", "C"], ["A", "B modifié", "C"])
    assert report.remote.created == 1 and report.remote.updated == 1
    again = run(store, target(remote), "close")
    assert again.status == "ok" and again.remote.updated == 1 and again.remote.created == 0
    assert subjects(remote) == ["A modifié", "B modifié", "C"]


# ---------------------------------------------------------------- what Exchange keeps

def test_outlooks_own_fields_survive_a_gestan_edit(remote: EwsRemote, store: Store) -> None:
    fake = remote.fake
    add_local(store, "RDV", 3)
    local_series(store)
    run(store, target(remote), "close")
    extras = {i["Subject"]: remote.set_extras(i["id"]) for i in fake.items(remote.folder)}
    assert run(store, target(remote), "open").gestan.updated == 0, "nothing Gestan holds"
    edit_local(store, "RDV", "RDV déplacé")
    edit_local(store, "Série locale", "Série renommée")
    report = run(store, target(remote), "close")
    assert (report.status, report.remote.updated) == ("ok", 2)
    for item in fake.items(remote.folder):
        assert item["Subject"] in ("RDV déplacé", "Série renommée")
        assert remote.extras(item["id"]) == extras["RDV"], item["Subject"]
    [series] = [i for i in fake.items(remote.folder) if i["type"] == "RecurringMaster"]
    assert len(series["exceptions"]) == 1 and len(series["deleted_occurrences"]) == 1


def test_every_created_item_carries_its_gestan_uid(remote: EwsRemote, store: Store) -> None:
    for n in range(3):
        add_local(store, f"L{n}", 2 + n)
    local_series(store)
    run(store, target(remote), "close")
    uids = sorted(parse_object(o.ics, TZ).uid for o in objects(store))
    stamped = sorted(i["extended"].get("gestanUid") for i in remote.fake.items(remote.folder))
    assert stamped == uids and "serie-1" in stamped
    # an Outlook item pulled in is not stamped by the open, only known by its id
    remote.add("Outlook", at(9))
    run(store, target(remote), "open")
    [outlook] = [i for i in remote.fake.items(remote.folder) if i["Subject"] == "Outlook"]
    assert "gestanUid" not in outlook["extended"]


# ---------------------------------------------------------------- crashes

def scenario(tmp_path: Path, fault: tuple[Any, str] | None, *, local_occurrences: bool = False
             ) -> tuple[Any, ...]:
    """A small two-way sync (open then close) with a crash at one request, then reruns:
    what each side ends with. Outlook's series has a moved and a deleted occurrence (read by
    the open); Gestan's series has them too with ``local_occurrences`` (written by the close
    after the master), else it is plain."""
    tmp_path.mkdir()
    with ScriptedFake() as fake:
        remote = EwsRemote(fake)
        store = new_store(tmp_path / "gestan.db")
        remote.add("Distant", at(2))
        series = remote.add("Série distante", at(1, 8), rrule="FREQ=WEEKLY;COUNT=4")
        remote.edit_occurrence(series, at(8, 8), summary="Distante déplacée", start=at(9, 9))
        remote.cancel_occurrence(series, at(15, 8))
        add_local(store, "Local A", 3)
        if local_occurrences:
            local_series(store)
        else:
            store.put_object(LOGIN, "plain.ics", (
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\n"
                f"UID:plain-1\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID={TZ}:{wall(3)}\r\n"
                "DURATION:PT1H\r\nSUMMARY:Série locale\r\nRRULE:FREQ=DAILY;COUNT=3\r\n"
                "END:VEVENT\r\nEND:VCALENDAR\r\n"))
        if fault:
            fake.at[fault[0]] = fault[1]
        first = [run(store, target(remote), d) for d in ("open", "close")]
        services = [e.service for e in fake.request_log]
        hit = fault is not None and not fake.at
        fake.at.clear()
        for direction in ("open", "close", "open"):
            assert run(store, target(remote), direction).status == "ok"
        items = fake.items(remote.folder)
        shape = sorted((i["Subject"], len(i["exceptions"]), len(i["deleted_occurrences"]))
                       for i in items)
        agenda = sorted((a.event.subject, a.event.start) for a in store.agenda(LOGIN))
        assert fault is None or hit, f"{fault} never reached"
        assert not hit or any(r.status == "stopped" for r in first), fault
        return shape, agenda, services


def test_a_crash_at_each_request_then_reruns_end_the_same(tmp_path: Path) -> None:
    expected_remote, expected_local, services = scenario(tmp_path / "clean", None)
    assert expected_remote == [("Distant", 0, 0), ("Local A", 0, 0), ("Série distante", 1, 1),
                               ("Série locale", 0, 0)]
    assert len(expected_local) == 2 + 3 + 3
    assert {"SyncFolderItems", "GetItem", "CreateItem"} <= set(services)
    for n, service in enumerate(services, start=1):
        # a lost answer differs from a dropped request only for a write (applied, unknown)
        for kind in ("drop", "lost") if service in SEND_TO_NONE else ("drop",):
            got_remote, got_local, _ = scenario(tmp_path / f"{kind}{n}", (n, kind))
            assert (got_remote, got_local) == (expected_remote, expected_local), \
                f"{kind} at request {n} ({service})"


@pytest.fixture(scope="module")
def with_occurrences(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ...]:
    """The end state of the clean run whose Gestan series has a moved and a deleted
    occurrence."""
    expected = scenario(tmp_path_factory.mktemp("clean") / "run", None,
                        local_occurrences=True)
    assert ("Série locale", 1, 1) in expected[0]
    assert [s for s, _ in expected[1] if s.startswith("Série locale")] == [
        "Série locale", "Série locale", "Série locale (déplacée)"], "4 less the deleted one"
    return expected


@pytest.mark.parametrize(("operation", "kind"), [
    (("CreateItem", 1), "lost"), (("DeleteItem", 1), "drop")],
    ids=["create-answer-lost", "occurrence-delete-dropped"])
def test_a_crash_while_a_series_occurrences_are_written_loses_nothing(
        tmp_path: Path, with_occurrences: tuple[Any, ...], operation: tuple[str, int],
        kind: str) -> None:
    got = scenario(tmp_path / "crash", (operation, kind), local_occurrences=True)
    assert got[:2] == with_occurrences[:2]


def test_a_run_that_reads_items_asks_no_folder_and_counts_every_request(
        remote: EwsRemote, store: Store) -> None:
    local_series(store)
    run(store, target(remote), "close")
    edit_local(store, "Série locale", "Série renommée")
    remote.fake.reset_log()
    report = run(store, target(remote), "close")
    assert report.status == "ok" and report.remote.updated == 1
    services = [e.service for e in remote.fake.request_log]
    assert "GetItem" in services
    assert "GetFolder" not in services, services
    assert report.requests == remote.fake.request_count
