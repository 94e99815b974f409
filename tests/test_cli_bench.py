"""bench/cli_bench.py runs (one timed run of one command) and prints its table, so that it
cannot rot."""

from __future__ import annotations

from bench import cli_bench


def test_cli_bench_prints_wall_and_cpu_beside_python(capsys):
    assert cli_bench.main(["--runs", "1", "--only", "users list"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["command", "wall", "ms", "min", "ms", "CPU", "ms", "wall", "×",
                              "py", "CPU", "×", "py"]
    assert [row.split()[0] for row in rows] == ["python", "users"]
    users = rows[1].split()
    assert float(users[-1]) > 1 and float(users[-2]) > 1, "a command costs more than python"
