"""Load (issue 12), at CI size: phones reading, editing with If-Match, creating, deleting and
syncing (sync-collection) while Gestan's hooks run Google syncs and Google edits what they
write; on SQLite and PostgreSQL. No 5xx, every acknowledged write found, p99 ≤ 1 s once
logged in. Full size (50 phones, 60 s): ``python -m bench.reliability_bench --part load``.

The 1-second p99 is the full run's target, measured by the bench; here, on a CI machine
shared with other jobs and a server sharing this process's interpreter with the phones, the
bound is 3 s: it still catches a request stalled behind a sync (a lock held for a run)."""

from __future__ import annotations

from tests.reliability.google import connected_google
from tests.reliability.load import SEED_ITEMS, LoadRun, percentile

PHONES, SECONDS, USERS = 8, 1.5, 4
CI_P99 = 3.0


def test_phones_and_syncs_at_once(server, tmp_path, monkeypatch):
    passwords = {f"user{n}": f"pw-{n}-load" for n in range(USERS)}
    for login, password in passwords.items():
        server.store.add_user(login, password)
    with connected_google(server.store, sorted(passwords), tmp_path / "tokens") as (
            fake, calendars, env):
        for name, value in env.items():  # the server runs in this process
            monkeypatch.setenv(name, value)
        run = LoadRun(server.url, server.store, passwords, PHONES, SECONDS, google=fake,
                      calendars=calendars)
        report = run.run()
    assert report.failures(p99_limit=CI_P99) == [], (
        f"p50 {percentile(report.latencies(), 0.5):.3f} s, "
        f"p99 {percentile(report.latencies(), 0.99):.3f} s, {report.by_status()}")
    assert all(phone.samples for phone in run.phones), "every phone worked"
    assert {s.op for s in report.samples} == {"read", "update", "create", "delete",
                                              "sync-collection"}
    assert any(c.direction == "open" and c.status == 200 for c in run.syncs), "syncs ran"
    missing, found = report.verification
    assert found["as written"] > 0 and sum(found.values()) >= PHONES * SEED_ITEMS
