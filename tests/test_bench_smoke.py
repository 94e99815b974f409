"""The CalDAV benchmark (bench/caldav_bench.py) runs end to end on a small data set, its
answer checks pass and its JSON holds every row for both servers; the data set is
deterministic and valid iCalendar."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from bench import caldav_bench
from bench.dataset import MONTREAL, PARIS, expected_hrefs, generate

REPO = Path(__file__).resolve().parent.parent


def test_bench_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.caldav_bench", "--n", "40", "--repeats", "2",
         "--json", str(out), "--max-minutes", "2"],
        cwd=REPO, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "BENCH FAILED" not in result.stdout
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert run["n"] == 40
    wanted = {*caldav_bench.ROWS, "memory_vmhwm", "load_total"}
    assert {row["row"] for row in run["rows"]} == wanted
    for row in run["rows"]:
        assert row["ours"] > 0 and row["stock"] > 0, row
        assert row["ratio"] is not None
    for name in caldav_bench.SERVERS:
        server = run["servers"][name]
        assert set(caldav_bench.ROWS) <= set(server), (name, sorted(server))
        assert server["memory"]["VmHWM"] > 0
        assert server["load"]["puts"] == 40
        for key in caldav_bench.ROWS:
            assert len(server[key]["samples_ms"]) >= 2, (name, key)
        assert server["a_sync_full"]["responses"] == 40
        assert server["b_propfind"]["responses"] == 41
        assert server["c_query_month"]["responses"] == run["expected_query_hits"]
        assert server["d_multiget"]["responses"] == 40
        assert server["e_sync_incremental"]["responses"] == 1


def test_dataset_is_deterministic_and_valid() -> None:
    base = date(2026, 3, 2)
    items = generate(200, seed=7, base=base)
    assert items == generate(200, seed=7, base=base)
    assert items != generate(200, seed=8, base=base)
    assert len({item.uid for item in items}) == 200
    assert sum(item.tzid == PARIS for item in items) == 120
    assert sum(item.tzid == MONTREAL for item in items) == 80
    assert sum(item.all_day for item in items) == 10
    assert sum(item.series for item in items) == 4
    assert sum(item.alarm for item in items) == 60
    for item in items:
        text = item.ics()
        assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
        event = icalendar.Calendar.from_ical(text).walk("VEVENT")[0]
        assert str(event["UID"]) == item.uid
        assert str(event["SUMMARY"]) == item.summary  # commas, accents survive escaping
        assert str(event["DESCRIPTION"]) == item.description and "\n" in item.description
        assert ("RRULE" in event) == item.series and ("EXDATE" in event) == item.series
        first, last = item.span_utc()
        assert datetime.combine(base, datetime.min.time(), UTC) - timedelta(days=1) < first
        assert last < datetime.combine(base + timedelta(days=366), datetime.min.time(), UTC)
        if not item.all_day:
            assert item.start.weekday() < 5 and 8 <= item.start.hour <= 17


def test_expected_hits_and_checks_fail_loudly() -> None:
    items = generate(100, seed=1, base=date(2026, 3, 2))
    start, end = caldav_bench.query_window(date(2026, 3, 2))
    everything = expected_hrefs(items, start - timedelta(days=400), end + timedelta(days=400))
    assert everything == {item.href for item in items}
    hits = expected_hrefs(items, start, end)
    assert 0 < len(hits) < 100
    by_href = {item.href: item for item in items}
    answers = [caldav_bench.Response(href, 200, '"e"', f"UID:{by_href[href].uid}")
               for href in sorted(hits)]
    caldav_bench.check_items("ours", "c", answers, hits, by_href, True, True)
    with pytest.raises(caldav_bench.BenchError, match="responses, expected"):
        caldav_bench.check_items("ours", "c", answers[1:], hits, by_href, True, True)
    with pytest.raises(caldav_bench.BenchError, match="lacks UID"):
        wrong = [caldav_bench.Response(a.name, 200, '"e"', "UID:other") for a in answers]
        caldav_bench.check_items("ours", "c", wrong, hits, by_href, True, True)


def test_request_cost_bench_runs_both_servers_and_checks_every_answer() -> None:
    """bench/request_cost.py at a tiny size: every kind of request answered as expected
    by both servers (a wrong answer raises), a CPU figure for each."""
    import argparse

    from rich.console import Console

    from bench import request_cost

    args = argparse.Namespace(n=3, items=2, postgresql=False)
    results = request_cost.run(args, Console(quiet=True))
    assert set(results) == {"ours", "stock"}
    for figures in results.values():
        assert set(figures) == set(request_cost.KINDS)
        assert all(value >= 0 for value in figures.values())
        assert sum(figures.values()) > 0
