"""Crashes: the server killed (SIGKILL) while phones PUT, then restarted; a `gestan-bridge
sync close` process killed while a batch of creates is in flight at Google, then run again.

The sync killed at *every* request of a two-way run, in process, is already covered for each
target: ``tests/test_sync_google.py::test_crash_at_each_request_then_rerun_converges``,
``tests/test_sync_ews.py::test_a_crash_at_each_request_then_reruns_end_the_same``,
``tests/test_sync_graph.py::test_a_crash_at_each_request_then_a_rerun_ends_the_same`` and,
for the in-memory target and every other, ``tests/test_target_contract.py::
test_a_close_crashed_after_the_remote_created_makes_no_duplicate``. What only a real process
shows is here: the lock of a dead process, the run it left, the answer it never read.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

import requests

from tests.fakes.google_calendar import FakeGoogleCalendar
from tests.reliability.load import event

MULTIGET = (b'<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav"><prop><getetag/><C:calendar-data/>'
            b"</prop>%s</C:calendar-multiget>")
RESPONSE = re.compile(rb"<response>(.*?)</response>", re.S)


@dataclass
class PutRecord:
    acked: dict[str, str] = field(default_factory=dict)    # href -> summary, answered 201
    attempted: int = 0
    errors: Counter = field(default_factory=Counter)        # how the unanswered ones ended


def puts_until_killed(base_url: str, login: str, password: str, writers: int,
                      kill: Callable[[], None], after_acks: int, timeout: float = 60,
                      prefix: str = "crash") -> PutRecord:
    """``writers`` phones PUT new appointments (``prefix-N.ics``) as fast as answered; once
    ``after_acks`` are acknowledged, ``kill()`` the server; each phone stops at its first
    PUT answered otherwise than 201 (or not at all)."""
    record = PutRecord()
    lock = threading.Lock()
    numbers = itertools.count()
    day = date.today() + timedelta(days=3)
    deadline = time.monotonic() + timeout

    def write() -> None:
        with requests.Session() as session:
            session.auth = (login, password)
            while time.monotonic() < deadline:
                n = next(numbers)
                href, summary = f"{prefix}-{n}.ics", f"Écrit avant le crash {prefix} n°{n}"
                body = event(f"{prefix}-{n}", summary, day + timedelta(days=n % 50), 8 + n % 10)
                with lock:
                    record.attempted += 1
                try:
                    answer = session.put(f"{base_url}{login}/rendez-vous/{href}", data=body,
                                         headers={"Content-Type": "text/calendar"}, timeout=30)
                except requests.RequestException as exc:
                    with lock:
                        record.errors[type(exc).__name__] += 1
                    return
                if answer.status_code == 201:
                    with lock:
                        record.acked[href] = summary
                else:
                    with lock:
                        record.errors[str(answer.status_code)] += 1
                    return

    threads = [threading.Thread(target=write, daemon=True) for _ in range(writers)]
    for thread in threads:
        thread.start()
    while len(record.acked) < after_acks and time.monotonic() < deadline and any(
            t.is_alive() for t in threads):
        time.sleep(0.005)
    kill()
    for thread in threads:
        thread.join(60)
    return record


def missing_after_restart(base_url: str, login: str, password: str, acked: dict[str, str]
                          ) -> list[str]:
    """The acknowledged appointments a calendar-multiget of the restarted server does not
    serve as written."""
    missing = []
    hrefs = sorted(acked)
    with requests.Session() as session:
        session.auth = (login, password)
        for start in range(0, len(hrefs), 200):
            chunk = hrefs[start:start + 200]
            body = MULTIGET % b"".join(f"<href>/{login}/rendez-vous/{h}</href>".encode()
                                       for h in chunk)
            answer = session.request("REPORT", f"{base_url}{login}/rendez-vous/", data=body,
                                     headers={"Depth": "1", "Content-Type": "application/xml"},
                                     timeout=60)
            if answer.status_code != 207:
                return [f"multiget answered {answer.status_code}"]
            served = {}
            for part in RESPONSE.findall(answer.content):
                href = re.search(rb"<href>[^<]*/([^/<]+)</href>", part)
                if href and b"200 OK" in part:
                    served[href.group(1).decode()] = part.decode("utf-8", "replace")
            for href in chunk:
                if acked[href] not in served.get(href, ""):
                    missing.append(href)
    return missing


class HoldingGoogle(FakeGoogleCalendar):
    """The Google fake holding its ``hold_at``-th batch request until released: the
    syncing process can be killed while that request is in flight. Released, the batch is
    applied (Google committed it; the answer reaches no one)."""

    def __init__(self, hold_at: int) -> None:
        super().__init__()
        self.hold_at = hold_at
        self.batches = 0
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.applied = threading.Event()

    def start(self):
        started = super().start()
        # the held answer goes to a killed process: expected, not worth a traceback
        self._server.handle_error = lambda request, address: None
        return started

    def _handle_http(self, method, raw_path, headers, body):
        held = False
        if raw_path.startswith("/batch"):
            with self._lock:
                self.batches += 1
                held = self.batches == self.hold_at
        if held:
            self.arrived.set()
            self.release.wait(120)
        try:
            return super()._handle_http(method, raw_path, headers, body)
        finally:
            if held:
                self.applied.set()


def live_summaries(fake: FakeGoogleCalendar, calendar_id: str) -> Counter:
    return Counter(e.get("summary", "") for e in fake.events(calendar_id, include_cancelled=False))
