"""The sync benchmark at a tiny size, so that it cannot rot (figures live in bench/, not in
assertions on timings)."""

from __future__ import annotations

import json

from bench import sync_bench


def test_sync_bench_runs_and_checks_its_answers(tmp_path):
    out = tmp_path / "sync.json"
    assert sync_bench.main(["--n", "60", "--series", "20", "--repeats", "1",
                            "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    google = figures["google"]
    assert google["initial_push"]["requests"] <= 60 // 50 + 2
    assert google["close_nothing_changed"]["requests"] == 0
    assert google["open_nothing_changed"]["requests"] == 1
    assert google["open_one_change"]["gestan"]["updated"] == 1
    assert google["close_one_change"]["google"]["deleted"] == 1
    assert figures["series"]["occurrences"] > 20
