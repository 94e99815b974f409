"""The Target contract (issue 8, point 10; vdirsyncer's ``StorageTests`` is the model).

One set of behaviour tests, run against every target through the ``remote`` fixture of
:mod:`tests.remotes`: listings, deltas, expired states, creates retried after a crash,
If-Match, deletes, series with exceptions, foreign uids, fields the engine does not own.
Each test checks what the remote itself holds, not only what the target answers.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
import recurring_ical_events
from icalendar import Calendar, Event, vRecur

from bridge.ical import parse_object
from bridge.ical.content import content_key
from bridge.ical.model import InvalidObject
from bridge.ical.series import expand
from bridge.ical.timezones import now_utc, zone
from bridge.store import open_store
from bridge.store.objects import HORIZON
from bridge.sync.engine import SyncRun
from bridge.targets.base import (
    CalendarNotFound,
    Listing,
    RemoteObject,
    Target,
    TargetStopped,
    WriteError,
    WriteKind,
    WriteOp,
    WriteResult,
)
from tests.conftest import sqlite_at_head
from tests.remotes import FAR, TZ, MemoryRemote, Remote, at, local, remote_fixture, utc, window  # noqa: F401

UID = "rdv-1@gestan"


# ---------------------------------------------------------------------- helpers

def vcalendar(uid: str, summary: str, start: datetime, *, hours: int = 1,
              rrule: str | None = None, moved: dict[datetime, tuple[datetime, str]] | None = None,
              cancelled: tuple[datetime, ...] = (),
              future: dict[datetime, tuple[datetime, str]] | None = None) -> str:
    """One object as Gestan holds it: a single event, or a series with overrides
    (``moved``: original start -> (new start, summary)), EXDATEs (``cancelled``) and
    "this and following" overrides (``future``, RECURRENCE-ID;RANGE=THISANDFUTURE)."""
    calendar = Calendar()
    calendar.add("PRODID", "-//gestan-bridge tests//FR")
    calendar.add("VERSION", "2.0")

    def vevent(begin: datetime, title: str, rid: datetime | None = None,
               whole_range: bool = False) -> Event:
        event = Event()
        event.add("UID", uid)
        event.add("DTSTAMP", datetime(2024, 1, 1, tzinfo=zone("UTC")))
        if rid is not None:
            event.add("RECURRENCE-ID", local(rid),
                      parameters={"RANGE": "THISANDFUTURE"} if whole_range else None)
        event.add("DTSTART", local(begin))
        event.add("DTEND", local(begin + timedelta(hours=hours)))
        event.add("SUMMARY", title)
        return event

    master = vevent(start, summary)
    if rrule:
        master.add("RRULE", dict(part.split("=", 1) for part in rrule.split(";")))
    for original in cancelled:
        master.add("EXDATE", local(original))
    calendar.add_component(master)
    for original, (begin, title) in (moved or {}).items():
        calendar.add_component(vevent(begin, title, rid=original))
    for original, (begin, title) in (future or {}).items():
        calendar.add_component(vevent(begin, title, rid=original, whole_range=True))
    return calendar.to_ical().decode()


def weekly(first: datetime, k: int) -> datetime:
    """The k-th weekly occurrence after ``first`` at the same wall time in ``TZ``."""
    wall = local(first).replace(tzinfo=None) + timedelta(weeks=k)
    return utc(wall.replace(tzinfo=zone(TZ)))


def key(ics: str | None) -> str:
    assert ics is not None
    return content_key(ics, TZ)


def summary(ics: str | None) -> str:
    assert ics is not None
    return parse_object(ics, TZ).master.subject


def bound(remote: Remote, reference: str | None = None) -> Target:
    """A fresh target for one run, its calendar found (from the cached reference if any)."""
    target = remote.target()
    target.bind(reference)
    return target


def write(target: Target, *ops: WriteOp) -> list[WriteResult]:
    results: list[WriteResult] = []
    target.write(list(ops), results.append)
    return results


def create(remote: Remote, ics: str, uid: str = UID) -> RemoteObject:
    [result] = write(bound(remote), WriteOp(WriteKind.CREATE, uid, ics))
    assert result.error is None and result.remote is not None, result
    return result.remote


def live_ids(listing: Listing) -> set[str]:
    return {o.remote_id for o in listing.objects if o.ics is not None}


def summaries(remote: Remote) -> list[str]:
    return sorted(seen.summary for seen in remote.live())


# ---------------------------------------------------------------------- listings

def test_full_listing_holds_what_overlaps_the_window(remote: Remote):
    soon = remote.add("Dentiste", at(2))
    running = remote.add("Hebdo", at(-20, 8), rrule="FREQ=WEEKLY;COUNT=10")
    remote.add("Trop loin", at(500))
    remote.add("Passé", at(-10))
    listing = bound(remote).list_changes(None, window())
    assert listing.full and listing.state
    assert live_ids(listing) == {soon, running}
    by_id = {o.remote_id: o for o in listing.objects}
    assert summary(by_id[soon].ics) == "Dentiste"
    assert parse_object(by_id[running].ics or "", TZ).is_series
    assert all(o.etag for o in listing.objects)
    assert len(remote.live()) == 4, "listing changes nothing remotely"


def test_delta_lists_changes_and_deletions_then_nothing(remote: Remote):
    a, b = remote.add("A", at(2)), remote.add("B", at(3))
    c = remote.add("C", at(4))
    target = remote.target()
    reference = target.bind(None)
    first = target.list_changes(None, window())
    assert live_ids(first) == {a, b, c}
    remote.edit(a, summary="A modifié")
    remote.delete(b)
    d = remote.add("D", at(5))
    delta = bound(remote, reference).list_changes(first.state, window())
    assert not delta.full
    by_id = {o.remote_id: o for o in delta.objects}
    assert set(by_id) == {a, b, d}, "the unchanged C is not listed"
    assert by_id[b].ics is None, "a deletion is a positive signal"
    assert summary(by_id[a].ics) == "A modifié" and summary(by_id[d].ics) == "D"
    assert summaries(remote) == ["A modifié", "C", "D"]
    before = remote.request_count
    target = bound(remote, reference)
    again = target.list_changes(delta.state, window())
    assert again.objects == [] and not again.full
    assert remote.request_count - before == target.requests.count == 1


def test_delta_follows_an_object_moved_out_of_the_window(remote: Remote):
    event = remote.add("Reporté", at(3))
    target = remote.target()
    reference = target.bind(None)
    first = target.list_changes(None, window())
    remote.edit(event, start=at(700))
    delta = bound(remote, reference).list_changes(first.state, window())
    [moved] = delta.objects
    assert moved.remote_id == event
    assert parse_object(moved.ics or "", TZ).master.start == at(700)


def test_expired_state_gives_a_full_listing_flagged_full(remote: Remote):
    a, b = remote.add("A", at(2)), remote.add("B", at(3))
    target = remote.target()
    reference = target.bind(None)
    first = target.list_changes(None, window())
    remote.delete(b)
    c = remote.add("C", at(4))
    remote.expire_state()
    listing = bound(remote, reference).list_changes(first.state, window())
    assert listing.full, "the caller must not read absence as deletion"
    assert live_ids(listing) == {a, c} == {s.remote_id for s in remote.live()}
    assert all(o.ics is None for o in listing.objects if o.remote_id not in (a, c))
    remote.edit(c, summary="C modifié")  # the new state is a working one
    delta = bound(remote, reference).list_changes(listing.state, window())
    assert not delta.full and [o.remote_id for o in delta.objects] == [c]


def test_an_unreadable_object_is_reported_not_dropped_silently(remote: Remote):
    readable = remote.add("Lisible", at(2))
    minutely = remote.add("Chaque minute", at(3), rrule="FREQ=MINUTELY;COUNT=30")
    listing = bound(remote).list_changes(None, window())
    by_id = {o.remote_id: o for o in listing.objects}
    assert summary(by_id.pop(readable).ics) == "Lisible"
    # reported by the target, or handed over as a text our parser refuses with a reason
    reported = [remote_id for remote_id, _ in listing.unreadable]
    for remote_id, listed in by_id.items():
        with pytest.raises(InvalidObject, match="MINUTELY"):
            parse_object(listed.ics or "", TZ)
        reported.append(remote_id)
    assert reported == [minutely]
    assert len(remote.live()) == 2


def test_an_object_made_by_another_client_has_no_foreign_uid(remote: Remote):
    remote.add("Autre client", at(2))
    [listed] = bound(remote).list_changes(None, window()).objects
    assert listed.foreign_uid is None


# ---------------------------------------------------------------------- writes

def test_create_then_fetch_and_list_with_the_foreign_uid(remote: Remote):
    ics = vcalendar(UID, "Client Dupont", at(3))
    made = create(remote, ics)
    assert made.foreign_uid == UID and made.etag and made.remote_id
    assert key(made.ics) == key(ics)
    [seen] = remote.live()
    assert (seen.remote_id, seen.summary, seen.start) == (made.remote_id, "Client Dupont",
                                                          at(3))
    fetched = bound(remote).fetch(made.remote_id)
    assert fetched is not None
    assert (fetched.etag, fetched.foreign_uid, key(fetched.ics)) == (made.etag, UID, key(ics))
    [listed] = bound(remote).list_changes(None, window()).objects
    assert (listed.remote_id, listed.foreign_uid) == (made.remote_id, UID)


def test_fetch_of_an_unknown_id_is_none(remote: Remote):
    assert bound(remote).fetch("unknown0000000000") is None


@pytest.mark.parametrize("lost", ["crash after the remote's commit", "answer ignored"])
def test_create_retried_after_a_lost_answer_gives_exists_not_a_duplicate(remote: Remote,
                                                                          lost: str):
    ics = vcalendar(UID, "Une fois", at(2))
    op = WriteOp(WriteKind.CREATE, UID, ics, local_id=7)
    target = bound(remote)
    if lost.startswith("crash"):
        remote.fail_next(1, after_apply=True)
        heard: list[WriteResult] = []
        with pytest.raises(TargetStopped):
            target.write([op], heard.append)
        assert heard == [], "the caller never heard of it"
    else:
        write(target, op)
    [made] = remote.live()
    [again] = write(bound(remote), op)
    assert again.error is WriteError.EXISTS and again.op == op
    assert again.remote is not None and again.remote.remote_id == made.remote_id
    assert again.remote.foreign_uid == UID and key(again.remote.ics) == key(ics)
    assert [s.remote_id for s in remote.live()] == [made.remote_id], "no duplicate"


def test_update_with_the_current_etag_changes_the_etag(remote: Remote):
    made = create(remote, vcalendar(UID, "Version 1", at(3)))
    ics = vcalendar(UID, "Version 2", at(3, 15))
    [result] = write(bound(remote), WriteOp(WriteKind.UPDATE, UID, ics, made.remote_id,
                                            made.etag))
    assert result.error is None and result.remote is not None
    assert result.remote.remote_id == made.remote_id and result.remote.etag != made.etag
    assert key(result.remote.ics) == key(ics) and result.remote.foreign_uid == UID
    [seen] = remote.live()
    assert (seen.summary, seen.start) == ("Version 2", at(3, 15))


def test_update_with_a_stale_etag_is_refused_and_the_remote_unchanged(remote: Remote):
    made = create(remote, vcalendar(UID, "Version 1", at(3)))
    remote.edit(made.remote_id, summary="Autre client")
    [result] = write(bound(remote), WriteOp(
        WriteKind.UPDATE, UID, vcalendar(UID, "Version Gestan", at(3)), made.remote_id,
        made.etag))
    assert result.error is WriteError.PRECONDITION
    assert summaries(remote) == ["Autre client"]
    current = bound(remote).fetch(made.remote_id)
    assert current is not None and current.etag != made.etag
    assert summary(current.ics) == "Autre client"


def test_delete_then_the_delta_shows_it(remote: Remote):
    made = create(remote, vcalendar(UID, "Annulé", at(4)))
    target = remote.target()
    reference = target.bind(None)
    first = target.list_changes(None, window())
    [result] = write(bound(remote, reference), WriteOp(
        WriteKind.DELETE, UID, None, made.remote_id, made.etag))
    assert result.error is None
    assert remote.live() == []
    gone = bound(remote, reference).fetch(made.remote_id)
    assert gone is None or gone.ics is None
    delta = bound(remote, reference).list_changes(first.state, window())
    assert [(o.remote_id, o.ics) for o in delta.objects] == [(made.remote_id, None)]


def test_delete_of_a_gone_object_is_gone(remote: Remote):
    made = create(remote, vcalendar(UID, "Déjà supprimé", at(4)))
    remote.delete(made.remote_id)
    [unconditional] = write(bound(remote), WriteOp(
        WriteKind.DELETE, UID, None, made.remote_id, None))
    assert unconditional.error is WriteError.GONE
    [conditional] = write(bound(remote), WriteOp(
        WriteKind.DELETE, UID, None, made.remote_id, made.etag))
    # Either answer sends the caller to the same place: the object is confirmed gone.
    assert conditional.error in (WriteError.GONE, WriteError.PRECONDITION)
    if conditional.error is WriteError.PRECONDITION:
        gone = bound(remote).fetch(made.remote_id)
        assert gone is None or gone.ics is None
    assert remote.live() == []


def test_remote_down_stops_the_run_and_writes_nothing(remote: Remote):
    target = bound(remote)
    remote.fail_next(1)
    with pytest.raises(TargetStopped):
        target.list_changes(None, window())
    remote.fail_next(1)
    with pytest.raises(TargetStopped):
        write(target, WriteOp(WriteKind.CREATE, UID, vcalendar(UID, "Plus tard", at(2))))
    assert remote.live() == []
    assert live_ids(bound(remote).list_changes(None, window())) == set(), "up again"


def test_bind_by_name_cached_and_unknown(remote: Remote):
    target = remote.target()
    reference = target.bind(None)
    before = remote.request_count
    assert bound(remote, reference).requests.count == 0, "a cached reference costs nothing"
    assert remote.request_count == before
    with pytest.raises(CalendarNotFound, match="Agenda inconnu"):
        remote.target("Agenda inconnu").bind(None)


# ---------------------------------------------------------------------- series

def series_ics(first: datetime) -> str:
    """Weekly × 6; the 2nd occurrence moved to another day and hour, the 3rd cancelled."""
    return vcalendar(UID, "Hebdo", first, rrule="FREQ=WEEKLY;COUNT=6",
                     moved={weekly(first, 1): (weekly(first, 1) + timedelta(days=1, hours=6),
                                               "Hebdo (déplacé)")},
                     cancelled=(weekly(first, 2),))


def test_series_with_a_moved_and_a_cancelled_occurrence_round_trips(remote: Remote):
    first = at(1, 8)
    ics = series_ics(first)
    made = create(remote, ics)
    assert key(made.ics) == key(ics)
    fetched = bound(remote).fetch(made.remote_id)
    assert fetched is not None and key(fetched.ics) == key(ics)
    [listed] = bound(remote).list_changes(None, window()).objects
    assert key(listed.ics) == key(ics)
    assert [s.remote_id for s in remote.live()] == [made.remote_id], "one series, no copies"
    assert remote.occurrences(made.remote_id) == [
        ("Hebdo", first), ("Hebdo (déplacé)", weekly(first, 1) + timedelta(days=1, hours=6)),
        *[("Hebdo", weekly(first, k)) for k in (3, 4, 5)]]


def test_fetch_many_answers_as_fetch_does_in_fewer_requests(remote: Remote):
    """A close updating many series reads them first, together (fetch_many)."""
    first = at(1, 8)
    results = write(bound(remote), *[WriteOp(
        WriteKind.CREATE, f"s{n}-{UID}", series_ics(first + timedelta(hours=n)).replace(
            UID, f"s{n}-{UID}")) for n in range(25)])
    assert all(r.error is None and r.remote for r in results), results
    made = [r.remote for r in sorted(results, key=lambda r: int(r.op.uid.split("-")[0][1:]))]
    single = create(remote, vcalendar("one@gestan", "Seul", at(2)), "one@gestan")
    gone = create(remote, vcalendar("gone@gestan", "Parti", at(3)), "gone@gestan")
    remote.delete(gone.remote_id)
    ids = [m.remote_id for m in made] + [single.remote_id, gone.remote_id]
    target = bound(remote)
    before = remote.request_count
    many = target.fetch_many(ids)
    batched = remote.request_count - before
    assert list(many) == ids
    assert many[gone.remote_id] is None or many[gone.remote_id].ics is None  # type: ignore
    for one in [*made[:3], single]:   # each read alone too (a few: EWS reads are slow)
        alone = bound(remote).fetch(one.remote_id)
        got = many[one.remote_id]
        assert alone is not None and got is not None
        assert (got.etag, key(got.ics), got.foreign_uid) == (alone.etag, key(alone.ics),
                                                             alone.foreign_uid)
    assert key(many[made[3].remote_id].ics) == key(made[3].ics)  # type: ignore[union-attr]
    if not isinstance(remote, MemoryRemote):   # it has no batches to show
        assert batched <= 8, f"{batched} requests for 27 objects"


def test_series_update_changes_exactly_the_occurrences_it_says(remote: Remote):
    first = at(1, 8)
    made = create(remote, series_ics(first))
    # Gestan puts the moved occurrence back and cancels the 5th instead of the 3rd
    ics = vcalendar(UID, "Hebdo", first, rrule="FREQ=WEEKLY;COUNT=6",
                    cancelled=(weekly(first, 4),))
    [result] = write(bound(remote), WriteOp(WriteKind.UPDATE, UID, ics, made.remote_id,
                                            made.etag))
    assert result.error is None and result.remote is not None
    assert key(result.remote.ics) == key(ics)
    assert remote.occurrences(made.remote_id) == [
        ("Hebdo", weekly(first, k)) for k in (0, 1, 2, 3, 5)]
    fetched = bound(remote).fetch(made.remote_id)
    assert fetched is not None and key(fetched.ics) == key(ics)


def test_a_series_edited_by_another_client_reads_as_the_remote_expands_it(remote: Remote):
    first = at(2, 9)
    series = remote.add("Cours", first, rrule="FREQ=WEEKLY;COUNT=5")
    remote.edit_occurrence(series, weekly(first, 1), summary="Cours (salle B)",
                           start=weekly(first, 1) + timedelta(hours=2))
    remote.cancel_occurrence(series, weekly(first, 3))
    [listed] = bound(remote).list_changes(None, window()).objects
    parsed = parse_object(listed.ics or "", TZ)
    assert parsed.is_series
    now = now_utc()
    read = sorted(((e.subject, e.start) for e in expand(
        parsed.series_ics or "", now - FAR, now + FAR, TZ) if e.status != "CANCELLED"),
        key=lambda o: o[1])
    assert read == remote.occurrences(series)
    assert read == [("Cours", first), ("Cours (salle B)", weekly(first, 1) + timedelta(hours=2)),
                    ("Cours", weekly(first, 2)), ("Cours", weekly(first, 4))]


# ---------------------------------------------------------------------- fields

def test_fields_the_engine_does_not_own_survive_an_update(remote: Remote):
    made = create(remote, vcalendar(UID, "Avec invités", at(3)))
    extras = remote.set_extras(made.remote_id)
    current = bound(remote).fetch(made.remote_id)
    assert current is not None
    [result] = write(bound(remote), WriteOp(
        WriteKind.UPDATE, UID, vcalendar(UID, "Avec invités (modifié)", at(3)),
        made.remote_id, current.etag))
    assert result.error is None
    assert summaries(remote) == ["Avec invités (modifié)"]
    assert remote.extras(made.remote_id) == extras


# ---------------------------------------------------------------------- engine

def test_the_engine_runs_on_every_remote(remote: Remote, tmp_path):
    """How an engine test uses the fixture: a close, another client's edit, an open."""
    store = open_store(sqlite_at_head(tmp_path / "gestan.db"))
    store.add_user("alice", "alice", timezone=TZ)
    store.put_object("alice", "rdv.ics", vcalendar(UID, "Client Dupont", at(2)))
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok" and report.remote.created == 1, report.message
    [seen] = remote.live()
    assert (seen.summary, seen.start) == ("Client Dupont", at(2))
    remote.edit(seen.remote_id, summary="Client Dupont (déplacé)")
    report = SyncRun(store, "alice", remote.target()).pull()
    assert report.status == "ok" and report.gestan.updated == 1, report.message
    assert [a.event.subject for a in store.agenda("alice")] == ["Client Dupont (déplacé)"]
    again = SyncRun(store, "alice", remote.target()).push()
    assert (again.remote.created, again.remote.updated) == (0, 0)


def test_a_close_crashed_after_the_remote_created_makes_no_duplicate(remote: Remote,
                                                                     tmp_path):
    """Point 9 through the engine: the first close dies right after the remote made the
    object; the next close finds it (Google: its id; others: the stamped Gestan UID)."""
    store = open_store(sqlite_at_head(tmp_path / "gestan.db"))
    store.add_user("alice", "alice", timezone=TZ)
    store.put_object("alice", "rdv.ics", vcalendar(UID, "Une fois", at(2)))
    target = remote.target()
    # the calendar found beforehand, so that the request that fails is the create
    store.save_sync_state(store.user("alice").id, target.name,
                          calendar_id=remote.target().bind(None))
    remote.fail_next(1, after_apply=True)
    crashed = SyncRun(store, "alice", target).push()
    assert crashed.status == "stopped" and len(remote.live()) == 1
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok", report.message
    assert [s.summary for s in remote.live()] == ["Une fois"], "no duplicate"
    again = SyncRun(store, "alice", remote.target()).push()
    assert (again.remote.created, again.remote.updated) == (0, 0)


def test_a_series_moved_to_another_time_keeps_its_exceptions(remote: Remote, tmp_path):
    """A phone moves a weekly series an hour later, its cancelled and moved occurrences
    with it: the remote shows the new times, the same exceptions, nothing of the old ones
    (Google: the old cancellation is no instance any more; the old exception goes)."""
    def series(first: datetime) -> str:
        return vcalendar("moved-series@gestan", "Hebdo", first, rrule="FREQ=WEEKLY;COUNT=6",
                         cancelled=(weekly(first, 2),),
                         moved={weekly(first, 3): (weekly(first, 3) + timedelta(hours=3),
                                                   "Hebdo (déplacé)")})

    store = open_store(f"sqlite:///{tmp_path / 'gestan.db'}")
    store.add_user("alice", "alice", timezone=TZ)
    first = at(2, 8)
    store.put_object("alice", "moved.ics", series(first))
    assert SyncRun(store, "alice", remote.target()).push().remote.created == 1
    later = first + timedelta(hours=1)
    store.put_object("alice", "moved.ics", series(later))
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok" and report.skipped == [], (report.message, report.skipped)
    assert report.remote.updated == 1
    [seen] = remote.live()
    assert remote.occurrences(seen.remote_id) == [
        ("Hebdo", later), ("Hebdo", weekly(later, 1)),
        ("Hebdo (déplacé)", weekly(later, 3) + timedelta(hours=3)),
        ("Hebdo", weekly(later, 4)), ("Hebdo", weekly(later, 5))]


# ---------------------------------------------------------------------- this and following

FUTURE_UID = "weekly-future@gestan"


def future_ics(first: datetime, later: str = "Hebdo (après-midi)", hours_later: int = 4,
               cancelled: tuple[int, ...] = (5,)) -> str:
    """Weekly × 10 as a phone sends it once "this and following" was edited at the 4th
    occurrence (moved ``hours_later`` and retitled ``later``), with an occurrence moved
    before that point (the 2nd) and after it (the 8th), and ``cancelled`` ones."""
    split = weekly(first, 3)
    return vcalendar(
        FUTURE_UID, "Hebdo", first, rrule="FREQ=WEEKLY;COUNT=10",
        moved={weekly(first, 1): (weekly(first, 1) + timedelta(hours=2), "Hebdo (tôt)"),
               weekly(first, 7): (weekly(first, 7) + timedelta(days=1), "Hebdo (mercredi)")},
        cancelled=tuple(weekly(first, k) for k in cancelled),
        future={split: (split + timedelta(hours=hours_later), later)})


def gestan_occurrences(store, href: str = "future.ics") -> list[tuple[str, datetime]]:
    """What recurring-ical-events expands from Gestan's text within the sync window."""
    stored = store.calendar_object(store.user("alice").id, href)
    calendar = Calendar.from_ical(stored.ics)
    now = now_utc()
    return sorted(((str(c.get("SUMMARY")), utc(c.decoded("DTSTART"))) for c in
                   recurring_ical_events.of(calendar).between(now, now + HORIZON)
                   if str(c.get("STATUS", "")).upper() != "CANCELLED"), key=lambda o: o[1])


def remote_occurrences(remote: Remote) -> list[tuple[str, datetime]]:
    """Every instance the remote expands, within the sync window."""
    now = now_utc()
    return sorted((o for seen in remote.live() for o in remote.occurrences(seen.remote_id)
                   if now <= o[1] < now + HORIZON), key=lambda o: o[1])


def series_end(remote: Remote, seen) -> date:
    """The last day of a remote series, read in the remote's own fields (Google's and the
    in-memory RRULE, Exchange's EndDateRecurrence, Graph's endDate range)."""
    raw = seen.raw
    if remote.kind == "ews":
        return date.fromisoformat(raw["Recurrence"]["EndDateRecurrence"]["EndDate"][:10])
    if remote.kind == "graph":
        assert raw["recurrence"]["range"]["type"] == "endDate"
        return date.fromisoformat(raw["recurrence"]["range"]["endDate"][:10])
    if remote.kind == "google":
        [line] = [r for r in raw["recurrence"] if r.startswith("RRULE:")]
        rule = vRecur.from_ical(line[len("RRULE:"):])
    else:
        master = next(c for c in Calendar.from_ical(raw.ics).walk("VEVENT")
                      if "RECURRENCE-ID" not in c)
        rule = master["RRULE"]
    until = rule["UNTIL"][0]
    return local(utc(until)).date() if isinstance(until, datetime) else until


def no_change(store, remote: Remote, full: bool = False) -> None:
    """An open then a close change nothing on either side (no ping-pong); ``full``: the
    open reads the whole window again (its delta state expired)."""
    if full:
        remote.expire_state()
    before = store.calendar_object(store.user("alice").id, "future.ics")
    opened = SyncRun(store, "alice", remote.target()).pull()
    assert opened.status == "ok", opened.message
    assert (opened.gestan.created, opened.gestan.updated, opened.gestan.deleted) == (0, 0, 0)
    after = store.calendar_object(store.user("alice").id, "future.ics")
    assert (after.etag, after.revision) == (before.etag, before.revision)
    closed = SyncRun(store, "alice", remote.target()).push()
    assert closed.status == "ok", closed.message
    assert (closed.remote.created, closed.remote.updated, closed.remote.deleted) == (0, 0, 0)


def future_store(tmp_path, first: datetime):
    store = open_store(f"sqlite:///{tmp_path / 'gestan.db'}")
    store.add_user("alice", "alice", timezone=TZ)
    store.put_object("alice", "future.ics", future_ics(first))
    return store


def test_a_series_changed_this_and_following_is_split_as_the_remote_does(remote: Remote,
                                                                         tmp_path):
    """The phone's THISANDFUTURE becomes what a user's "this and following" edit makes in
    Google or Outlook: the series ends before the 4th occurrence, a new series starts
    there with the change; each with its own overrides and cancellations. Then nothing
    moves at the next open and close, and the phone's next edit of the later part goes to
    the later series only."""
    first = at(2, 8)
    split = weekly(first, 3)
    store = future_store(tmp_path, first)
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok" and report.skipped == [], (report.message, report.skipped)
    assert (report.remote.created, report.remote.updated) == (2, 0)
    series = sorted(remote.live(), key=lambda seen: seen.start)
    assert [(s.summary, s.start) for s in series] == [
        ("Hebdo", first), ("Hebdo (après-midi)", split + timedelta(hours=4))]
    assert series_end(remote, series[0]) == local(weekly(first, 2)).date()
    earlier, later = (remote.occurrences(s.remote_id) for s in series)
    assert earlier == [("Hebdo", first), ("Hebdo (tôt)", weekly(first, 1) + timedelta(hours=2)),
                       ("Hebdo", weekly(first, 2))], "the first series ends before the split"
    assert later == sorted([("Hebdo (après-midi)", weekly(first, k) + timedelta(hours=4))
                            for k in (3, 4, 6, 8, 9)]
                           + [("Hebdo (mercredi)", weekly(first, 7) + timedelta(days=1))],
                           key=lambda o: o[1])
    assert remote_occurrences(remote) == gestan_occurrences(store)
    no_change(store, remote)
    no_change(store, remote, full=True)

    # the phone edits the later part again: 15:00 from the 4th on, the 7th cancelled too
    store.put_object("alice", "future.ics", future_ics(
        first, later="Hebdo (15 h)", hours_later=5, cancelled=(5, 6)))
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok", report.message
    assert (report.remote.created, report.remote.updated, report.remote.deleted) == (0, 1, 0)
    after = sorted(remote.live(), key=lambda seen: seen.start)
    assert [s.remote_id for s in after] == [s.remote_id for s in series]
    assert remote.occurrences(after[0].remote_id) == earlier, "the first series untouched"
    assert [o[0] for o in remote.occurrences(after[1].remote_id)] == [
        "Hebdo (15 h)"] * 2 + ["Hebdo (mercredi)"] + ["Hebdo (15 h)"] * 2
    assert remote_occurrences(remote) == gestan_occurrences(store)
    no_change(store, remote)

    # the phone makes it one series again: the later series goes, the first runs to the end
    store.put_object("alice", "future.ics", vcalendar(FUTURE_UID, "Hebdo", first,
                                                      rrule="FREQ=WEEKLY;COUNT=10"))
    report = SyncRun(store, "alice", remote.target()).push()
    assert (report.remote.created, report.remote.updated, report.remote.deleted) == (0, 1, 1)
    [whole] = remote.live()
    assert whole.remote_id == series[0].remote_id
    assert remote.occurrences(whole.remote_id) == [("Hebdo", weekly(first, k))
                                                   for k in range(10)]
    no_change(store, remote)


def test_a_part_changed_in_the_remote_is_cut_in_gestan_too(remote: Remote, tmp_path):
    """Another client edits the later series: Gestan takes the split as the remote has it
    (the phone sees two series, the same occurrences as every other calendar), then
    nothing moves; a crash after the remote made a part makes no duplicate."""
    first = at(2, 8)
    store = future_store(tmp_path, first)
    target = remote.target()
    store.save_sync_state(store.user("alice").id, target.name,
                          calendar_id=remote.target().bind(None))
    remote.fail_next(1, after_apply=True)
    crashed = SyncRun(store, "alice", target).push()
    # one create applied, or both when the target sends them together
    assert crashed.status == "stopped" and len(remote.live()) in (1, 2)
    opened = SyncRun(store, "alice", remote.target()).pull()  # finds the parts it made
    assert opened.status == "ok" and opened.gestan.created == 0, opened.message
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok", report.message
    series = sorted(remote.live(), key=lambda seen: seen.start)
    assert len(series) == 2, "no duplicate"
    no_change(store, remote)

    remote.edit(series[1].remote_id, summary="Hebdo (salle B)")
    opened = SyncRun(store, "alice", remote.target()).pull()
    assert opened.status == "ok", opened.message
    assert (opened.gestan.created, opened.gestan.updated) == (0, 1)
    objects = store.calendar_listing(store.user("alice").id, with_ics=True)
    assert sorted(o.uid for o in objects) == sorted(
        [FUTURE_UID, f"{FUTURE_UID}_R{weekly(first, 3):%Y%m%dT%H%M%SZ}"])
    mine = sorted(((a.event.subject, a.event.start) for a in store.agenda("alice")),
                  key=lambda o: o[1])
    assert mine == remote_occurrences(remote)
    assert {o[0] for o in mine} == {"Hebdo", "Hebdo (tôt)", "Hebdo (salle B)",
                                    "Hebdo (mercredi)"}
    closed = SyncRun(store, "alice", remote.target()).push()
    assert (closed.remote.created, closed.remote.updated, closed.remote.deleted) == (0, 0, 0)
    again = SyncRun(store, "alice", remote.target()).pull()
    assert (again.gestan.created, again.gestan.updated, again.gestan.deleted) == (0, 0, 0)


def test_a_split_series_deleted_in_gestan_goes_with_all_its_parts(remote: Remote, tmp_path):
    store = future_store(tmp_path, at(2, 8))
    assert SyncRun(store, "alice", remote.target()).push().remote.created == 2
    store.delete_object("alice", "future.ics")
    report = SyncRun(store, "alice", remote.target()).push()
    assert report.status == "ok" and report.remote.deleted == 2, report.message
    assert remote.live() == []
    assert store.sync_links(store.user("alice").id, remote.target().name) == []
