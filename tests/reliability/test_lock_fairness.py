"""Found by the load run: the storage's lock let a stream of readers hold writers off for as
long as it lasted (phones' PUTs timed out after 30 s while other phones kept reading). A
writer now waits only for the readers that came before it."""

from __future__ import annotations

import threading
import time

from plugins.storage import _RWLock


def test_a_stream_of_readers_does_not_starve_a_writer():
    lock = _RWLock()
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
    lock = _RWLock()
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
    lock = _RWLock()
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
