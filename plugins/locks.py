"""The storage plugin's locks: one reader-writer lock per calendar owner, and the turns that
bound how many requests are worked on at once."""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Iterator


class RWLock:
    """Many readers or one writer: Radicale checks preconditions, then writes.

    Admitted in arrival order (tickets), readers that come together sharing the lock: a
    writer waits only for those before it, never for an endless stream of readers (under
    load, phones' PUTs used to time out while other phones kept reading). A thread already
    reading reads again at once (it must not queue behind a writer waiting for it)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._next_ticket = 0
        self._serving = 0        # the oldest ticket not admitted yet
        self._reading = threading.local()

    @contextlib.contextmanager
    def acquire(self, mode: str) -> Iterator[None]:
        nested = mode == "r" and getattr(self._reading, "depth", 0) > 0
        with self._cond:
            if nested:
                self._readers += 1
            else:
                ticket = self._next_ticket
                self._next_ticket += 1
                if mode == "r":
                    self._cond.wait_for(lambda: self._serving == ticket and not self._writer)
                    self._readers += 1
                else:
                    self._cond.wait_for(lambda: self._serving == ticket and not self._writer
                                        and self._readers == 0)
                    self._writer = True
                self._serving += 1
                self._cond.notify_all()
        if mode == "r":
            self._reading.depth = getattr(self._reading, "depth", 0) + 1
        try:
            yield
        finally:
            if mode == "r":
                self._reading.depth -= 1
            with self._cond:
                if mode == "r":
                    self._readers -= 1
                else:
                    self._writer = False
                self._cond.notify_all()


class Turns:
    """At most ``size`` requests worked on at once, the others served in arrival order.

    One Python process computes on one core at a time: fifty requests worked on together
    each take fifty times their own time, a long PUT as long as fifty, and a phone's answer
    depends on which others it met. Taking turns keeps the total the same and makes each
    wait the queue's length: short and even (fifty phones with syncs running, PostgreSQL: p99
    4.4 s before, 0.8 s after, README's Reliability). A few at once, not one: a request
    waiting for its database lets another compute.
    Turns are taken once a request has its calendar's lock, so that a turn is never spent
    waiting for a lock; a thread already holding one holds it again at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._guard = threading.Lock()
        self._active = 0
        self._waiting: collections.deque[threading.Lock] = collections.deque()
        self._held = threading.local()

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        depth = getattr(self._held, "depth", 0)
        if self.size <= 0 or depth:
            self._held.depth = depth + 1
            try:
                yield
            finally:
                self._held.depth = depth
            return
        self._take()
        self._held.depth = 1
        try:
            yield
        finally:
            self._held.depth = 0
            self._give_back()

    def _take(self) -> None:
        with self._guard:
            if self._active < self.size and not self._waiting:
                self._active += 1
                return
            handed = threading.Lock()
            handed.acquire()
            self._waiting.append(handed)
        handed.acquire()  # released by the request whose turn passes to this one

    def _give_back(self) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()  # the turn passes on: still as many active
            else:
                self._active -= 1
