"""Wall time of small ``gestan-bridge`` commands beside ``python -c pass`` (issue 11).

Each command runs as a user runs it, the installed console script in a new process, on a
throwaway SQLite database holding one user and a few appointments; ``--runs`` times each
(after one warm-up run that fills the OS caches and migrates the database). The table shows
the median and fastest wall time, the median CPU time of the process (user + system, from
``getrusage``: what a busy shared machine inflates least), and both medians over
``python -c pass``'s.

    .venv/bin/python -m bench.cli_bench             # 10 runs each
    .venv/bin/python -m bench.cli_bench --runs 3 --json /tmp/cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# (label, arguments of gestan-bridge); "python -c pass" is the baseline
COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("users --help", ["users", "--help"]),
    ("users list", ["users", "list"]),
    ("agenda list", ["agenda", "list", "--user", "alice"]),
    ("agenda add", ["agenda", "add", "--user", "alice", "--subject", "Bench",
                    "--start", "2030-01-07 10:00"]),
    ("sync --help", ["sync", "--help"]),
    ("google status", ["google", "status", "--user", "alice"]),
]
BASELINE = "python -c pass"


def script() -> str:
    found = shutil.which("gestan-bridge", path=str(Path(sys.executable).parent))
    if not found:
        sys.exit("gestan-bridge is not installed beside this python (pip install -e .)")
    return found


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each of ``runs`` runs of ``argv`` (after one untimed run); a
    failing command stops the bench."""
    walls, cpus = [], []
    for attempt in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=120)
        elapsed = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            sys.exit(f"BENCH FAILED: {' '.join(argv[1:])}: exit {done.returncode}: "
                     f"{done.stderr.strip()[-500:]}")
        if attempt:
            walls.append(elapsed)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return walls, cpus


def _appointments(count: int) -> str:
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:bench-{n}\r\nDTSTART;TZID=Europe/Paris:203001{n + 1:02d}T090000"
        f"\r\nDTEND;TZID=Europe/Paris:203001{n + 1:02d}T100000\r\nSUMMARY:RDV {n}\r\n"
        "END:VEVENT\r\n" for n in range(count))
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\n{events}END:VCALENDAR\r\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    parser.add_argument("--only", action="append", metavar="COMMAND",
                        help="time only this command (its label, e.g. 'users list'); repeat")
    options = parser.parse_args(argv)
    command = script()
    with tempfile.TemporaryDirectory(prefix="cli-bench-") as folder:
        env = {**os.environ, "GESTAN_BRIDGE_DB": f"sqlite:///{folder}/bench.db",
               "GESTAN_BRIDGE_TOKEN_DIR": f"{folder}/tokens"}
        calendar = Path(folder, "twenty.ics")
        calendar.write_text(_appointments(20), encoding="utf-8")
        for args in (["users", "add", "alice", "--password", "bench-password"],
                     ["agenda", "import", "--user", "alice", str(calendar)]):
            timed([command, *args], env, 0)
        results = {BASELINE: timed([sys.executable, "-c", "pass"], env, options.runs)}
        for label, args in COMMANDS:
            if not options.only or label in options.only:
                results[label] = timed([command, *args], env, options.runs)
    base_wall = statistics.median(results[BASELINE][0])
    base_cpu = statistics.median(results[BASELINE][1])
    print(f"{'command':<18}{'wall ms':>9}{'min ms':>8}{'CPU ms':>8}{'wall × py':>11}"
          f"{'CPU × py':>10}")
    for label, (walls, cpus) in results.items():
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"{label:<18}{wall * 1000:>9.0f}{min(walls) * 1000:>8.0f}{cpu * 1000:>8.0f}"
              f"{wall / base_wall:>11.1f}{cpu / base_cpu:>10.1f}")
    if options.json:
        options.json.write_text(json.dumps(
            {"runs": options.runs, "python": sys.version.split()[0],
             "wall_ms": {k: [round(s * 1000, 1) for s in v[0]] for k, v in results.items()},
             "cpu_ms": {k: [round(s * 1000, 1) for s in v[1]] for k, v in results.items()}},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
