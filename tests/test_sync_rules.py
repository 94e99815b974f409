"""The engine's rules at the edges (issue 8, points 0, 2 and 5), run against every target
through the ``remote`` fixture (the in-memory target and Google through its fake): the
same test body, the remote's own state checked."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import ActionType, Store, open_store
from bridge.store import agenda as agenda_rows
from bridge.sync.engine import SyncOptions, SyncRun
from tests.conftest import sqlite_at_head
from tests.remotes import TZ, Remote, at, remote_fixture  # noqa: F401


@pytest.fixture
def store(tmp_path) -> Store:
    store = open_store(sqlite_at_head(tmp_path / "gestan.db"))
    store.add_user("alice", "alice", timezone=TZ)
    return store


def pull(store: Store, remote: Remote, now: datetime | None = None, progress=None):
    report = SyncRun(store, "alice", remote.target(), progress=progress, now=now).pull()
    assert report.status == "ok", report.message
    return report


def push(store: Store, remote: Remote, now: datetime | None = None):
    report = SyncRun(store, "alice", remote.target(), now=now).push()
    assert report.status == "ok", report.message
    return report


def subjects(store: Store) -> list[str]:
    return sorted(a.event.subject for a in store.agenda("alice"))


def the_object(store: Store):
    [obj] = store.calendar_listing(store.user("alice").id, with_ics=True)
    return obj


def phone_edits_occurrence(store: Store, original: datetime, summary: str) -> None:
    """A phone PUTs the series back with one occurrence overridden (its title changed)."""
    obj = the_object(store)
    [action] = [a for a in store.agenda("alice") if a.event.start == original]
    end = action.event.end
    override = ("BEGIN:VEVENT\r\n"
                f"UID:{obj.uid}\r\nDTSTAMP:20260101T000000Z\r\n"
                f"RECURRENCE-ID:{original:%Y%m%dT%H%M%S}Z\r\n"
                f"DTSTART:{original:%Y%m%dT%H%M%S}Z\r\nDTEND:{end:%Y%m%dT%H%M%S}Z\r\n"
                f"SUMMARY:{summary}\r\nEND:VEVENT\r\n")
    ics = obj.ics.replace("END:VCALENDAR", override + "END:VCALENDAR")
    store.put_object("alice", obj.href, ics)


def remote_summaries(remote: Remote, remote_id: str) -> list[str]:
    return sorted(summary for summary, _ in remote.occurrences(remote_id))


# ---------------------------------------------------------------- point 2

@pytest.mark.parametrize("first", ["close", "open"])
def test_edits_to_different_occurrences_both_survive(remote: Remote, store: Store,
                                                     first: str):
    """The remote moves occurrence A, a phone moves B: whichever run comes first, both
    survive on both sides, with no conflict and nothing left to send."""
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=5")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Cours A (ailleurs)")
    phone_edits_occurrence(store, starts[3], "Cours B (téléphone)")
    expected = sorted(["Cours"] * 3 + ["Cours A (ailleurs)", "Cours B (téléphone)"])
    if first == "close":
        report = push(store, remote)
        assert remote_summaries(remote, series) == expected
        pull(store, remote)
    else:
        report = pull(store, remote)
        assert subjects(store) == expected, "Gestan keeps B and gets A"
        push(store, remote)
    assert report.conflicts == [], [c.summary for c in report.conflicts]
    assert subjects(store) == expected
    assert remote_summaries(remote, series) == expected
    assert push(store, remote).remote.updated == 0, "nothing left to send"
    assert pull(store, remote).gestan.updated == 0


def test_the_same_occurrence_edited_on_both_sides_is_a_logged_conflict(remote: Remote,
                                                                     store: Store):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=4")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[2], summary="Cours (ailleurs)")
    phone_edits_occurrence(store, starts[2], "Cours (téléphone)")
    report = push(store, remote)
    assert len(report.conflicts) == 1 and report.conflicts[0].winner == "gestan"
    assert "Cours (ailleurs)" in (report.conflicts[0].losing_ics or "")
    assert "Cours (téléphone)" in remote_summaries(remote, series)
    assert "Cours (ailleurs)" not in remote_summaries(remote, series)
    items = store.sync_run_items(store.sync_runs(store.user("alice").id)[0].id)
    assert any(i.change == "conflict" and "Cours (ailleurs)" in (i.losing_ics or "")
               for i in items)


# ---------------------------------------------------------------- point 0

def test_a_phone_write_during_an_open_is_never_overwritten_unseen(remote: Remote,
                                                                 store: Store):
    """Every remote object changed; while the open applies the first, a phone rewrites all
    of Gestan's: each phone write must end current, or in the audit log as a loser."""
    ids = [remote.add(f"R{n}", at(2 + n)) for n in range(6)]
    pull(store, remote)
    for n, remote_id in enumerate(ids):
        remote.edit(remote_id, summary=f"R{n} distant")
    marks: list[str] = []

    def phone(phase: str, done: int, total: int) -> None:
        if done != 1:
            return
        for n, obj in enumerate(store.calendar_listing(store.user("alice").id,
                                                       with_ics=True)):
            if "distant" in obj.ics:
                continue  # one the run already applied
            mark = f"phone-{n}"
            store.put_object("alice", obj.href, obj.ics.replace("SUMMARY:", f"SUMMARY:{mark} "))
            marks.append(mark)

    report = pull(store, remote, progress=phone)
    assert marks
    current = " ".join(o.ics for o in store.calendar_listing(store.user("alice").id,
                                                             with_ics=True))
    logged = " ".join(i.losing_ics or "" for i in store.sync_run_items(report.run_id))
    for mark in marks:
        assert mark in current or mark in logged, f"{mark} was lost without a trace"
    assert len(report.conflicts) == len(marks), "each decided again: a conflict, remote won"


# ---------------------------------------------------------------- point 5

def test_what_enters_the_window_as_time_passes_is_synced_both_ways(remote: Remote,
                                                                  store: Store):
    now = now_utc()
    remote.add("Loin (distant)", at(405))
    start = at(400)
    store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                        tzid=TZ, subject="Loin (Gestan)"))
    pull(store, remote, now=now)
    push(store, remote, now=now)
    assert subjects(store) == ["Loin (Gestan)"], "nothing beyond a year is pulled"
    assert [s.summary for s in remote.live()] == ["Loin (distant)"], "nor pushed"
    later = now + timedelta(days=60)
    report = pull(store, remote, now=later)
    assert report.gestan.created == 1
    assert subjects(store) == ["Loin (Gestan)", "Loin (distant)"]
    report = push(store, remote, now=later)
    assert report.remote.created == 1
    assert sorted(s.summary for s in remote.live()) == ["Loin (Gestan)", "Loin (distant)"]
    before = remote.request_count
    pull(store, remote, now=later)  # the same day: the window's end has not moved
    assert remote.request_count - before == 1, "nothing changed, nothing entered: 1 request"


# ---------------------------------------------------------------- DESIGN.md rules 1-7

def add_local(store: Store, subject: str, days: int, hour: int = 10, minutes: int = 60):
    start = at(days, hour)
    return store.add_action("alice", EventData(start=start,
                                               end=start + timedelta(minutes=minutes),
                                               tzid=TZ, subject=subject))


def remote_subjects(remote: Remote) -> list[str]:
    return sorted(seen.summary for seen in remote.live())


def phone_series(store: Store, uid: str, summary: str, days: int, count: int) -> None:
    start = at(days, 8)
    store.put_object("alice", f"{uid}.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%S}Z\r\n"
        f"DURATION:PT1H\r\nRRULE:FREQ=WEEKLY;COUNT={count}\r\nSUMMARY:{summary}\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n"))


def test_close_pushes_then_nothing_changed_costs_nothing(remote: Remote, store: Store):
    add_local(store, "Client Dupont", 2)
    add_local(store, "Réunion équipe", 3, 14)
    assert push(store, remote).remote.created == 2
    assert remote_subjects(remote) == ["Client Dupont", "Réunion équipe"]
    before = remote.request_count
    again = push(store, remote)
    assert (again.remote.created, again.remote.updated, again.remote.deleted) == (0, 0, 0)
    assert remote.request_count == before, "nothing to send: no request"


def test_open_pulls_the_window_only_then_nothing_changed_is_one_request(remote: Remote,
                                                                        store: Store):
    remote.add("Dentiste", at(2))
    remote.add("Trop loin", at(500))
    assert pull(store, remote).gestan.created == 1
    assert subjects(store) == ["Dentiste"]
    before = remote.request_count
    again = pull(store, remote)
    assert again.gestan.created == again.gestan.updated == 0
    assert remote.request_count - before == 1


def test_open_updates_and_deletes_what_is_linked(remote: Remote, store: Store):
    event = remote.add("Dentiste", at(2))
    pull(store, remote)
    remote.edit(event, summary="Dentiste (déplacé)", start=at(3))
    assert pull(store, remote).gestan.updated == 1
    [action] = store.agenda("alice")
    assert (action.event.subject, action.event.start) == ("Dentiste (déplacé)", at(3))
    remote.delete(event)
    assert pull(store, remote).gestan.deleted == 1
    assert subjects(store) == []


def test_close_deletes_what_gestan_deleted_and_it_does_not_come_back(remote: Remote,
                                                                    store: Store):
    action = add_local(store, "Annulé", 4)
    push(store, remote)
    assert remote_subjects(remote) == ["Annulé"]
    store.delete_action("alice", action.id)
    assert push(store, remote).remote.deleted == 1
    assert remote_subjects(remote) == []
    pull(store, remote)
    assert subjects(store) == []


def test_only_rendez_vous_are_pushed(remote: Remote, store: Store):
    start = at(2)
    store.add_action("alice", EventData(start=start, end=start + timedelta(hours=1),
                                        subject="Appeler"), ActionType.CALL)
    add_local(store, "RDV", 2)
    push(store, remote)
    assert remote_subjects(remote) == ["RDV"]


def test_a_remote_series_is_one_object_with_one_action_per_occurrence(remote: Remote,
                                                                      store: Store):
    series = remote.add("Hebdo", at(1, 8), rrule="FREQ=WEEKLY;COUNT=6")
    assert pull(store, remote).gestan.created == 1
    assert subjects(store) == ["Hebdo"] * 6
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Hebdo (déplacé)", start=at(9, 15))
    remote.cancel_occurrence(series, starts[2])
    assert pull(store, remote).gestan.updated == 1
    assert subjects(store) == ["Hebdo"] * 4 + ["Hebdo (déplacé)"]
    [moved] = [a for a in store.agenda("alice") if a.event.subject == "Hebdo (déplacé)"]
    assert moved.event.start == at(9, 15)
    assert len(store.calendar_listing(store.user("alice").id)) == 1


def test_gestan_series_edits_go_back_as_exceptions_not_copies(remote: Remote, store: Store):
    phone_series(store, "serie-1", "Point hebdo", 1, 5)
    assert push(store, remote).remote.created == 1
    [series] = remote.live()
    occurrences = store.agenda("alice")
    store.delete_action("alice", occurrences[2].id)
    assert push(store, remote).remote.updated == 1
    assert len(remote.occurrences(series.remote_id)) == 4, "the occurrence is cancelled"
    assert len(remote.live()) == 1, "no standalone copies"
    assert pull(store, remote).gestan.updated == 0
    assert subjects(store) == ["Point hebdo"] * 4


def test_deleting_a_moved_occurrence_in_gestan_cancels_it_there(remote: Remote,
                                                               store: Store):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=5")
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Cours (salle B)")
    pull(store, remote)
    [moved] = [a for a in store.agenda("alice") if a.event.subject == "Cours (salle B)"]
    store.delete_action("alice", moved.id)
    assert push(store, remote).remote.updated == 1
    assert remote_summaries(remote, series) == ["Cours"] * 4
    assert pull(store, remote).gestan.updated == 0
    assert subjects(store) == ["Cours"] * 4


def pushed_and_edited_there(store: Store, remote: Remote, subject: str, edit: str):
    """An appointment made in Gestan, pushed, then edited on the remote: its action."""
    action = add_local(store, subject, 3)
    push(store, remote)
    [event] = remote.live()
    remote.edit(event.remote_id, summary=edit)
    return action


def test_a_close_conflict_keeps_gestan_and_logs_the_remote_version(remote: Remote,
                                                                   store: Store):
    action = pushed_and_edited_there(store, remote, "Version Gestan", "Version distante")
    store.delete_action("alice", action.id)
    report = push(store, remote)
    assert len(report.conflicts) == 1
    assert "Version distante" in (report.conflicts[0].losing_ics or "")
    assert remote_subjects(remote) == []
    items = store.sync_run_items(report.run_id)
    assert any(i.change == "conflict" and "Version distante" in (i.losing_ics or "")
               for i in items)


def test_an_open_conflict_keeps_the_remote_and_logs_gestans_version(remote: Remote,
                                                                    store: Store):
    action = pushed_and_edited_there(store, remote, "Avant", "Distant")
    obj = the_object(store)
    store.put_object("alice", obj.href, obj.ics.replace("SUMMARY:Avant", "SUMMARY:Gestan"))
    report = pull(store, remote)
    assert subjects(store) == ["Distant"]
    assert len(report.conflicts) == 1 and "SUMMARY:Gestan" in report.conflicts[0].losing_ics
    assert store.agenda("alice")[0].id == action.id, "Gestan keeps its action id"


def test_an_expired_state_lists_the_window_and_deletes_nothing(remote: Remote, store: Store):
    remote.add("A", at(2))
    remote.add("B", at(3))
    pull(store, remote)
    remote.expire_state()
    report = pull(store, remote)
    assert report.gestan.deleted == 0 and subjects(store) == ["A", "B"]


def test_mass_delete_stops_unless_allowed(remote: Remote, store: Store):
    ids = [remote.add(f"R{n}", at(2 + n % 20)) for n in range(12)]
    pull(store, remote)
    for remote_id in ids[:11]:
        remote.delete(remote_id)
    report = SyncRun(store, "alice", remote.target()).pull()
    assert report.status == "stopped" and "allow-mass-delete" in report.message
    assert len(subjects(store)) == 12
    report = SyncRun(store, "alice", remote.target(),
                     SyncOptions(allow_mass_delete=True)).pull()
    assert report.gestan.deleted == 11 and len(subjects(store)) == 1


def test_a_remote_that_stops_mid_run_then_a_rerun_finishes(remote: Remote, store: Store):
    for n in range(5):
        add_local(store, f"Q{n}", 2 + n)
    store.save_sync_state(store.user("alice").id, remote.target().name,
                          calendar_id=remote.target().bind(None))
    remote.fail_next(1, after_apply=True)
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "stopped"
    assert push(store, remote).status == "ok"
    assert remote_subjects(remote) == [f"Q{n}" for n in range(5)], "all, once each"


def test_new_occurrences_appear_as_time_passes_without_asking(remote: Remote, store: Store):
    remote.add("Sans fin", at(1, 8), rrule="FREQ=WEEKLY")
    pull(store, remote)
    before = len(store.agenda("alice"))
    assert 50 <= before <= 54, "one year ahead, never more"
    later = now_utc() + timedelta(days=60)
    requests = remote.request_count
    pull(store, remote, now=later)
    assert remote.request_count - requests == 2, "the delta and the new slice, no more"
    with store.reading() as conn:
        actions = agenda_rows.listing(conn, store.user("alice"), None, None, None)
    assert len(actions) >= before + 8
    assert max(a.event.start for a in actions) > now_utc() + timedelta(days=400)


def test_the_window_reaches_back_as_the_user_set(remote: Remote, store: Store):
    remote.add("Il y a trois jours", at(-3))
    remote.add("Bientôt", at(2))
    pull(store, remote)
    assert subjects(store) == ["Bientôt"], "ended appointments are not pulled by default"
    store.set_user("alice", settings={"sync_days_back": 7})
    remote.expire_state()  # a full listing of the (now wider) window
    pull(store, remote)
    assert subjects(store) == ["Bientôt", "Il y a trois jours"]


# ---------------------------------------------------------------- points 3 and 4

def test_a_gestan_move_out_of_the_window_is_pushed(remote: Remote, store: Store):
    add_local(store, "Plus tard", 3)
    push(store, remote)
    obj = the_object(store)
    later = at(3) + timedelta(days=730)
    store.put_object("alice", obj.href, (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\n"
        f"UID:{obj.uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{later:%Y%m%dT%H%M%S}Z\r\n"
        "DURATION:PT1H\r\nSUMMARY:Plus tard\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    assert push(store, remote).remote.updated == 1
    [seen] = remote.live()
    assert seen.start == later, "no ghost at the old date"


def test_a_remote_move_out_of_the_window_is_followed(remote: Remote, store: Store):
    event = remote.add("Repoussé", at(2))
    pull(store, remote)
    remote.edit(event, start=at(800))
    assert pull(store, remote).gestan.updated == 1
    [action] = store.agenda("alice", start=at(799), end=at(801))
    assert action.event.subject == "Repoussé"
    assert store.agenda("alice", start=at(0), end=at(400)) == []


@pytest.mark.parametrize("days", [800, -30])
def test_an_occurrence_moved_out_of_the_window_never_comes_back(remote: Remote, store: Store,
                                                                days: int):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=5")
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Cours déplacé", start=at(days, 8))
    pull(store, remote)
    assert subjects(store) == ["Cours"] * 4, "not at its old time"
    remote.expire_state()
    pull(store, remote)
    assert subjects(store) == ["Cours"] * 4, "nor after a full re-listing"


# ---------------------------------------------------------------- point 1: what a target carries

def test_a_target_that_carries_alarms_sees_their_edits_as_changes(store: Store):
    """The in-memory target keeps the whole text, alarms included (it declares "VALARM"):
    an alarm changed there is an update at the next open, and Gestan's own alarm is not
    put back over the remote's; Google, which does not carry them, leaves them alone
    (test_sync_google.py: test_pulled_update_keeps_what_google_cannot_carry)."""
    from tests.remotes import MemoryRemote

    remote = MemoryRemote()
    assert "VALARM" in remote.target().carries
    start = at(3, 9)
    store.put_object("alice", "rappel.ics", (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:phone\r\nBEGIN:VEVENT\r\nUID:rappel-1\r\n"
        f"DTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%S}Z\r\nDURATION:PT1H\r\n"
        "SUMMARY:Rappel\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:-PT15M\r\n"
        "DESCRIPTION:Rappel\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
    push(store, remote)
    [seen] = remote.live()
    remote.calendar.edit(seen.remote_id, seen.raw.ics.replace("-PT15M", "-PT1H"))
    assert pull(store, remote).gestan.updated == 1, "an alarm edit there is a change"
    ics = the_object(store).ics
    assert "TRIGGER:-PT1H" in ics and "TRIGGER:-PT15M" not in ics
    assert push(store, remote).remote.updated == 0


# ---------------------------------------------------------------- point 2, more shapes

def phone_deletes_occurrence(store: Store, original: datetime) -> None:
    """A phone deletes one occurrence (Gestan's agenda: the action goes)."""
    [action] = [a for a in store.agenda("alice") if a.event.start == original]
    store.delete_action("alice", action.id)


@pytest.mark.parametrize("first", ["close", "open"])
def test_a_remote_cancellation_and_a_phone_deletion_both_survive(remote: Remote,
                                                                store: Store, first: str):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=6")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.cancel_occurrence(series, starts[1])
    phone_deletes_occurrence(store, starts[4])
    for run in ((push, pull) if first == "close" else (pull, push)):
        assert run(store, remote).conflicts == []
    kept = [starts[n] for n in (0, 2, 3, 5)]
    assert sorted(a.event.start for a in store.agenda("alice")) == kept
    assert [start for _, start in remote.occurrences(series)] == kept


@pytest.mark.parametrize("first", ["close", "open"])
def test_a_remote_title_change_and_a_phone_occurrence_edit_both_survive(
        remote: Remote, store: Store, first: str):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=4")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit(series, summary="Cours de piano")
    phone_edits_occurrence(store, starts[2], "Cours annulé, rattrapé jeudi")
    for run in ((push, pull) if first == "close" else (pull, push)):
        assert run(store, remote).conflicts == []
    expected = ["Cours annulé, rattrapé jeudi"] + ["Cours de piano"] * 3
    assert subjects(store) == expected
    assert remote_summaries(remote, series) == expected


# ---------------------------------------------------------------- issue 12: a killed sync

def test_a_lock_left_by_a_dead_process_is_taken_over_and_its_run_marked_interrupted(
        remote: Remote, store: Store):
    import os
    import socket
    import subprocess

    from bridge.store import RunItem
    from bridge.sync.engine import holder_is_dead

    alice = store.user("alice")
    child = subprocess.Popen(["true"])  # a process of this host that has ended
    child.wait()
    dead = f"{socket.gethostname()[:40]}:{child.pid}:x"
    assert holder_is_dead(dead)
    assert not holder_is_dead(f"{socket.gethostname()[:40]}:{os.getpid()}:x"), "alive"
    assert not holder_is_dead("another-host:1:x"), "another host: only its lease ends it"
    assert store.take_sync_lock(alice.id, dead, timedelta(minutes=10)) is None
    killed = store.start_run(alice.id, remote.target().name, "close", False)
    store.log_run_items(killed, [RunItem("create", "remote", "u1", "A", "", None),
                                 RunItem("create", "remote", "u2", "B", "", None)])
    add_local(store, "Après", 2)
    assert push(store, remote).remote.created == 1, "no ten minutes' wait"
    [record] = [r for r in store.sync_runs(alice.id) if r.id == killed]
    assert record.status == "interrupted" and record.finished_at is not None
    assert record.counts["remote"]["created"] == 2, "what it did, from its log"


def test_sync_unlock_frees_another_hosts_lock(store: Store):
    from tests.clirun import invoke

    alice = store.user("alice")
    assert store.take_sync_lock(alice.id, "elsewhere:12:x", timedelta(minutes=10)) is None
    run_id = store.start_run(alice.id, "google", "open", False)
    env = {"GESTAN_BRIDGE_DB": store.url}
    done = invoke(env, "sync", "unlock", "--user", "alice")
    assert done.returncode == 0 and "removed" in done.stdout and f"#{run_id}" in done.stdout
    assert store.take_sync_lock(alice.id, "next:1:y", timedelta(minutes=1)) is None
    assert store.sync_runs(alice.id)[0].status == "interrupted"


def test_a_series_a_stopped_close_left_half_written_is_completed_not_pulled(
        remote: Remote, store: Store):
    """A close stopped after making a series remotely but before writing its moved
    occurrence (and before linking it): the next open must not take that half-written
    series for a remote edit; the next close completes it."""
    from bridge.targets.base import WriteKind, WriteOp

    phone_series(store, "demi-1", "Cours", 1, 5)
    obj = the_object(store)
    half = obj.ics  # what the stopped close had written: the series without the move
    target = remote.target()
    store.save_sync_state(store.user("alice").id, target.name,
                          calendar_id=target.bind(None))
    results = []
    target.write([WriteOp(WriteKind.CREATE, obj.uid, half, local_id=obj.id)],
                 results.append)
    assert results and results[0].error is None
    starts = sorted(a.event.start for a in store.agenda("alice"))
    phone_edits_occurrence(store, starts[2], "Cours déplacé")
    report = pull(store, remote)
    assert report.conflicts == [] and report.gestan.updated == 0
    assert "Cours déplacé" in subjects(store), "Gestan's occurrence is kept"
    push(store, remote)
    [seen] = remote.live()
    assert "Cours déplacé" in remote_summaries(remote, seen.remote_id), "completed"
    assert len(remote.live()) == 1
