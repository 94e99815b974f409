"""Crashes (issue 12), at CI size: the server killed (SIGKILL) amid concurrent PUTs loses no
acknowledged write; a `gestan-bridge sync close` process killed while its second (last)
batch of creates is in flight (Google applies it, the answer reaches no one) leaves neither a
blocked user nor a duplicate. The in-process crash at every request of a two-way sync, for
each target, is in the tests named in :mod:`tests.reliability.crash`. Full size: ``python -m
bench.reliability_bench --part crash``."""

from __future__ import annotations

import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path

from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import open_store
from tests.clirun import invoke, script
from tests.reliability.crash import (
    HoldingGoogle,
    live_summaries,
    missing_after_restart,
    puts_until_killed,
)
from tests.reliability.google import connected_google
from tests.reliability.servers import start_in_process, start_process


def test_a_server_killed_amid_puts_loses_no_acknowledged_write(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    open_store(url).add_user("alice", "alice-pw")
    server = start_process(tmp_path, url)
    record = puts_until_killed(server.url + "/", "alice", "alice-pw", writers=4,
                               kill=server.proc.kill, after_acks=40)
    assert server.proc.wait(10) == -signal.SIGKILL
    assert len(record.acked) >= 40 and sum(record.errors.values()) >= 1, record
    restarted = start_in_process(url)
    try:
        assert missing_after_restart(restarted.url, "alice", "alice-pw", record.acked) == []
    finally:
        restarted.stop()


def test_a_sync_close_killed_mid_batch_is_taken_over_and_duplicates_nothing(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    store = open_store(url)
    alice = store.add_user("alice", "alice-pw")
    start = now_utc().replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for n in range(100):  # two batches of 50 creates
        begins = start + timedelta(days=n // 4, hours=2 * (n % 4))
        store.add_action("alice", EventData(begins, begins + timedelta(hours=1), "Europe/Paris",
                                            subject=f"RDV {n}"))
    fake = HoldingGoogle(hold_at=2)
    with connected_google(store, ["alice"], tmp_path / "tokens", fake) as (_, calendars, env):
        env = {"GESTAN_BRIDGE_DB": url, **env}
        child = subprocess.Popen([script(), "sync", "close", "--user", "alice"],
                                 env={**os.environ, **env},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert fake.arrived.wait(60), "the close never sent its second batch"
            child.kill()
            assert child.wait(10) == -signal.SIGKILL
        finally:
            fake.release.set()
        assert fake.applied.wait(10)
        assert sum(live_summaries(fake, calendars["alice"]).values()) == 100, \
            "two batches reached Google, the second unanswered"
        rerun = invoke(env, "sync", "close", "--user", "alice")
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert live_summaries(fake, calendars["alice"]) == {f"RDV {n}": 1 for n in range(100)}
        again = invoke(env, "sync", "open", "--user", "alice")
        assert again.returncode == 0, again.stderr
    runs = store.sync_runs(alice.id)
    assert [r.status for r in runs[:3]] == ["ok", "ok", "interrupted"], runs
    killed = runs[2]
    assert killed.counts["remote"]["created"] >= 50, "what the killed run did is kept"
    assert runs[0].counts["gestan"]["created"] == 0, "the open pulled nothing back"
    assert len(store.agenda("alice")) == 100
