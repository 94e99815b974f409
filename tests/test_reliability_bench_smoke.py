"""The reliability benchmark (bench/reliability_bench.py) runs end to end at a tiny size on
SQLite, finds nothing wrong and writes its figures, so that it cannot rot. Two parts here
(each starts its own server process); the access and crash parts run through the same code
in tests/reliability/ at CI size."""

from __future__ import annotations

import json
from pathlib import Path

from bench import reliability_bench


def test_reliability_bench_smoke_run(tmp_path: Path, capsys) -> None:
    out = tmp_path / "results.json"
    code = reliability_bench.main([
        "--part", "hostile,load", "--db", "sqlite", "--mutations", "6", "--xml", "4",
        "--phones", "2", "--users", "1", "--seconds", "1", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    assert "BENCH FAILED" not in printed
    results = json.loads(out.read_text())
    assert results["failures"] == []
    assert set(results["results"]) == {"hostile", "load"}
    hostile = results["results"]["hostile"]["sqlite"]
    assert sum(hostile["ical"].values()) == 6 and sum(hostile["xml"].values()) == 4
    assert results["results"]["load"]["sqlite"]["requests"] > 0

