"""What one request costs the server: CPU seconds per request, gestan-bridge beside stock
Radicale 3.9, both on this machine in one run.

A phone's requests are made one at a time (``--n`` of each kind, after ``--items``
appointments are loaded) and each server process's CPU time (``/proc/PID/stat``, user +
system) is read before and after: what the server spent, whatever else the machine is doing,
so the ratio holds on a busy machine. The appointments are the load test's (an Europe/Paris
VTIMEZONE in each, as iOS, DAVx5 and Thunderbird send them). Every answer is checked; a
wrong one stops the run with exit code 1.

    create   PUT If-None-Match: *            update   PUT If-Match
    get      GET of one appointment          sync     sync-collection after one change
    ctag     PROPFIND Depth 0 getctag        delete   DELETE If-Match

Usage: ``python -m bench.request_cost [--n 200] [--items 200] [--postgresql]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.caldav_bench import (  # noqa: E402
    CALENDAR,
    BenchError,
    ServerProcess,
    new_session,
    start_ours,
    start_stock,
)
from tests.reliability.load import SYNC_REPORT, TOKEN, event  # noqa: E402

KINDS = ("create", "update", "get", "sync", "ctag", "delete")
CTAG = (b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:" '
        b'xmlns:CS="http://calendarserver.org/ns/"><prop><CS:getctag/><sync-token/></prop>'
        b"</propfind>")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Phone:
    """One phone's requests against one server, each answer checked."""

    def __init__(self, server: ServerProcess, day: date) -> None:
        self.server, self.day = server, day
        self.session = new_session()
        self.base = server.url + CALENDAR
        self.etags: dict[int, str] = {}
        self.token = b""

    def _expect(self, answer, *statuses: int):
        if answer.status_code not in statuses:
            raise BenchError(f"{self.server.name}: {answer.request.method} {answer.url}: "
                             f"{answer.status_code} {answer.text[:200]!r}")
        return answer

    def create(self, i: int) -> None:
        answer = self._expect(self.session.put(
            self.base + f"c{i}.ics", data=event(f"cost-{i}", f"rdv {i}", self.day, 9),
            headers={"If-None-Match": "*", "Content-Type": "text/calendar"}), 201)
        self.etags[i] = answer.headers.get("ETag") or self._etag(i)

    def update(self, i: int) -> None:
        answer = self._expect(self.session.put(
            self.base + f"c{i}.ics", data=event(f"cost-{i}", f"rdv {i} bis", self.day, 10),
            headers={"If-Match": self.etags[i], "Content-Type": "text/calendar"}), 204)
        self.etags[i] = answer.headers.get("ETag") or self._etag(i)

    def _etag(self, i: int) -> str:
        return self._expect(self.session.head(self.base + f"c{i}.ics"), 200).headers["ETag"]

    def get(self, i: int) -> None:
        self._expect(self.session.get(self.base + f"c{i}.ics"), 200)

    def sync(self, i: int) -> None:
        answer = self._expect(self.session.request(
            "REPORT", self.base, data=SYNC_REPORT % self.token,
            headers={"Depth": "1", "Content-Type": "application/xml"}), 207)
        found = TOKEN.search(answer.content)
        self.token = found.group(1) if found else b""

    def ctag(self, i: int) -> None:
        self._expect(self.session.request("PROPFIND", self.base, data=CTAG, headers={
            "Depth": "0", "Content-Type": "application/xml"}), 207)

    def delete(self, i: int) -> None:
        self._expect(self.session.delete(self.base + f"c{i}.ics",
                                         headers={"If-Match": self.etags[i]}), 200, 204)


def measure(phone: Phone, kind: str, n: int) -> float:
    """Server CPU milliseconds per request of ``kind``, over ``n`` requests."""
    pid = phone.server.proc.pid
    work: Callable[[int], None] = getattr(phone, kind)
    before = cpu_seconds(pid)
    for i in range(n):
        work(i)
    return (cpu_seconds(pid) - before) / n * 1000


def run(args: argparse.Namespace, console: Console) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="request-cost-"))
    pg = None
    if args.postgresql:
        from tests.pgserver import PostgresServer, available

        if reason := available():
            raise BenchError(f"PostgreSQL: {reason}")
        pg = PostgresServer().start()
        db_url = pg.create_database()
    else:
        db_url = f"sqlite:///{workdir / 'cost.db'}"
    (workdir / "ours").mkdir()
    (workdir / "stock").mkdir()
    servers = {"ours": start_ours(workdir / "ours", db_url),
               "stock": start_stock(workdir / "stock")}
    day = date.today() + timedelta(days=3)
    results: dict[str, dict[str, float]] = {}
    try:
        for name, server in servers.items():
            phone = Phone(server, day)
            phone.ctag(0)  # logged in
            for i in range(args.items):  # the calendar the requests meet
                phone.create(100_000 + i)
            results[name] = {}
            for kind in KINDS:
                results[name][kind] = sync_cost(phone, args.n) if kind == "sync" else \
                    measure(phone, kind, args.n)
            server.check_alive()
    finally:
        for server in servers.values():
            server.stop()
        if pg is not None:
            pg.stop()
    return results


def sync_cost(phone: Phone, n: int) -> float:
    """An incremental sync-collection after one change, the change's own PUT left out."""
    pid = phone.server.proc.pid
    phone.sync(0)
    spent = 0.0
    for i in range(n):
        phone.update(i)
        before = cpu_seconds(pid)
        phone.sync(i)
        spent += cpu_seconds(pid) - before
    return spent / n * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.request_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="requests of each kind (≤ 5000)")
    parser.add_argument("--items", type=int, default=200,
                        help="appointments loaded first (≤ 20000)")
    parser.add_argument("--postgresql", action="store_true",
                        help="ours on PostgreSQL (started by tests/pgserver.py)")
    args = parser.parse_args(argv)
    console = Console()
    if not (1 <= args.n <= 5000 and 0 <= args.items <= 20000):
        console.print("--n must be 1 to 5000 and --items 0 to 20000")
        return 2
    started = time.perf_counter()
    try:
        results = run(args, console)
    except BenchError as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    table = Table(title=f"Server CPU per request, ms ({args.n} of each, {args.items} "
                  f"appointments in the calendar, ours on "
                  f"{'PostgreSQL' if args.postgresql else 'SQLite'})", title_justify="left")
    for column in ("request", "ours", "stock Radicale", "ours/stock"):
        table.add_column(column, justify="left" if column == "request" else "right")
    for kind in KINDS:
        ours, stock = results["ours"][kind], results["stock"][kind]
        table.add_row(kind, f"{ours:.2f}", f"{stock:.2f}",
                      f"{ours / stock:.2f}" if stock else "-")
    console.print(table)
    console.print(f"total {time.perf_counter() - started:.0f} s, load average "
                  f"{os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
