"""Reliability figures (issue 12): hostile input, access, load and crashes, against
`gestan-bridge serve` processes on 127.0.0.1, on SQLite and PostgreSQL.

    python -m bench.reliability_bench                      # everything, full size
    python -m bench.reliability_bench --part load --db postgresql --phones 50 --seconds 60

The checks are those of ``tests/reliability/`` (same code, CI size there); here they run at
full size and print tables. Any wrong answer (a 5xx, a broken answer, a refused request that
changed the store, a cell of the access table, a secret in the log, logins told apart by
time, a lost or duplicated write) is printed as ``BENCH FAILED: ...`` and the exit status is
1; a p99 over its target is printed MISS (exit 2 with ``--fail-on-miss``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.caldav_bench import BenchError, ServerProcess
from bridge.ical.model import EventData
from bridge.ical.timezones import now_utc
from bridge.store import Store, open_store

PARTS = ("hostile", "access", "load", "crash")
P99_TARGET = 1.0


class Bench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        self.failures: list[str] = []
        self.missed: list[str] = []
        self.results: dict = {}
        self.processes: list[ServerProcess] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="gestan-reliability-"))
        self.pg = None

    # ------------------------------------------------------------ plumbing
    def fail(self, part: str, lines: list[str]) -> None:
        for line in lines:
            self.failures.append(f"{part}: {line}")
            self.console.print(f"[bold red]BENCH FAILED:[/] {part}: {line}", markup=True,
                               highlight=False)

    def database(self, kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.workdir / name}.db"
        if self.pg is None:
            from tests.pgserver import PostgresServer, available

            if reason := available():
                raise BenchError(f"PostgreSQL: {reason}")
            self.pg = PostgresServer().start()
        return self.pg.create_database()

    def serve(self, db_url: str, name: str, env: dict[str, str] | None = None,
              log_level: str = "warning", auth_delay: float | None = None) -> ServerProcess:
        from tests.reliability.servers import CONFIG, config_file, start_process

        directory = self.workdir / name
        directory.mkdir(exist_ok=True)
        config = config_file(directory, auth_delay) if auth_delay is not None else CONFIG
        server = start_process(directory, db_url, env, log_level, config, name)
        self.processes.append(server)
        return server

    def table(self, title: str, columns: list[str], rows: list[list]) -> None:
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, justify="left" if column == columns[0] else "right")
        for row in rows:
            table.add_row(*[str(cell) for cell in row])
        self.console.print(table)

    def close(self) -> None:
        for server in self.processes:
            server.stop()
        if self.pg is not None:
            self.pg.stop()
        if not self.args.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ hostile input
    def hostile(self, db: str) -> None:
        from tests.reliability.hostile import run_hostile, store_fingerprint

        url = self.database(db, "hostile")
        store = open_store(url)
        store.add_user("alice", "alice-pw")
        store.add_user("bob", "bob-pw")
        server = self.serve(url, f"hostile-{db}")
        report = run_hostile(server.url + "/", "alice", "alice-pw",
                             lambda: store_fingerprint(store), self.args.mutations,
                             self.args.xml, seed=self.args.seed)
        server.check_alive()
        statuses = sorted(set(report.by_status("ical")) | set(report.by_status("xml")))
        rows = [[status, report.by_status("ical")[status], report.by_status("xml")[status]]
                for status in statuses]
        bare = report.without_reason()
        relayed = report.relayed()
        slowest = max(report.outcomes, key=lambda o: o.answer.seconds)
        rows += [["5xx", len([o for o in report.server_errors() if o.case.kind == "ical"]),
                  len([o for o in report.server_errors() if o.case.kind == "xml"])],
                 ["broken answers", len([o for o in report.broken() if o.case.kind == "ical"]),
                  len([o for o in report.broken() if o.case.kind == "xml"])],
                 ["refused but store changed",
                  len([o for o in report.store_violations() if o.case.kind == "ical"]),
                  len([o for o in report.store_violations() if o.case.kind == "xml"])],
                 ["refused without a reason", len([o for o in bare if o.case.kind == "ical"]),
                  len([o for o in bare if o.case.kind == "xml"])],
                 ["refused with vobject's reason (our parser let it through)",
                  len([o for o in relayed if o.case.kind == "ical"]),
                  len([o for o in relayed if o.case.kind == "xml"])]]
        self.table(f"Hostile input on {db}: answers by status ({report.seconds:.0f} s; server "
                   f"alive: {'yes' if report.alive else 'NO'}; slowest "
                   f"{slowest.answer.seconds:.2f} s: {slowest.case.kind} #{slowest.number} "
                   f"{slowest.case.name})",
                   ["status", f"iCalendar ({self.args.mutations})", f"XML ({self.args.xml})"],
                   rows)
        self.table(f"Issue 12's own inputs on {db}", ["input", "status", "expected", "ms"],
                   [[o.case.name, o.answer.status, o.expected, f"{o.answer.seconds * 1000:.0f}"]
                    for o in report.of("issue12")])
        kinds: dict[str, dict] = {}
        for outcome in report.outcomes:
            if outcome.case.kind == "issue12":
                continue
            name = outcome.case.name.split("+")[0] if outcome.case.kind == "ical" else \
                outcome.case.name.split("-")[0]
            entry = kinds.setdefault(f"{outcome.case.kind}: {name}", {"n": 0, "ok": 0, "4xx": 0,
                                                                        "bare": 0, "max": 0.0})
            entry["n"] += 1
            entry["ok" if not outcome.refused else "4xx"] += 1
            entry["bare"] += outcome in bare
            entry["max"] = max(entry["max"], outcome.answer.seconds)
        self.table("Hostile input by kind (first mutation of each case)",
                   ["kind", "cases", "accepted", "refused 4xx", "of which no reason",
                    "slowest s"],
                   [[k, v["n"], v["ok"], v["4xx"], v["bare"], f"{v['max']:.2f}"]
                    for k, v in sorted(kinds.items())])
        self.results.setdefault("hostile", {})[db] = {
            "ical": dict(report.by_status("ical")), "xml": dict(report.by_status("xml")),
            "server_errors": len(report.server_errors()), "broken": len(report.broken()),
            "store_violations": len(report.store_violations()), "without_reason": len(bare),
            "relayed_reasons": len(relayed),
            "alive": report.alive, "seconds": report.seconds, "kinds": kinds}
        self.fail(f"hostile ({db})", report.failures())

    # ------------------------------------------------------------ access
    def access(self, db: str) -> None:
        import base64
        import secrets

        from tests.reliability.access import CALLERS, prepare, run_matrix, table
        from tests.reliability.google import connected_google
        from tests.reliability.hostile import store_fingerprint
        from tests.reliability.rawhttp import basic, exchange

        url = self.database(db, "access")
        store = open_store(url)
        passwords = {login: f"{login}-{secrets.token_urlsafe(10)}"
                     for login in ("alice", "bob", "carol", "dave")}
        for login, password in passwords.items():
            store.add_user(login, password, is_admin=login in ("carol", "dave"))
        with connected_google(store, ["alice"], self.workdir / f"tokens-access-{db}") as (
                fake, _, env):
            server = self.serve(url, f"access-{db}", env, log_level="debug", auth_delay=0.05)
            base = server.url + "/"
            dave = {"Authorization": basic("dave", passwords["dave"]), "Depth": "0"}
            if exchange(base + "alice/", "PROPFIND", b"", dave).status != 207:
                self.fail("access", ["dave, still an admin, could not read alice's home"])
            store.set_user("dave", is_admin=False)

            def put(href: str, body: bytes) -> str:
                answer = exchange(base + "alice/rendez-vous/" + href, "PUT", body, {
                    "Authorization": basic("alice", passwords["alice"]),
                    "Content-Type": "text/calendar"})
                if answer.status != 201:
                    raise BenchError(f"access: preparing {href}: {answer.status}")
                return answer.header("ETag") or ""

            cells = run_matrix(base, passwords, lambda: store_fingerprint(store), prepare(put))
            timing = _login_timing(base, passwords["bob"])
            server.stop()
            token = json.loads((self.workdir / f"tokens-access-{db}" / "alice.json").read_text())
            client_secret = fake.client_secret
        self.table(f"Access on {db}: status per request and caller (≠: not the expected one)",
                   ["request", *CALLERS], table(cells))
        self.fail(f"access ({db})", [f"{c.row} as {c.caller}: {'; '.join(c.problems)}"
                                     for c in cells if c.problems])
        unknown, wrong = timing
        ratio = unknown / wrong
        self.console.print(f"POST /bridge/sync/open, median of 5 refused logins: unknown user "
                           f"{unknown * 1000:.0f} ms, known user with a wrong password "
                           f"{wrong * 1000:.0f} ms (ratio {ratio:.2f}; bcrypt at the users' cost)")
        if not 0.5 <= ratio <= 2:
            self.fail(f"access ({db})", [f"unknown and known logins are told apart by time "
                                         f"(ratio {ratio:.2f})"])
        log = server.log_path.read_text(errors="replace")
        used = {f"{login}'s password": pw for login, pw in passwords.items()}
        used |= {f"{login}'s Basic header": base64.b64encode(f"{login}:{pw}".encode()).decode()
                 for login, pw in passwords.items()}
        used |= {"a wrong password tried": "not-" + passwords["alice"],
                 "the refresh token": token["refresh_token"], "the access token": token["token"],
                 "the client secret": client_secret}
        leaked = sorted(name for name, value in used.items() if value in log)
        self.console.print(f"server log at debug level: {len(log.splitlines())} lines, "
                           f"{len(used)} secrets looked for, found: {leaked or 'none'}")
        self.fail(f"access ({db})", [f"{name} is in the server log" for name in leaked])
        self.results.setdefault("access", {})[db] = {
            "cells": {f"{c.row} / {c.caller}": c.answer.status for c in cells},
            "wrong_cells": sum(1 for c in cells if c.problems), "secrets_in_log": leaked,
            "refused_login_ms": {"unknown_user": unknown * 1000, "wrong_password": wrong * 1000}}

    # ------------------------------------------------------------ load
    def load(self, db: str) -> None:
        from tests.reliability.google import connected_google
        from tests.reliability.load import LoadRun

        url = self.database(db, "load")
        store = open_store(url)
        passwords = {f"user{n:02d}": f"pw-{n}-load" for n in range(self.args.users)}
        for login, password in passwords.items():
            store.add_user(login, password)
        with connected_google(store, sorted(passwords), self.workdir / f"tokens-load-{db}") as (
                fake, calendars, env):
            server = self.serve(url, f"load-{db}", env)
            run = LoadRun(server.url + "/", store, passwords, self.args.phones,
                          self.args.seconds, google=fake, calendars=calendars,
                          seed=self.args.seed)
            report = run.run()
            server.check_alive()
            server.stop()
        f = report.figures()

        def ms(seconds: float) -> str:
            return f"{seconds * 1000:.0f}"

        rows = [["requests (req/s)", f"{f['requests']} ({f['per_second']:.0f}/s)"],
                ["p50 / p99 / max, ms", f"{ms(f['p50'])} / {ms(f['p99'])} / {ms(f['max'])}"],
                *[[f"  {op}: n, p50 / p99 ms", f"{v['requests']}, {ms(v['p50'])} / "
                   f"{ms(v['p99'])}"] for op, v in f["per_op"].items()],
                ["statuses", ", ".join(f"{k}×{v}" for k, v in f["statuses"].items())],
                ["5xx or no answer", f["server_errors"]],
                ["first login p50 / max, ms", f"{ms(f['first_login_p50'])} / "
                                              f"{ms(f['first_login_max'])}"],
                ["syncs (direction, HTTP, status)",
                 ", ".join(f"{k}×{v}" for k, v in f["syncs"].items())],
                ["sync p50 / max, s", f"{f['sync_p50']:.2f} / {f['sync_max']:.2f}"],
                ["edits made in Google meanwhile", f["google_edits"]],
                ["acknowledged writes found", ", ".join(f"{k}: {v}" for k, v in
                                                       f["writes_found"].items())],
                ["acknowledged writes lost", f["writes_lost"]]]
        self.table(f"Load on {db}: {f['phones']} phones over {self.args.users} users for "
                   f"{self.args.seconds:.0f} s, syncs running (p99 target ≤ "
                   f"{P99_TARGET * 1000:.0f} ms once logged in)", ["", "figure"], rows)
        self.results.setdefault("load", {})[db] = f
        self.fail(f"load ({db})", report.failures(p99_limit=None))
        verdict = "pass" if f["p99"] <= P99_TARGET else "MISS"
        self.console.print(f"p99 {f['p99'] * 1000:.0f} ms against the target of "
                           f"{P99_TARGET * 1000:.0f} ms: {verdict}")
        if verdict == "MISS":
            self.missed.append(f"load ({db}): p99 {f['p99'] * 1000:.0f} ms")

    # ------------------------------------------------------------ crash
    def crash(self, db: str) -> None:
        from tests.reliability.crash import missing_after_restart, puts_until_killed

        url = self.database(db, "crash")
        open_store(url).add_user("alice", "alice-pw")
        rows = []
        lost_total = 0
        for round_ in range(self.args.server_kills):
            server = self.serve(url, f"crash-{db}-{round_}")
            record = puts_until_killed(server.url + "/", "alice", "alice-pw", writers=8,
                                       kill=server.proc.kill, after_acks=self.args.kill_after,
                                       prefix=f"kill{round_}")
            code = server.proc.wait(10)
            restarted = self.serve(url, f"restart-{db}-{round_}")
            missing = missing_after_restart(restarted.url + "/", "alice", "alice-pw",
                                            record.acked)
            restarted.stop()
            lost_total += len(missing)
            rows.append([round_ + 1, len(record.acked), record.attempted - len(record.acked),
                         ", ".join(f"{k}×{v}" for k, v in record.errors.items()),
                         "SIGKILL" if code == -signal.SIGKILL else code, len(missing)])
            self.fail(f"crash ({db})", [f"kill {round_ + 1}: lost {h}" for h in missing])
            if len(record.acked) < self.args.kill_after:
                self.fail(f"crash ({db})", [f"kill {round_ + 1}: only {len(record.acked)} PUTs "
                                            f"acknowledged before the kill ({record.errors})"])
        self.table(f"Server killed amid 8 phones' PUTs on {db}, then restarted",
                   ["kill", "acknowledged", "unanswered", "how they ended", "server exit",
                    "acknowledged but lost"], rows)
        self.results.setdefault("crash_server", {})[db] = {"rounds": len(rows),
                                                          "lost": lost_total}
        if db == self.args.db[0]:
            self.sync_kills(db)

    def sync_kills(self, db: str) -> None:
        from tests.clirun import invoke, script
        from tests.reliability.crash import HoldingGoogle, live_summaries
        from tests.reliability.google import connected_google

        n = self.args.sync_appointments
        batches = -(-n // 50)
        rows = []
        for hold_at in range(1, batches + 1):
            url = self.database(db, f"sync-kill-{hold_at}")
            store = open_store(url)
            alice = store.add_user("alice", "alice-pw")
            _add_appointments(store, n)
            fake = HoldingGoogle(hold_at)
            tokens = self.workdir / f"tokens-kill-{hold_at}"
            with connected_google(store, ["alice"], tokens, fake) as (_, calendars, env):
                env = {"GESTAN_BRIDGE_DB": url, **env}
                child = subprocess.Popen([script(), "sync", "close", "--user", "alice"],
                                         env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                try:
                    reached = fake.arrived.wait(120)
                    child.kill()
                    child.wait(10)
                finally:
                    fake.release.set()
                fake.applied.wait(10)
                after_kill = sum(live_summaries(fake, calendars["alice"]).values())
                started = time.perf_counter()
                rerun = invoke(env, "sync", "close", "--user", "alice")
                rerun_seconds = time.perf_counter() - started
                final = live_summaries(fake, calendars["alice"])
                again = invoke(env, "sync", "open", "--user", "alice")
            runs = store.sync_runs(alice.id)
            killed = runs[-1]
            duplicates = sum(c - 1 for c in final.values() if c > 1)
            problems = []
            if not reached:
                problems.append("the close never sent that batch")
            if rerun.returncode != 0 or again.returncode != 0:
                problems.append(f"rerun exit {rerun.returncode}, open exit {again.returncode}")
            if duplicates or sum(final.values()) != n:
                problems.append(f"{sum(final.values())} events in Google for {n} appointments, "
                                f"{duplicates} duplicates")
            if killed.status != "interrupted":
                problems.append(f"the killed run is {killed.status!r}")
            if len(store.agenda("alice")) != n:
                problems.append("the open after it changed Gestan's agenda")
            rows.append([hold_at, after_kill, killed.status, killed.counts["remote"]["created"],
                         f"{rerun_seconds:.1f}", sum(final.values()), duplicates])
            self.fail(f"sync kill at batch {hold_at}", problems)
        self.table(f"`gestan-bridge sync close` of {n} appointments killed (SIGKILL) while "
                   "batch k is in flight (Google applies it), then run again",
                   ["k", "events in Google after the kill", "killed run in the log",
                    "its creates logged", "rerun s", "events after the rerun", "duplicates"],
                   rows)
        self.results["crash_sync"] = {"kills": len(rows), "rows": rows}


def _login_timing(base: str, bob_password: str) -> tuple[float, float]:
    """Median seconds of 5 refused trigger logins of unknown users and of 5 with bob's
    login and a wrong password (under both limits: 10 per login, 20 per address)."""
    import statistics

    import requests

    def timed(login: str, password: str) -> float:
        started = time.perf_counter()
        requests.post(f"{base}bridge/sync/open", auth=(login, password), timeout=60)
        return time.perf_counter() - started

    unknown = [timed(f"nobody{n}", "guess") for n in range(5)]
    wrong = [timed("bob", "not-" + bob_password) for _ in range(5)]
    timed("bob", bob_password)  # a good login ends bob's count of failures
    return statistics.median(unknown), statistics.median(wrong)


def _add_appointments(store: Store, n: int) -> None:
    start = now_utc().replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
    for k in range(n):
        begins = start + timedelta(days=k // 4, hours=2 * (k % 4))
        store.add_action("alice", EventData(begins, begins + timedelta(hours=1), "Europe/Paris",
                                            subject=f"RDV {k}"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability_bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default=",".join(PARTS),
                        help=f"comma-separated among {', '.join(PARTS)} (default: all)")
    parser.add_argument("--db", default="sqlite,postgresql",
                        help="comma-separated among sqlite, postgresql (default: both)")
    parser.add_argument("--mutations", type=int, default=1000)
    parser.add_argument("--xml", type=int, default=100)
    parser.add_argument("--phones", type=int, default=50)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--server-kills", type=int, default=3,
                        help="times the server is killed amid PUTs, per database")
    parser.add_argument("--kill-after", type=int, default=200,
                        help="acknowledged PUTs before each kill")
    parser.add_argument("--sync-appointments", type=int, default=300,
                        help="appointments the killed close pushes (one kill per batch of 50)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, default=Path("bench/results-reliability.json"))
    parser.add_argument("--keep", action="store_true",
                        help="keep the working directory (databases, server logs)")
    parser.add_argument("--fail-on-miss", action="store_true",
                        help="exit 2 when the p99 target is missed (a wrong answer exits 1)")
    args = parser.parse_args(argv)
    args.part = [p for p in args.part.split(",") if p]
    args.db = [d for d in args.db.split(",") if d]
    if set(args.part) - set(PARTS) or set(args.db) - {"sqlite", "postgresql"} or not args.db:
        parser.error("unknown --part or --db")
    if min(args.mutations, args.xml, args.phones, args.users, args.sync_appointments) < 1:
        parser.error("sizes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    bench = Bench(args, console)
    started = time.perf_counter()
    try:
        for part in args.part:
            for db in args.db:
                console.rule(f"{part} on {db}")
                getattr(bench, part)(db)
    except BenchError as exc:
        bench.fail("bench", [str(exc)])
    except KeyboardInterrupt:
        console.print("[bold red]BENCH INTERRUPTED[/] (servers stopped)", markup=True)
        return 130
    finally:
        bench.close()
    result = {"meta": {"tool": "bench/reliability_bench.py", "seed": args.seed,
                       "python": platform.python_version(), "cpus": os.cpu_count(),
                       "load_average": os.getloadavg(),
                       "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                       "wall_seconds": round(time.perf_counter() - started, 1),
                       "args": {k: str(v) for k, v in vars(args).items()}},
              "results": bench.results, "failures": bench.failures,
              "missed": bench.missed}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    console.print(f"results written to {args.json} (total {time.perf_counter() - started:.0f} "
                  f"s, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if bench.failures:
        console.print(f"[bold red]{len(bench.failures)} wrong answer(s)[/]", markup=True)
        return 1
    if bench.missed:
        console.print("targets missed: " + "; ".join(bench.missed))
        if args.fail_on_miss:
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
