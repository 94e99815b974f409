"""The engine's rules at the edges (issue 8, points 0, 2 and 5), run against every target
through the ``remote`` fixture (the in-memory target and Google through its fake): the
same test body, the remote's own state checked."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import Store, open_store
from bridge.sync.engine import SyncRun
from tests.remotes import TZ, Remote, at, remote_fixture  # noqa: F401


@pytest.fixture
def store(tmp_path) -> Store:
    store = open_store(f"sqlite:///{tmp_path / 'gestan.db'}")
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

def test_edits_to_different_occurrences_both_survive_a_close(remote: Remote, store: Store):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=5")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Cours A (ailleurs)")
    phone_edits_occurrence(store, starts[3], "Cours B (téléphone)")
    report = push(store, remote)
    assert report.conflicts == [], [c.summary for c in report.conflicts]
    assert remote_summaries(remote, series) == sorted(
        ["Cours"] * 3 + ["Cours A (ailleurs)", "Cours B (téléphone)"])
    pull(store, remote)
    assert subjects(store) == sorted(["Cours"] * 3 + ["Cours A (ailleurs)",
                                                      "Cours B (téléphone)"])
    assert push(store, remote).remote.updated == 0, "nothing left to send"


def test_edits_to_different_occurrences_both_survive_an_open(remote: Remote, store: Store):
    series = remote.add("Cours", at(1, 8), rrule="FREQ=WEEKLY;COUNT=5")
    pull(store, remote)
    starts = [start for _, start in remote.occurrences(series)]
    remote.edit_occurrence(series, starts[1], summary="Cours A (ailleurs)")
    phone_edits_occurrence(store, starts[3], "Cours B (téléphone)")
    report = pull(store, remote)
    assert report.conflicts == []
    expected = sorted(["Cours"] * 3 + ["Cours A (ailleurs)", "Cours B (téléphone)"])
    assert subjects(store) == expected, "Gestan keeps B and gets A"
    push(store, remote)
    assert remote_summaries(remote, series) == expected, "B reaches the remote at close"


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
    pull(store, remote, now=later + timedelta(hours=1))
    assert remote.request_count - before == 1, "nothing changed, nothing entered: 1 request"
