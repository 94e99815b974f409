"""Load: phones hammering a running server while Gestan's hooks sync it with Google.

Each phone is a thread with its own HTTP session, logged in as one of the users, working on
its own appointments (its own hrefs and UIDs): it reads them (GET), edits them with
``If-Match`` (a 412 makes it read the item again, as a phone does), creates and deletes
some, and asks for changes with its sync token (sync-collection). Meanwhile one thread
triggers ``POST /bridge/sync/close`` then ``open`` for each user in turn, and another edits
events in Google (as the user would on another device), so that opens pull changes into
appointments the phones are writing.

Every acknowledged write is then looked for: the appointment as the phone last wrote it,
or its version in the audit log (a conflict an open decided for Google keeps the losing
version there); an acknowledged DELETE, the appointment gone (or its revival logged).
Every bound is explicit: the number of phones, the seconds, the appointments per phone.
"""

from __future__ import annotations

import random
import re
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

import requests
from sqlalchemy import text

from bridge.store import Store

EXPECTED = {"read": {200}, "update": {204, 412}, "create": {201}, "delete": {200, 204, 412},
            "sync-collection": {207}}
WEIGHTS = {"read": 40, "update": 30, "create": 8, "delete": 7, "sync-collection": 15}
SYNC_REPORT = (b'<?xml version="1.0" encoding="utf-8"?><sync-collection xmlns="DAV:">'
               b"<sync-token>%s</sync-token><sync-level>1</sync-level><prop><getetag/></prop>"
               b"</sync-collection>")
TOKEN = re.compile(rb"<sync-token>([^<]*)</sync-token>")
SEED_ITEMS = 2       # appointments each phone creates before the clock starts
MAX_ITEMS = 40       # a phone stops creating past this many live appointments


PARIS = ("BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\n"
         "TZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\n"
         "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\n"
         "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\n"
         "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n")


def event(uid: str, summary: str, day: date, hour: int) -> bytes:
    """An appointment as phones write it: its zone's VTIMEZONE included (without one,
    Radicale's vobject computes the zone's transitions, ten times the rest of a PUT)."""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//gestan-bridge load//EN\r\n" + PARIS
            + f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261201T000000Z\r\n"
            f"DTSTART;TZID=Europe/Paris:{day:%Y%m%d}T{hour:02d}0000\r\n"
            f"DTEND;TZID=Europe/Paris:{day:%Y%m%d}T{hour:02d}4500\r\n"
            f"SUMMARY:{summary}\r\nLOCATION:Agence {hour}\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n").encode()


@dataclass
class Sample:
    op: str
    status: int          # 0: no answer (connection error, timeout)
    seconds: float


@dataclass
class Written:
    """A phone's last acknowledged write of one href: its summary, or None (deleted)."""

    uid: str
    summary: str | None


class Phone(threading.Thread):
    def __init__(self, run: LoadRun, index: int, login: str, password: str) -> None:
        super().__init__(name=f"phone-{index}", daemon=True)
        self.run_, self.index, self.login = run, index, login
        self.rng = random.Random(f"{run.seed}:phone:{index}")
        self.session = requests.Session()
        self.session.auth = (login, password)
        self.base = f"{run.base_url}{login}/rendez-vous/"
        self.samples: list[Sample] = []
        self.login_seconds: float | None = None
        self.etags: dict[str, str] = {}          # live hrefs and their etags, as known
        self.written: dict[str, Written] = {}
        self.unexpected: list[str] = []
        self.token = b""
        self.created = 0
        self.version = 0

    # ------------------------------------------------------------ requests
    def _request(self, op: str, method: str, href: str = "", **kwargs) -> requests.Response | None:
        started = time.perf_counter()
        try:
            answer = self.session.request(method, self.base + href, timeout=30, **kwargs)
        except requests.RequestException as exc:
            self.samples.append(Sample(op, 0, time.perf_counter() - started))
            self.unexpected.append(f"{op} {href}: {type(exc).__name__}")
            return None
        self.samples.append(Sample(op, answer.status_code, time.perf_counter() - started))
        if answer.status_code not in EXPECTED[op]:
            self.unexpected.append(f"{op} {href}: {answer.status_code} {answer.text[:120]!r}")
        return answer

    def _summary(self, href: str) -> str:
        self.version += 1
        return f"{self.login} p{self.index} {href} v{self.version}"

    def create(self) -> None:
        self.created += 1
        href = f"p{self.index}-{self.created}.ics"
        uid = f"load-{self.login}-p{self.index}-{self.created}"
        summary = self._summary(href)
        day = self.run_.first_day + timedelta(days=self.rng.randrange(60))
        body = event(uid, summary, day, 8 + self.rng.randrange(10))
        answer = self._request("create", "PUT", href, data=body,
                               headers={"If-None-Match": "*", "Content-Type": "text/calendar"})
        if answer is not None and answer.status_code == 201:
            self.etags[href] = answer.headers.get("ETag", "")
            self.written[href] = Written(uid, summary)

    def update(self, href: str) -> None:
        uid = self.written[href].uid
        summary = self._summary(href)
        day = self.run_.first_day + timedelta(days=self.rng.randrange(60))
        body = event(uid, summary, day, 8 + self.rng.randrange(10))
        answer = self._request("update", "PUT", href, data=body, headers={
            "If-Match": self.etags[href], "Content-Type": "text/calendar"})
        if answer is None:
            return
        if answer.status_code == 204:
            self.etags[href] = answer.headers.get("ETag", "")
            self.written[href] = Written(uid, summary)
        elif answer.status_code == 412:
            self.read(href)

    def read(self, href: str) -> None:
        answer = self._request("read", "GET", href)
        if answer is not None and answer.status_code == 200:
            self.etags[href] = answer.headers.get("ETag", "")

    def delete(self, href: str) -> None:
        answer = self._request("delete", "DELETE", href, headers={"If-Match": self.etags[href]})
        if answer is None:
            return
        if answer.status_code in (200, 204):
            del self.etags[href]
            self.written[href] = Written(self.written[href].uid, None)
        elif answer.status_code == 412:
            self.read(href)

    def sync_collection(self) -> None:
        answer = self._request("sync-collection", "REPORT", data=SYNC_REPORT % self.token,
                               headers={"Depth": "1", "Content-Type": "application/xml"})
        if answer is not None and answer.status_code == 207:
            found = TOKEN.search(answer.content)
            self.token = found.group(1) if found else b""

    # ------------------------------------------------------------ the phone's life
    def warm_up(self) -> None:
        """Log in (timed apart: the first request pays the password check), then make a
        few appointments to work on."""
        started = time.perf_counter()
        try:
            answer = self.session.request("PROPFIND", self.base, headers={"Depth": "0"},
                                          timeout=60)
            self.login_seconds = time.perf_counter() - started
            if answer.status_code != 207:
                self.unexpected.append(f"login: {answer.status_code}")
        except requests.RequestException as exc:
            self.unexpected.append(f"login: {type(exc).__name__}")
        for _ in range(SEED_ITEMS):
            self.create()
        self.samples.clear()

    def run(self) -> None:
        self.warm_up()
        self.run_.started.wait()
        ops, weights = zip(*WEIGHTS.items(), strict=True)
        first = ops[self.index % len(ops)]  # every kind of request is made, however short the run
        while time.monotonic() < self.run_.deadline:
            op, first = first or self.rng.choices(ops, weights)[0], None
            live = sorted(self.etags)
            if op in ("read", "update", "delete") and not live or (
                    op == "create" and len(live) >= MAX_ITEMS):
                op = "create" if len(live) < MAX_ITEMS else "read"
            if op == "create":
                self.create()
            elif op == "sync-collection":
                self.sync_collection()
            else:
                getattr(self, op)(self.rng.choice(live))
        self.session.close()


@dataclass
class SyncCall:
    login: str
    direction: str
    status: int
    seconds: float
    outcome: str = ""


class LoadRun:
    """``phones`` phones over ``users`` for ``seconds``, with syncs and Google edits."""

    def __init__(self, base_url: str, store: Store, passwords: dict[str, str], phones: int,
                 seconds: float, *, google=None, calendars: dict[str, str] | None = None,
                 seed: int = 12, remote_edit_every: float = 0.25) -> None:
        self.base_url, self.store, self.passwords = base_url, store, passwords
        self.seconds, self.seed = seconds, seed
        self.google, self.calendars = google, calendars or {}
        self.remote_edit_every = remote_edit_every
        self.first_day = date.today() + timedelta(days=2)
        logins = sorted(passwords)
        self.phones = [Phone(self, n, logins[n % len(logins)], passwords[logins[n % len(logins)]])
                       for n in range(phones)]
        self.started = threading.Event()
        self.deadline = float("inf")
        self.syncs: list[SyncCall] = []
        self.remote_edits = 0
        self.wall = 0.0

    def _sync_forever(self) -> None:
        session = requests.Session()
        logins = sorted(self.calendars)
        n = 0
        while time.monotonic() < self.deadline and logins:
            login = logins[n % len(logins)]
            n += 1
            for direction in ("close", "open"):
                started = time.perf_counter()
                try:
                    answer = session.post(f"{self.base_url}bridge/sync/{direction}",
                                          auth=(login, self.passwords[login]), timeout=120)
                    payload = answer.json()
                    status, outcome = answer.status_code, payload.get("status", "")
                    if status == 409:  # stopped: why, in the figures (counts as N)
                        why = re.sub(r"\d+", "N", str(payload.get("error", "")))
                        parts = why.split(": ")  # "<target>: <why>: <what to do>"
                        outcome += f" ({parts[min(1, len(parts) - 1)][:60]})"
                except (requests.RequestException, ValueError) as exc:
                    status, outcome = 0, type(exc).__name__
                self.syncs.append(SyncCall(login, direction, status,
                                           time.perf_counter() - started, outcome))

    def _edit_google_forever(self) -> None:
        rng = random.Random(f"{self.seed}:google")
        k = 0
        while time.monotonic() < self.deadline:
            time.sleep(self.remote_edit_every)
            login = rng.choice(sorted(self.calendars))
            live = [e for e in self.google.events(self.calendars[login], include_cancelled=False)
                    if e.get("status") != "cancelled"]
            if not live:
                continue
            k += 1
            chosen = rng.choice(live)
            self.google.patch_event(self.calendars[login], chosen["id"],
                                    {"summary": f"Modifié dans Google {k}"})
            self.remote_edits += 1

    def run(self) -> LoadReport:
        for phone in self.phones:
            phone.start()
        helpers = []
        if self.calendars:
            helpers.append(threading.Thread(target=self._sync_forever, daemon=True))
            if self.google is not None:
                helpers.append(threading.Thread(target=self._edit_google_forever, daemon=True))
        # every phone logged in and seeded before the clock starts
        while any(p.is_alive() and p.login_seconds is None for p in self.phones):
            time.sleep(0.01)
        while any(p.is_alive() and len(p.written) < SEED_ITEMS and not p.unexpected
                  for p in self.phones):
            time.sleep(0.01)
        self.deadline = time.monotonic() + self.seconds
        started = time.perf_counter()
        self.started.set()
        for helper in helpers:
            helper.start()
        for thread in [*self.phones, *helpers]:
            thread.join(self.seconds + 180)
        self.wall = time.perf_counter() - started
        return LoadReport(self, verify(self.store, self.phones))


def verify(store: Store, phones: list[Phone]) -> tuple[list[str], Counter]:
    """Every acknowledged write found: (what is missing, how each was found).

    An appointment's last acknowledged version is in the store, or the audit log names it:
    as the losing version of a conflict an open decided for Google, or as what a close
    pushed to Google before someone changed it there (a later open then brought that
    change). An acknowledged deletion: the appointment gone, or brought back by an open
    (a change in Google beats a deletion in Gestan), which the audit log says."""
    logged: dict[str, list[tuple[str, str, str, str]]] = {}
    with store.reading() as conn:
        for uid, change, side, summary, losing in conn.execute(text(
                "SELECT uid, change, side, summary, losing_ics FROM sync_run_items")):
            logged.setdefault(uid, []).append((change, side, summary or "", losing or ""))
    missing, found = [], Counter()
    for phone in phones:
        user = store.require_user(phone.login)
        for href, written in phone.written.items():
            stored = store.calendar_object(user.id, href)
            items = logged.get(written.uid, [])
            if written.summary is None:
                if stored is None:
                    found["deleted as asked"] += 1
                elif any(side == "gestan" and change in ("create", "conflict")
                         for change, side, _, _ in items):
                    found["deleted, brought back by an open (logged)"] += 1
                else:
                    missing.append(f"{phone.login}/{href}: deleted, but still there")
            elif stored is not None and written.summary in (stored.ics or ""):
                found["as written"] += 1
            elif any(written.summary in losing for _, _, _, losing in items):
                found["losing version of a conflict (logged)"] += 1
            elif any(side != "gestan" and written.summary in summary
                     for _, side, summary, _ in items):
                found["pushed, then changed in Google (logged)"] += 1
            else:
                now = "gone" if stored is None else "another version"
                missing.append(f"{phone.login}/{href}: {written.summary!r} lost ({now})")
    return missing, found


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


@dataclass
class LoadReport:
    run: LoadRun
    verification: tuple[list[str], Counter]
    samples: list[Sample] = field(init=False)

    def __post_init__(self) -> None:
        self.samples = [s for p in self.run.phones for s in p.samples]

    @property
    def requests(self) -> int:
        return len(self.samples)

    def latencies(self, op: str | None = None) -> list[float]:
        return [s.seconds for s in self.samples if op is None or s.op == op]

    def by_status(self) -> Counter:
        return Counter(s.status for s in self.samples)

    def server_errors(self) -> int:
        return sum(1 for s in self.samples if s.status >= 500 or s.status == 0) + sum(
            1 for c in self.run.syncs if c.status >= 500 or c.status == 0)

    def logins(self) -> list[float]:
        return [p.login_seconds for p in self.run.phones if p.login_seconds is not None]

    def unexpected(self) -> list[str]:
        return [f"{p.name}: {u}" for p in self.run.phones for u in p.unexpected]

    def sync_outcomes(self) -> Counter:
        return Counter(f"{c.direction} {c.status} {c.outcome}" for c in self.run.syncs)

    def figures(self) -> dict:
        """The run in numbers (seconds), for tables and JSON."""
        all_ = self.latencies()
        per_op = {op: {"requests": len(v), "p50": percentile(v, 0.5), "p99": percentile(v, 0.99)}
                  for op in WEIGHTS if (v := self.latencies(op))}
        syncs = [c.seconds for c in self.run.syncs]
        return {"phones": len(self.run.phones), "seconds": round(self.run.wall, 1),
                "requests": self.requests, "per_second": self.requests / max(self.run.wall, 1e-9),
                "p50": percentile(all_, 0.5), "p99": percentile(all_, 0.99),
                "max": max(all_, default=0.0), "per_op": per_op,
                "statuses": dict(sorted(self.by_status().items())),
                "server_errors": self.server_errors(),
                "first_login_p50": percentile(self.logins(), 0.5),
                "first_login_max": max(self.logins(), default=0.0),
                "syncs": dict(sorted(self.sync_outcomes().items())),
                "sync_p50": percentile(syncs, 0.5), "sync_max": max(syncs, default=0.0),
                "google_edits": self.run.remote_edits,
                "writes_found": dict(self.verification[1]),
                "writes_lost": len(self.verification[0])}

    def failures(self, p99_limit: float | None = 1.0) -> list[str]:
        """Every wrong answer (empty: the run passed)."""
        lines = list(self.unexpected())
        lines += [f"sync {c.direction} of {c.login}: {c.status} {c.outcome}"
                  for c in self.run.syncs if c.status not in (200, 207, 409)]
        lines += self.verification[0]
        if self.requests == 0:
            lines.append("no request was made")
        p99 = percentile(self.latencies(), 0.99)
        if p99_limit is not None and p99 > p99_limit:
            lines.append(f"p99 {p99 * 1000:.0f} ms > {p99_limit * 1000:.0f} ms")
        return lines
