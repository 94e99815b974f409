"""What is Graph's own (the shared rule and contract tests run on it through
tests/remotes_graph.py): msal connections and their stored caches, $batch sizes, throttling,
invitations, and a crash injected at each request of a small two-way sync."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.ical.model import EventData
from bridge.store import Store, open_store
from bridge.sync.engine import SyncRun, bind_calendar
from bridge.targets import graph_auth
from bridge.targets.base import ReconnectNeeded
from bridge.targets.graph import build_target
from tests.conftest import sqlite_at_head
from tests.remotes import CALENDAR, LOGIN, TZ, at
from tests.remotes_graph import DriverFake, GraphRemote, ca_bundle


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[GraphRemote]:
    with DriverFake(device_interval=1) as fake, ca_bundle(fake.ca_file):
        yield GraphRemote(fake, tmp_path / "tokens")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = open_store(sqlite_at_head(tmp_path / "gestan.db"))
    store.add_user(LOGIN, LOGIN, timezone=TZ)
    return store


def add_local(store: Store, subject: str, days: int) -> None:
    start = at(days)
    store.add_action(LOGIN, EventData(start=start, end=start + timedelta(hours=1), tzid=TZ,
                                      subject=subject))


def run(store: Store, target: Any, direction: str) -> Any:
    sync = SyncRun(store, LOGIN, target)
    return sync.push() if direction == "close" else sync.pull()


def test_client_credentials_cached_0600_no_secret_logged_then_free_opens(
        remote: GraphRemote, store: Store, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    folder = graph_auth.graph_dir(LOGIN, remote.directory)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in ("connection.json", "msal_cache.json", "http_cache.pickle"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    remote.add("Dentiste", at(2))
    assert run(store, remote.target(), "open").status == "ok"
    fake = remote.fake
    fake.reset_log()
    target = remote.target()
    assert run(store, target, "open").gestan.created == 0
    assert (fake.request_count, fake.identity_request_count) == (1, 0), \
        "token and OpenID configuration came from the stored caches"
    shown = caplog.text + "".join(capsys.readouterr())
    assert fake.client_secret not in shown and "access_token" not in shown
    info = graph_auth.connection(LOGIN, remote.directory)
    assert info is not None and info.kind == graph_auth.APP and info.mailbox == fake.mailbox
    assert fake.client_secret not in repr(info)


def test_wrong_secret_stores_nothing(remote: GraphRemote, tmp_path: Path) -> None:
    with pytest.raises(graph_auth.ConnectError, match="invalid_client"):
        graph_auth.connect_app("bob", remote.fake.tenant, remote.fake.client_id, "wrong",
                               remote.fake.mailbox, directory=tmp_path / "t",
                               authority=remote.fake.authority_url,
                               api_url=remote.fake.api_url)
    assert graph_auth.connection("bob", tmp_path / "t") is None


def test_device_code_then_revoked_grant_is_reconnect_needed(remote: GraphRemote,
                                                            tmp_path: Path) -> None:
    fake, directory = remote.fake, tmp_path / "device"
    auth, flow = graph_auth.start_device_flow("carol", fake.tenant, fake.public_client_id,
                                              directory=directory,
                                              authority=fake.authority_url)
    assert flow["user_code"] in flow["message"]
    fake.approve_device_code(flow["user_code"])
    info = graph_auth.finish_device_flow("carol", auth, flow, directory=directory,
                                         api_url=fake.api_url,
                                         exit_condition=lambda f: True)
    assert (info.kind, info.mailbox) == (graph_auth.DEVICE, fake.user)
    target = build_target("carol", None, TZ, directory=directory, api_url=fake.api_url)
    target.bind(None)   # the signed-in person's default calendar, through /me
    fake.expire_access_tokens()
    fake.revoke()
    with pytest.raises(ReconnectNeeded, match="outlook connect"):
        build_target("carol", None, TZ, directory=directory, api_url=fake.api_url).bind(None)


def test_push_of_100_is_batches_of_20_and_invites_nobody(remote: GraphRemote,
                                                         store: Store) -> None:
    for n in range(100):
        add_local(store, f"RDV {n}", 2 + n % 50)
    remote.fake.reset_log()
    report = run(store, remote.target(), "close")
    assert report.status == "ok" and report.remote.created == 100
    batches = [e for e in remote.fake.request_log if e.kind == "batch"]
    parts = [e for e in remote.fake.request_log if e.in_batch]
    assert len(batches) == 5, "a first push looks nothing up: 5 batches of creates"
    assert sum(p.method == "POST" for p in parts) == 100 and len(parts) == 100
    assert remote.fake.request_count == 6, "the calendar found once, then 5 batches"
    assert len(remote.live()) == 100 and remote.fake.invitations == []
    # after a close that stopped, creates are looked up first (one may have been made)
    for n in range(20):
        add_local(store, f"Après {n}", 3)
    remote.fake.fail_next(1, 503, retry_after=3600)
    assert run(store, remote.target(), "close").status == "stopped"
    remote.fake.reset_log()
    rerun = run(store, remote.target(), "close")
    parts = [e for e in remote.fake.request_log if e.in_batch]
    lookups = sum(p.method == "GET" and "singleValueExtendedProperties" in p.query.get(
        "$filter", [""])[0] for p in parts)
    assert rerun.remote.created >= 1 and lookups == rerun.remote.created, "each looked up"
    assert sorted(s.summary for s in remote.live()) == sorted(
        [f"RDV {n}" for n in range(100)] + [f"Après {n}" for n in range(20)]), "no duplicate"


def test_throttling_honours_retry_after_and_converges(remote: GraphRemote,
                                                      store: Store) -> None:
    slept: list[float] = []
    for n in range(40):
        add_local(store, f"T{n}", 2 + n)
    remote.fake.fail_next(2, 429, retry_after=7)
    remote.fake.fail_randomly(0.2, (429, 503), seed=3, retry_after=1)
    target = remote.target()
    target.sleep = slept.append
    report = run(store, target, "close")
    assert report.status == "ok", report.message
    assert 7 in slept and remote.fake.injected_errors >= 8
    assert sorted(s.summary for s in remote.live()) == sorted(f"T{n}" for n in range(40))


def test_a_stale_etag_is_412_re_read_and_logged(remote: GraphRemote, store: Store) -> None:
    add_local(store, "Gestan", 3)
    run(store, remote.target(), "close")
    [seen] = remote.live()
    remote.fake.patch_event(seen.remote_id, {"subject": "Outlook", "categories": ["Vert"]})
    [action] = store.agenda(LOGIN)
    obj = store.calendar_listing(store.user(LOGIN).id, with_ics=True)[0]
    store.put_object(LOGIN, obj.href, obj.ics.replace("SUMMARY:Gestan", "SUMMARY:Gestan 2"))
    report = run(store, remote.target(), "close")
    assert len(report.conflicts) == 1 and "Outlook" in (report.conflicts[0].losing_ics or "")
    assert [s.summary for s in remote.live()] == ["Gestan 2"]
    assert remote.fake.event(seen.remote_id)["categories"] == ["Vert"], "Outlook's own kept"
    assert action.id == store.agenda(LOGIN)[0].id


class CountingFake(DriverFake):
    """Fails the n-th Graph operation (batch parts count one each) after applying it."""

    fail_at: int | None = None
    seen = 0

    def _take_failure(self) -> Any:
        self.seen += 1
        if self.fail_at is not None and self.seen == self.fail_at:
            from tests.fakes.loopback import Failure
            return Failure(503, None, 3600, True)
        return None


def two_way(store: Store, remote: GraphRemote) -> None:
    for direction in ("open", "close"):
        run(store, remote.target(), direction)


def scenario(tmp_path: Path, fail_at: int | None) -> tuple[list[str], list[str], int]:
    with CountingFake() as fake, ca_bundle(fake.ca_file):
        remote = GraphRemote(fake, tmp_path / "tokens")
        store = open_store(sqlite_at_head(tmp_path / "gestan.db"))
        store.add_user(LOGIN, LOGIN, timezone=TZ)
        remote.add("Distant", at(2))
        remote.add("Série distante", at(1, 8), rrule="FREQ=WEEKLY;COUNT=3")
        add_local(store, "Local A", 3)
        add_local(store, "Local B", 4)
        fake.fail_at = fail_at
        two_way(store, remote)
        operations = fake.seen
        fake.fail_at = None
        two_way(store, remote)
        two_way(store, remote)
        return (sorted(s.summary for s in remote.live()),
                sorted(a.event.subject for a in store.agenda(LOGIN)), operations)


def test_a_crash_at_each_request_then_a_rerun_ends_the_same(tmp_path: Path) -> None:
    expected_remote, expected_local, operations = scenario(tmp_path / "clean", None)
    assert expected_remote == ["Distant", "Local A", "Local B", "Série distante"]
    assert len(expected_local) == 6 and operations >= 7
    for n in range(1, operations + 1):
        got_remote, got_local, _ = scenario(tmp_path / f"crash{n}", n)
        assert (got_remote, got_local) == (expected_remote, expected_local), f"crash at {n}"


def test_an_unknown_calendar_lists_the_names(remote: GraphRemote) -> None:
    with pytest.raises(Exception, match=f"'Calendar', '{CALENDAR}'"):
        remote.target("Nope").bind(None)



def test_series_follow_ups_are_batched_across_series(remote: GraphRemote,
                                                     store: Store) -> None:
    """30 new series with a cancelled and a moved occurrence: Graph cannot take them with
    the master, so each needs its instances looked up, then written, then read back; each
    of those steps is one round of $batch for all series, not requests per series."""
    from tests.test_target_contract import vcalendar, weekly

    for n in range(30):
        first = at(1 + n % 5, 8 + n % 9)
        store.put_object(LOGIN, f"s{n}.ics", vcalendar(
            f"serie-{n}@gestan", f"Hebdo {n}", first, rrule="FREQ=WEEKLY;COUNT=6",
            cancelled=(weekly(first, 2),),
            moved={weekly(first, 4): (weekly(first, 4) + timedelta(hours=1), f"Décalé {n}")}))
    fake = remote.fake
    target = remote.target()
    bind_calendar(store, store.require_user(LOGIN), target)  # as outlook connect does
    fake.reset_log()
    report = run(store, target, "close")
    assert report.status == "ok" and report.remote.created == 30, report.message
    outside = [(e.method, e.path) for e in fake.request_log if not e.in_batch]
    # 2 batches of creates, 2 of lookups, 3 of writes (60 parts), 3 of read-backs (30
    # masters and 30 instance listings)
    assert outside == [("POST", "/v1.0/$batch")] * (2 + 2 + 3 + 3) \
        and fake.request_count == len(outside), outside
    live = remote.live()
    assert len(live) == 30
    for seen in live:
        occurrences = remote.occurrences(seen.remote_id)
        assert len(occurrences) == 5, (seen.summary, occurrences)
        assert sum(title.startswith("Décalé") for title, _ in occurrences) == 1
    fake.reset_log()
    assert run(store, remote.target(), "open").gestan.updated == 0
    assert fake.request_count == 1, "the series read back: the next open knows them all"
