"""Logins resist guessing (issue 12): the same cost for unknown and known users, a limit of
failures per login (and per address for unknown logins) on CalDAV and the sync triggers
alike, logged, without locking out the other users behind one address; fifty phones logging
in at once pay one bcrypt check."""

from __future__ import annotations

import logging
import threading

import bcrypt
import pytest
import requests

from bridge.store.users import LoginGuard


@pytest.fixture
def checks(monkeypatch):
    """Counts bcrypt checks (the library's function, wrapped: our code is untouched)."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_an_unknown_login_costs_a_bcrypt_check_as_a_known_one_does(store, checks):
    assert store.authenticate("nobody", "guess", "10.0.0.1") is None
    assert store.authenticate("alice", "guess", "10.0.0.1") is None
    assert len(checks) == 2, "one check each: the answer takes as long"


def test_guessing_one_login_is_stopped_and_logged_others_keep_working(store, caplog):
    caplog.set_level(logging.INFO, logger="gestan_bridge")
    for _ in range(10):
        assert store.authenticate("alice", "wrong", "203.0.113.9") is None
    assert store.authenticate("alice", "alice", "198.51.100.7") is None, \
        "past the limit even the right password waits (from anywhere)"
    assert "too many failed logins" in caplog.text
    assert store.authenticate("bob", "bob", "203.0.113.9") is not None, "same address, bob"


def test_unknown_logins_from_one_address_are_stopped_the_office_keeps_working(store):
    for n in range(20):
        assert store.authenticate(f"guess{n}", "x", "203.0.113.9") is None
    assert store.authenticate("guess99", "x", "203.0.113.9") is None
    assert store.authenticate("alice", "alice", "203.0.113.9") is not None
    assert store.authenticate("carol", "carol-secret", "203.0.113.9") is not None


def test_the_limit_passes_with_time():
    now = [0.0]
    guard = LoginGuard(per_login=3, window=60, clock=lambda: now[0])
    for _ in range(3):
        guard.failed("alice", "a", known=True)
    assert guard.blocked("alice", "a", known=True) == pytest.approx(60)
    now[0] = 61
    assert guard.blocked("alice", "a", known=True) is None
    guard.failed("alice", "a", known=True)
    guard.succeeded("alice")
    assert guard.blocked("alice", "a", known=True) is None


def test_fifty_logins_at_once_pay_one_bcrypt_check(store, checks):
    barrier = threading.Barrier(50)
    results = []

    def login() -> None:
        barrier.wait()
        results.append(store.authenticate("alice", "alice", "10.0.0.2"))

    threads = [threading.Thread(target=login) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 50 and all(r is not None for r in results)
    assert len(checks) == 1, "single flight: the others found the first check cached"


def test_caldav_and_the_triggers_share_the_limit(server):
    url = server.calendar_url("alice")
    for _ in range(5):
        assert requests.get(url, auth=("alice", "wrong")).status_code == 401
    for _ in range(5):
        assert requests.post(f"{server.url}bridge/sync/open", auth=("alice", "wrong"),
                             timeout=10).status_code == 401
    assert requests.get(url, auth=("alice", "alice")).status_code == 401, "the eleventh"
    assert requests.get(server.calendar_url("bob"), auth=("bob", "bob")).status_code == 200
