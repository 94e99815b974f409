"""The sync benchmark at a tiny size, so that it cannot rot (figures live in bench/, not in
assertions on timings): every row runs and its answer is checked."""

from __future__ import annotations

import json

import pytest

from bench import sync_bench


def test_sync_bench_runs_and_checks_its_answers(tmp_path):
    out = tmp_path / "sync.json"
    assert sync_bench.main(["--n", "60", "--series", "20", "--open-n", "40",
                            "--open-series", "5", "--repeats", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    google = figures["google"]
    assert google["initial_push"]["requests"] <= 60 // 50 + 2
    assert google["initial_push"]["google"]["created"] == google["in_window"]
    assert 0 < google["initial_push"]["cpu_s"] <= google["initial_push"]["wall_s"]
    assert google["close_nothing_changed"]["requests"] == 0
    assert google["open_nothing_changed"]["requests"] == 1
    assert google["open_one_change"]["gestan"]["updated"] == 1
    assert google["close_one_change"]["google"]["deleted"] == 1
    # issue 8 point 12: a close writing series (one updated, one created, each with a moved
    # occurrence), then an open that reads none of them again
    written = google["series_written"]
    assert written["updated"] >= 1 and written["created"] >= 1
    assert google["close_series_written"]["google"] == {
        "created": written["created"], "updated": written["updated"], "deleted": 0}
    assert google["open_after_series_close"]["requests"] == 1
    assert google["open_after_series_close"]["gestan"] == {"created": 0, "updated": 0,
                                                           "deleted": 0}
    # issue 8 point 11: the first open of Google events beside icalendar alone
    first = figures["first_open"]
    assert (first["events"], first["series"]) == (40, 5)
    assert first["moved"] == 6 and first["cancelled"] == 3
    assert first["cpu_s"] > 0 and first["icalendar_cpu_s"] > 0
    assert first["ratio_cpu"] == first["cpu_s"] / first["icalendar_cpu_s"]
    assert set(figures["targets_met"]) == {
        "first_open_3x", "initial_push_cpu", "open_after_series_close", "initial_push",
        "close_nothing_changed", "open_nothing_changed", "series_3x"}
    assert figures["series"]["occurrences"] > 20


def test_a_wrong_answer_stops_the_bench(monkeypatch):
    """The first open's answer check is live: a store missing a moved occurrence fails."""
    real = sync_bench.add_exceptions

    def claims_one_more(*args):
        moved, cancelled = real(*args)
        return moved + 1, cancelled

    monkeypatch.setattr(sync_bench, "add_exceptions", claims_one_more)
    with pytest.raises(SystemExit, match="answer check failed: first open"):
        sync_bench.main(["--n", "20", "--series", "5", "--open-n", "20", "--open-series",
                         "2", "--repeats", "1"])
