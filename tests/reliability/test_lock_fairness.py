"""Found by the load run: the storage's lock let a stream of readers hold writers off for as
long as it lasted (phones' PUTs timed out after 30 s while other phones kept reading). A
writer now waits only for the readers that came before it."""

from __future__ import annotations

import threading
import time

import pytest

from plugins.locks import RWLock, Turns


def test_a_stream_of_readers_does_not_starve_a_writer():
    lock = RWLock()
    stop = threading.Event()

    def read_forever() -> None:  # overlapping readers: the lock is never free of them
        while not stop.is_set():
            with lock.acquire("r"):
                time.sleep(0.02)

    readers = [threading.Thread(target=read_forever, daemon=True) for _ in range(4)]
    for n, reader in enumerate(readers):
        reader.start()
        time.sleep(0.005 * n)
    time.sleep(0.05)
    waited = []

    def write() -> None:
        started = time.monotonic()
        with lock.acquire("w"):
            waited.append(time.monotonic() - started)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(2)
    stop.set()
    for reader in readers:
        reader.join(2)
    assert waited and waited[0] < 0.5, "the writer got the lock behind the readers before it"


def test_readers_still_share_the_lock():
    lock = RWLock()
    inside, most = [0], [0]
    guard = threading.Lock()

    def read() -> None:
        with lock.acquire("r"):
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with guard:
                inside[0] -= 1

    threads = [threading.Thread(target=read) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert most[0] == 5


def test_a_reader_reads_again_while_a_writer_waits_for_it():
    lock = RWLock()
    writer_waiting = threading.Event()
    done = []

    def write() -> None:
        writer_waiting.set()
        with lock.acquire("w"):
            done.append("w")

    with lock.acquire("r"):
        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        writer_waiting.wait(2)
        time.sleep(0.05)
        with lock.acquire("r"):  # would deadlock if it queued behind the writer
            done.append("r")
    writer.join(2)
    assert done == ["r", "w"]


@pytest.mark.parametrize("size", [1, 2])
def test_requests_take_turns_in_arrival_order_and_never_more_at_once(size):
    """Found by the load run: fifty requests worked on together shared one core, each
    taking fifty times its own time, the long ones longest (p99 1.9 s for a p50 of 0.3 s)."""
    turns = Turns(size)
    inside, most, order = [0], [0], []
    guard = threading.Lock()
    release = threading.Event()

    def request(n: int) -> None:
        with turns.turn():
            with guard:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                order.append(n)
            release.wait(5)
            with turns.turn():  # a turn held is held again at once (no deadlock)
                pass
            with guard:
                inside[0] -= 1

    threads = []
    for n in range(8):  # arrivals one after the other: each queued before the next comes
        thread = threading.Thread(target=request, args=(n,))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and len(order) + len(turns._waiting) < n + 1:
            time.sleep(0.001)
    assert order == list(range(size)) and len(turns._waiting) == 8 - size
    release.set()
    for thread in threads:
        thread.join(5)
    assert most[0] == size
    if size == 1:  # (two let in together may record themselves in either order)
        assert order == list(range(8))
    else:
        assert sorted(order) == list(range(8))


def test_requests_at_once_is_the_servers_setting(tmp_path):
    from bridge import radicale_compat as compat
    from bridge.caldav_app import GestanApplication
    from bridge.server import load_configuration

    conf = tmp_path / "radicale.conf"
    conf.write_text("[gestan]\nrequests_at_once = 3\n")
    app = GestanApplication(load_configuration(conf, f"sqlite:///{tmp_path / 'c.db'}"))
    assert compat.storage(app).turns.size == 3
    conf.write_text("[gestan]\nrequests_at_once = many\n")
    from bridge.config import ConfigError

    try:
        load_configuration(conf, f"sqlite:///{tmp_path / 'c.db'}")
    except ConfigError as exc:
        assert "requests_at_once" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("a wrong requests_at_once was accepted")
