"""Google sync costs (issue 4), measured against the loopback Google fake in one run.

    .venv/bin/python -m bench.sync_bench                 # N = 10,000 appointments
    .venv/bin/python -m bench.sync_bench --n 1000 --series 200

Prints request counts (counted by the fake, not by our code) and wall times for:
initial push of N Rendez-vous (target ≤ N/50 + 1 requests), close and open with nothing
changed (targets 0-1 and 1), one change on each side; and the expansion of S series over the
one-year window by the store's path against the naive whole-calendar
``recurring_ical_events.of(cal).between(...)`` (target ≥ 3× faster). Checks every answer
(the fake holds exactly the pushed events; both expansions give the same occurrences).
Writes JSON with ``--json``. Nothing leaves 127.0.0.1; the run is bounded by N.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, timedelta
from pathlib import Path

os.environ.setdefault("GESTAN_BRIDGE_BCRYPT_ROUNDS", "4")

import recurring_ical_events  # noqa: E402
from icalendar import Calendar  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.dataset import generate, render  # noqa: E402
from bridge.ical import parse_object  # noqa: E402
from bridge.ical.series import expand  # noqa: E402
from bridge.ical.timezones import now_utc  # noqa: E402
from bridge.store import Store  # noqa: E402
from bridge.sync.engine import (
    SyncRun,  # noqa: E402
    window_end,  # noqa: E402
)
from bridge.targets.google import GoogleTarget  # noqa: E402
from tests.fakes.google_calendar import FakeGoogleCalendar  # noqa: E402

CALENDAR = "Gestan RDV"
RULES = ["FREQ=WEEKLY", "FREQ=WEEKLY;INTERVAL=2", "FREQ=DAILY;COUNT=30", "FREQ=MONTHLY",
         "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=40", "FREQ=WEEKLY;UNTIL={until}"]


class Mismatch(SystemExit):
    def __init__(self, message: str) -> None:
        super().__init__(f"bench.sync_bench: answer check failed: {message}")


def series_texts(count: int, seed: int) -> list[str]:
    """Series as phones send them: Paris or Montreal, weekly-ish rules, one EXDATE, a third
    with a moved occurrence."""
    rng = random.Random(seed)
    now = now_utc()
    texts = []
    for n in range(count):
        tz = "Europe/Paris" if n % 5 < 3 else "America/Montreal"
        start = (now + timedelta(days=rng.randint(0, 90))).replace(
            hour=rng.randint(8, 18), minute=rng.choice([0, 30]), second=0, microsecond=0)
        rule = rng.choice(RULES).format(
            until=(start + timedelta(days=rng.randint(60, 500))).strftime("%Y%m%dT%H%M%SZ"))
        if "BYDAY" in rule:
            while start.weekday() not in (0, 2):
                start += timedelta(days=1)
        step = timedelta(days=1 if "DAILY" in rule else 7 if "MONTHLY" not in rule else 0)
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:bench", "BEGIN:VEVENT",
                 f"UID:serie-{n}", f"DTSTART;TZID={tz}:{start:%Y%m%dT%H%M%S}",
                 "DURATION:PT1H", f"RRULE:{rule}", f"SUMMARY:Série n°{n}, salle été"]
        if step:
            lines.append(f"EXDATE;TZID={tz}:{start + 2 * step:%Y%m%dT%H%M%S}")
        lines.append("END:VEVENT")
        if step and n % 3 == 0:
            moved = start + 4 * step
            lines += ["BEGIN:VEVENT", f"UID:serie-{n}",
                      f"RECURRENCE-ID;TZID={tz}:{moved:%Y%m%dT%H%M%S}",
                      f"DTSTART;TZID={tz}:{moved + timedelta(hours=2):%Y%m%dT%H%M%S}",
                      "DURATION:PT1H", "SUMMARY:déplacée", "END:VEVENT"]
        lines.append("END:VCALENDAR")
        texts.append("\r\n".join(lines) + "\r\n")
    return texts


def bench_series(count: int, seed: int, repeats: int) -> dict:
    texts = [parse_object(t, "Europe/Paris").series_ics for t in series_texts(count, seed)]
    start = now_utc()
    end = start + timedelta(days=365)
    whole = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:bench\r\n" + "".join(
        t.split("PRODID:", 1)[1].split("\r\n", 1)[1].rsplit("END:VCALENDAR", 1)[0]
        for t in texts) + "END:VCALENDAR\r\n"

    def ours() -> set:
        return {(n, e.recurrence_id) for n, t in enumerate(texts)
                for e in expand(t, start, end, "Europe/Paris")}

    def naive(calendar: Calendar | None = None) -> int:
        calendar = calendar or Calendar.from_ical(whole)
        return len(recurring_ical_events.of(calendar).between(start.replace(tzinfo=UTC),
                                                              end.replace(tzinfo=UTC)))

    timings = {"ours": [], "naive": [], "naive_parsed": []}
    parsed = Calendar.from_ical(whole)
    for _ in range(repeats):
        t = time.perf_counter()
        found = ours()
        timings["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        expected = naive()
        timings["naive"].append(time.perf_counter() - t)
        t = time.perf_counter()
        naive(parsed)
        timings["naive_parsed"].append(time.perf_counter() - t)
    if len(found) != expected:
        raise Mismatch(f"series expansion: ours {len(found)} occurrences, naive {expected}")
    best = {k: min(v) for k, v in timings.items()}
    return {"series": count, "occurrences": expected, **{f"{k}_s": v for k, v in best.items()},
            "speedup": best["naive"] / best["ours"],
            "speedup_vs_preparsed": best["naive_parsed"] / best["ours"]}


def bench_google(n: int, seed: int, workdir: Path) -> dict:
    store = Store(f"sqlite:///{workdir / 'sync-bench.db'}")
    store.add_user("alice", "alice", timezone="Europe/Paris")
    store.set_user("alice", settings={"google_calendar": CALENDAR})
    items = generate(n, seed, date.today())
    t = time.perf_counter()
    for item in items:
        store.put_object("alice", item.href, render(item))
    load_s = time.perf_counter() - t
    user = store.require_user("alice")
    now = now_utc()
    in_window = len(store.changed_objects(user.id, 0, user.revision, now, window_end(now),
                                          "google"))
    out: dict = {"n": n, "in_window": in_window, "load_store_s": load_s}
    with FakeGoogleCalendar() as fake:
        cal = fake.add_calendar(CALENDAR)

        def run(direction: str, label: str) -> None:
            fake.reset_log()
            target = GoogleTarget(fake.credentials(), "alice", CALENDAR, "Europe/Paris",
                                  api_url=fake.api_url)
            sync = SyncRun(store, "alice", target)
            t = time.perf_counter()
            report = sync.pull() if direction == "open" else sync.push()
            wall = time.perf_counter() - t
            if report.status != "ok":
                raise Mismatch(f"{label}: {report.status} {report.message}")
            out[label] = {"requests": fake.request_count, "wall_s": wall,
                          "gestan": vars(report.gestan), "google": vars(report.remote)}

        run("close", "initial_push")
        events = fake.events(cal, include_cancelled=False)
        masters = [e for e in events if not e.get("recurringEventId")]
        if len(masters) != in_window:
            raise Mismatch(f"the fake holds {len(masters)} events after the push, not the "
                           f"{in_window} appointments of the one-year window")
        run("close", "close_nothing_changed")
        run("open", "first_open_full_listing")
        run("open", "open_nothing_changed")
        fake.patch_event(cal, masters[0]["id"], {"summary": "changé dans Google"})
        run("open", "open_one_change")
        action = store.agenda("alice")[0]
        store.delete_action("alice", action.id)
        run("close", "close_one_change")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sync_bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10000, help="appointments (default 10000)")
    parser.add_argument("--series", type=int, default=1000, help="series to expand")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 50000 or not 1 <= args.series <= 5000 or args.repeats < 1:
        parser.error("--n must be 1..50000, --series 1..5000, --repeats ≥ 1")
    with tempfile.TemporaryDirectory(prefix="gestan-sync-bench-") as tmp:
        google = bench_google(args.n, args.seed, Path(tmp))
    series = bench_series(args.series, args.seed, args.repeats)
    console = Console()
    table = Table(title=f"Google sync costs, N = {args.n} (requests counted by the fake)")
    for column in ("run", "requests", "target", "wall s", "Gestan c/u/d", "Google c/u/d"):
        table.add_column(column)
    targets = {"initial_push": f"≤ {args.n // 50 + 1}", "close_nothing_changed": "0 or 1",
               "open_nothing_changed": "1"}
    for label, row in google.items():
        if not isinstance(row, dict):
            continue
        g, r = row["gestan"], row["google"]
        table.add_row(label, str(row["requests"]), targets.get(label, ""),
                      f"{row['wall_s']:.2f}",
                      f"{g['created']}/{g['updated']}/{g['deleted']}",
                      f"{r['created']}/{r['updated']}/{r['deleted']}")
    console.print(table)
    console.print(
        f"series: {series['series']} series, {series['occurrences']} occurrences in one year: "
        f"ours {series['ours_s']:.3f} s, naive whole calendar {series['naive_s']:.3f} s "
        f"(from text; {series['naive_parsed_s']:.3f} s already parsed) → "
        f"{series['speedup']:.1f}× ({series['speedup_vs_preparsed']:.1f}× vs pre-parsed); "
        "target ≥ 3×")
    verdicts = {
        "initial_push": google["initial_push"]["requests"] <= args.n // 50 + 1,
        "close_nothing_changed": google["close_nothing_changed"]["requests"] <= 1,
        "open_nothing_changed": google["open_nothing_changed"]["requests"] == 1,
        "series_3x": series["speedup"] >= 3,
    }
    for name, ok in verdicts.items():
        console.print(f"  {name}: {'met' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"google": google, "series": series,
                                         "targets_met": verdicts}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
